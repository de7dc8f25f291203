"""The adapter interface every estimator implements, and the Estimate it hands to the metrics."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Optional

import numpy as np
import pandas as pd


@dataclass
class Estimate:
    """Everything an estimator produced for one seed; metrics compare it with the Truth."""

    tau_hat_train: np.ndarray
    tau_hat_test: np.ndarray
    ate_hat: float
    # Per-unit intervals; None where the estimator has no valid inference (then ``interval_reason`` says why).
    lower_train: Optional[np.ndarray] = None
    upper_train: Optional[np.ndarray] = None
    lower_test: Optional[np.ndarray] = None
    upper_test: Optional[np.ndarray] = None
    ate_lower: float = float("nan")
    ate_upper: float = float("nan")
    interval_reason: Optional[str] = None
    ate_interval_reason: Optional[str] = None
    # Model-agnostic importance (same measure as computed on the true tau function), indexed by feature.
    importance: Optional[pd.Series] = None
    # The library's own importance measures, one column each (forest split importance, per-arm, ...).
    native_importance: Optional[pd.DataFrame] = None
    summary: Optional[str] = None
    insights: Optional[str] = None
    # The estimator's own coefficient statement (adapter.insights), composed into insights.md by the analyses.
    native_insights: Optional[str] = None
    # The fitted CATE function tau_hat(X), for analyses that evaluate it on other rows (permutation importance).
    effect_fn: Optional[Callable[[pd.DataFrame], np.ndarray]] = None
    fit_seconds: float = float("nan")
    predict_seconds: float = float("nan")
    extra: dict = field(default_factory=dict)


class NoInference(Exception):
    """Raised by an adapter that has no valid interval for the quantity asked; the message says why."""


class CateAdapter:
    """Base class: wraps one CATE estimator behind fit / effect / effect_interval / ate_interval.

    Subclasses keep parameters in ``__init__`` and learned state in attributes ending in ``_``.
    """

    feature_names_: list[str]

    def fit(self, X: pd.DataFrame, T: np.ndarray, Y: np.ndarray) -> "CateAdapter":
        raise NotImplementedError

    def effect(self, X: pd.DataFrame) -> np.ndarray:
        raise NotImplementedError

    def effect_interval(self, X: pd.DataFrame, alpha: float) -> tuple[np.ndarray, np.ndarray]:
        """Per-unit (lower, upper) at level 1-alpha; raise NoInference if the estimator has none."""
        raise NoInference(f"{type(self).__name__} provides no per-unit intervals")

    def ate(self, X: pd.DataFrame) -> float:
        return float(np.mean(self.effect(X)))

    def ate_interval(self, X: pd.DataFrame, alpha: float) -> tuple[float, float]:
        """(lower, upper) for the average effect over X; raise NoInference if the estimator has none."""
        raise NoInference(f"{type(self).__name__} provides no ATE interval")

    def native_importance(self) -> Optional[pd.DataFrame]:
        """The library's own feature importance(s), one column per measure, or None."""
        return None

    def summary(self) -> Optional[str]:
        """The library's own text summary of the fitted model, or None."""
        return None

    def insights(self, alpha: float) -> Optional[str]:
        """Plain-language statements about effect modifiers backed by the model's inference, or None."""
        return None
