"""hte-bench's Ray launcher for Hydra (``hydra/launcher=ray``): each job of a sweep is one Ray task.

Written with Ray's own API (``ray.remote``) because hydra-ray-launcher 1.2.2 pins ``cloudpickle<3``,
which joblib >= 1.5 refuses. Hydra imports every public module of ``hydra_plugins`` at start-up, so
``config`` and ``launcher`` import neither ray nor anything heavy; the work is in ``_impl`` (a leading
underscore keeps Hydra's scanner out), loaded when a sweep launches.
"""

__version__ = "0.1.0"
