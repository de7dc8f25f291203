"""``HteRayLauncher``: the Hydra plugin class. Ray is imported only when a sweep launches."""

from typing import Any, Dict, Optional, Sequence

from hydra.core.utils import JobReturn
from hydra.plugins.launcher import Launcher
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig, OmegaConf

from .config import HteRayLauncherConf  # noqa: F401  (registers hydra/launcher=ray)


class HteRayLauncher(Launcher):
    """Submit each job of a sweep as a Ray task; gather their results in job order as they finish."""

    def __init__(self, address: Optional[str] = None, num_cpus: Optional[int] = None,
                 remote: Optional[Dict[str, Any]] = None, init: Optional[Dict[str, Any]] = None) -> None:
        def plain(node: Any) -> Dict[str, Any]:
            return dict(OmegaConf.to_container(node, resolve=True)) if OmegaConf.is_config(node) else dict(node or {})

        self.address = address
        self.num_cpus = num_cpus
        self.remote = plain(remote)
        self.init = plain(init)
        self.config: Optional[DictConfig] = None
        self.hydra_context: Optional[HydraContext] = None
        self.task_function: Optional[TaskFunction] = None

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig) -> None:
        """Keep what Hydra hands the launcher before it launches jobs."""
        self.config = config
        self.hydra_context = hydra_context
        self.task_function = task_function

    def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> Sequence[JobReturn]:
        """Run the sweep's jobs as Ray tasks (Ray imported only here, so ``--help`` stays fast)."""
        from ._impl import launch

        return launch(self, job_overrides, initial_job_idx)
