"""hte-bench's Optuna sweeper for Hydra (``hydra/sweeper=hte_optuna``), built on Optuna's ask/tell API.

Hydra imports every public module of the ``hydra_plugins`` namespace package at start-up, so the
modules it scans (this one, ``config`` and ``sweeper``) import neither optuna nor anything heavy;
the work is in ``_impl`` (a leading underscore keeps Hydra's scanner out), loaded when a sweep starts.
"""

__version__ = "0.1.0"
