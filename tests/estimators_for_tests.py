"""A user-defined estimator, as a user would add one, whose fit fails on a chosen seed."""
from hte_bench.estimators.ols import InteractionOLS


class FailOnSeed(InteractionOLS):
    """Interaction OLS that raises RuntimeError when fitted for ``fail_seed``."""

    def __init__(self, seed: int, fail_seed: int = 1):
        super().__init__()
        self.seed, self.fail_seed = seed, fail_seed

    def fit(self, X, T, Y):
        if self.seed == self.fail_seed:
            raise RuntimeError(f"deliberate failure on seed {self.seed}")
        return super().fit(X, T, Y)
