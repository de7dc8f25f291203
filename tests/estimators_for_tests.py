"""A user-defined estimator, as a user would add one, whose fit fails on a chosen seed."""
import os

import numpy as np

from hte_bench.estimators.ols import InteractionOLS


class FailOnSeed(InteractionOLS):
    """Interaction OLS that, when fitted for ``fail_seed``, raises RuntimeError (``how="raise"``), fits but
    gives NaN effects for a few units (``how="nan_effects"``), or ends its process (``how="exit"``: a worker
    killed for memory or crashed in native code; only with n_jobs > 1)."""

    def __init__(self, seed: int, fail_seed: int = 1, how: str = "raise"):
        super().__init__()
        self.seed, self.fail_seed, self.how = seed, fail_seed, how

    def fit(self, X, T, Y):
        if self.seed == self.fail_seed and self.how == "raise":
            raise RuntimeError(f"deliberate failure on seed {self.seed}")
        if self.seed == self.fail_seed and self.how == "exit":
            os._exit(3)
        return super().fit(X, T, Y)

    def effect(self, X):
        tau = super().effect(X)
        if self.seed == self.fail_seed and self.how == "nan_effects":
            tau[:5] = np.nan
        return tau
