"""Trivial baselines that every real estimator must beat."""
from __future__ import annotations

import numpy as np
import pandas as pd

from hte_bench.estimators.base import CateAdapter, NoInference
from hte_bench.estimators.ols import InteractionOLS


class ZeroEffect(CateAdapter):
    """tau_hat = 0 for everyone; it has no uncertainty model, so no intervals."""

    def fit(self, X: pd.DataFrame, T: np.ndarray, Y: np.ndarray) -> "ZeroEffect":
        self.feature_names_ = [str(c) for c in X.columns]
        self.interval_kind_ = self.ate_interval_kind_ = "none"
        return self

    def effect(self, X: pd.DataFrame) -> np.ndarray:
        return np.zeros(len(X))

    def ate_interval(self, X: pd.DataFrame, alpha: float):
        raise NoInference("zero_effect is a fixed guess with no sampling model, so it has no interval")

    def effect_interval(self, X: pd.DataFrame, alpha: float):
        raise NoInference("zero_effect is a fixed guess with no sampling model, so it has no interval")


class ConstantEffect(InteractionOLS):
    """One effect for everyone: OLS ``Y ~ T + x1 + … + xk`` (``adjust=False``: ``Y ~ T``, difference in means).

    Interval kinds: ``broadcast_ate`` (its per-unit interval is the ATE interval, valid only under its own
    constant-effect assumption) and ``ate`` (the treatment coefficient's CI).
    """

    # Not a parameter: the constant-effect model never has interactions (a class attribute keeps
    # __init__ to storing its own parameters, as scikit-learn's clone expects).
    interactions = False

    def __init__(self, adjust: bool = True, cov_type: str = "HC1"):
        self.adjust = adjust
        self.cov_type = cov_type

    def fit(self, X: pd.DataFrame, T: np.ndarray, Y: np.ndarray) -> "ConstantEffect":
        super().fit(X if self.adjust else X.iloc[:, :0], T, Y)
        self.feature_names_ = [str(c) for c in X.columns]
        return self
