"""``HteOptunaSweeper``: the Hydra plugin class. Optuna is imported only when a sweep is set up."""

from typing import Any, List, Optional

from hydra.plugins.sweeper import Sweeper
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig

from .config import HteOptunaSweeperConf  # noqa: F401  (registers hydra/sweeper=hte_optuna)


class HteOptunaSweeper(Sweeper):
    """Ask Optuna for ``n_jobs`` trials, launch them as Hydra jobs, tell Optuna their return values."""

    def __init__(
        self,
        direction: str = "minimize",
        n_trials: int = 20,
        n_jobs: int = 1,
        study_name: Optional[str] = None,
        storage: Optional[str] = None,
        seed: Optional[int] = None,
        sampler: Optional[Any] = None,
        params: Optional[Any] = None,
    ) -> None:
        from ._impl import OptunaSweeperImpl

        self._impl = OptunaSweeperImpl(
            direction=direction,
            n_trials=n_trials,
            n_jobs=n_jobs,
            study_name=study_name,
            storage=storage,
            seed=seed,
            sampler=sampler,
            params=params,
        )

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig) -> None:
        self._impl.setup(hydra_context=hydra_context, task_function=task_function, config=config)

    def sweep(self, arguments: List[str]) -> None:
        return self._impl.sweep(arguments)
