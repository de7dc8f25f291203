"""The sweeper's config, registered as ``hydra/sweeper=hte_optuna``.

No ``from __future__ import annotations`` here: Hydra's plugin scanner executes this module before it is
in ``sys.modules``, and dataclasses then cannot resolve string annotations.
"""

from dataclasses import dataclass, field
from typing import Any, Dict, Optional

from hydra.core.config_store import ConfigStore


@dataclass
class HteOptunaSweeperConf:
    _target_: str = "hydra_plugins.hte_bench_optuna_sweeper.sweeper.HteOptunaSweeper"
    # The sweeper instantiates `sampler` itself (to give it `seed`): Hydra must pass the config as is.
    _recursive_: bool = False

    # "minimize" or "maximize" the job's return value; null: hte-bench's optimized_metric says which
    # (its metric registry: rscore_mean is maximised, cate_rmse_test_mean minimised; a contradicting
    # direction is refused), other apps minimize
    direction: Optional[str] = None
    # trials in the study when the sweep ends; with a storage, trials already finished count
    n_trials: int = 20
    # trials asked, launched together through the configured launcher (hydra/launcher), then told
    n_jobs: int = 1
    # default: the Hydra job name (hydra.job.name)
    study_name: Optional[str] = None
    # Optuna storage URL, e.g. sqlite:///mlruns/optuna.db (its own file, never MLflow's database);
    # null keeps the study in memory. With a storage, rerunning the same study resumes it.
    storage: Optional[str] = None
    # seed of the sampler: the same search draws the same trials (null: Optuna's own random seed, not reproducible)
    seed: Optional[int] = 0
    # an Optuna sampler as a `_target_` config, e.g. {_target_: optuna.samplers.RandomSampler};
    # `seed` is passed to it when it takes one and the config does not set it. Default: TPESampler.
    sampler: Optional[Any] = None
    # search space, in Hydra's override grammar: choice(a,b), a,b, range(lo,hi[,step]),
    # interval(lo,hi), int(interval(lo,hi)), tag(log, interval(lo,hi)); a single value is fixed.
    params: Dict[str, Any] = field(default_factory=dict)


ConfigStore.instance().store(
    group="hydra/sweeper", name="hte_optuna", node=HteOptunaSweeperConf, provider="hte_bench_optuna_sweeper"
)
