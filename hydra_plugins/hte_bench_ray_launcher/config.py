"""The launcher's config, registered as ``hydra/launcher=ray``.

No ``from __future__ import annotations`` here: Hydra's plugin scanner executes this module before it is
in ``sys.modules``, and dataclasses then cannot resolve string annotations.
"""

from dataclasses import dataclass, field
from typing import Any, Dict, Optional

from hydra.core.config_store import ConfigStore


@dataclass
class HteRayLauncherConf:
    _target_: str = "hydra_plugins.hte_bench_ray_launcher.launcher.HteRayLauncher"

    # Where the jobs run. null: a Ray started here for the sweep (or the cluster in $RAY_ADDRESS);
    # "HOST:6379": the head node of a cluster started with `ray start --head`; "auto": the cluster this
    # machine belongs to; "ray://HEAD:10001": Ray Client from outside the cluster. Jobs that may run on
    # other machines need a tracking.uri they can reach (an MLflow server); a loopback address stays here.
    address: Optional[str] = None
    # CPUs of a Ray started here (null: all cores); ignored when joining a cluster
    num_cpus: Optional[int] = None
    # options of each job's Ray task (ray.remote): num_cpus, memory, resources, max_retries, ...
    # Ray reruns a job whose worker died (max_retries, 3 by default); resume=true continues its run.
    remote: Dict[str, Any] = field(default_factory=lambda: {"num_cpus": 1})
    # further ray.init arguments, e.g. runtime_env: {env_vars: {...}} or include_dashboard: true
    init: Dict[str, Any] = field(default_factory=dict)


ConfigStore.instance().store(
    group="hydra/launcher", name="ray", node=HteRayLauncherConf, provider="hte_bench_ray_launcher"
)
