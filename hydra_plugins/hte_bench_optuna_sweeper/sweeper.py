"""``HteOptunaSweeper``: the Hydra plugin class. Optuna is imported only when a sweep is set up."""

from typing import Any, List

from hydra.plugins.sweeper import Sweeper
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig

from .config import HteOptunaSweeperConf  # noqa: F401  (registers hydra/sweeper=hte_optuna)


class HteOptunaSweeper(Sweeper):
    """Ask Optuna for ``n_jobs`` trials, launch them as Hydra jobs, tell Optuna their return values."""

    def __init__(self, **settings: Any) -> None:
        # The settings are HteOptunaSweeperConf's fields (direction, n_trials, n_jobs, study_name, storage,
        # seed, sampler, params), checked by the implementation, which imports optuna.
        from ._impl import OptunaSweeperImpl

        self._impl = OptunaSweeperImpl(**settings)

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig) -> None:
        self._impl.setup(hydra_context=hydra_context, task_function=task_function, config=config)

    def sweep(self, arguments: List[str]) -> None:
        return self._impl.sweep(arguments)
