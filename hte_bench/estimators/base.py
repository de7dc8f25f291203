"""The adapter interface every estimator implements, and the Estimate it hands to the metrics."""
from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from typing import Callable, Iterator, Optional

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator

@contextlib.contextmanager
def numpy_seed(seed: int) -> Iterator[None]:
    """Seed numpy's global generator for the block, then restore the caller's state: for libraries that draw
    from it (econml's BootstrapInference, DoubleML's splits), so the same config and seed give the same
    numbers in any process, whatever ran there before, without leaking state."""
    state = np.random.get_state()
    np.random.seed(int(seed) % (2 ** 32))
    try:
        yield
    finally:
        np.random.set_state(state)


# What a per-unit interval claims. Every adapter reports one of these after fit (``interval_kind()``);
# the runner logs it as the seed tag ``interval_kind`` so a reader knows what a coverage number means.
INTERVAL_KINDS = {
    "per_unit": "a pointwise confidence interval for tau(x), from the estimator's own inference theory",
    "broadcast_ate": "the ATE interval repeated for every unit: valid for tau(x) only if the effect is constant",
    "not_honest": "econml forest fitted with honest=False: intervals computed, but without the honesty "
                  "(separate split and estimation samples) their theory needs",
    "bootstrap": "percentile bootstrap of the whole estimator (econml inference='bootstrap')",
    "none": "no per-unit interval (the Estimate's interval_reason says why)",
}
# What the ATE interval claims (seed tag ``ate_interval_kind``).
ATE_INTERVAL_KINDS = {
    "ate": "proper inference for the ATE: a linear contrast of a linear final stage, or a doubly robust "
           "ATE with its own standard error",
    "conservative_bound": "built on an upper bound of the standard error (econml's stderr_mean for "
                          "non-linear final stages): wider than needed, coverage above nominal",
    "bootstrap": "percentile bootstrap of the whole estimator",
    "none": "no ATE interval (the Estimate's ate_interval_reason says why)",
}


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
    # What the intervals claim: a key of INTERVAL_KINDS / ATE_INTERVAL_KINDS.
    interval_kind: str = "none"
    ate_interval_kind: str = "none"
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
    # The adapter's group effects with joint intervals, (X_train, levels, alpha) -> table (DoubleML IRM's
    # gate); None when the adapter has none. The subgroup analysis puts them beside the true group effects.
    group_effects_fn: Optional[Callable[[pd.DataFrame, pd.Series, float], pd.DataFrame]] = None
    fit_seconds: float = float("nan")
    predict_seconds: float = float("nan")
    extra: dict = field(default_factory=dict)


class NoInference(Exception):
    """Raised by an adapter that has no valid interval for the quantity asked; the message says why."""


class AdapterError(ValueError):
    """An adapter that breaks the CateAdapter contract (not one, a method missing, effects of the wrong shape):
    the same on every seed, so the first seed's is refused as input, in one line, before any run exists."""


def check_adapter(adapter, target: str) -> None:
    """Raise AdapterError unless ``adapter`` (built from ``estimator._target_=target``) is a CateAdapter that
    implements fit and effect."""
    if not isinstance(adapter, CateAdapter):
        raise AdapterError(
            f"estimator._target_={target} builds a {type(adapter).__name__}, not an hte-bench adapter: an econml "
            "estimator goes under model: of _target_: hte_bench.estimators.econml_adapter.EconmlAdapter (as in "
            "conf/estimator/linear_dml.yaml); a class of your own subclasses hte_bench.estimators.CateAdapter")
    missing = [m for m in ("fit(X, T, Y)", "effect(X)")
               if getattr(type(adapter), m.split("(")[0]) is getattr(CateAdapter, m.split("(")[0])]
    if missing:
        raise AdapterError(f"{type(adapter).__name__} (estimator._target_={target}) does not implement "
                           f"{' or '.join(missing)}: a CateAdapter subclass implements fit(X, T, Y) and effect(X)")


def check_effects(adapter, tau_hat, X: pd.DataFrame) -> np.ndarray:
    """``effect(X)`` as a 1-d float array of one effect per row of X, else AdapterError naming the shape."""
    try:
        values = np.asarray(tau_hat, dtype=float)
    except (TypeError, ValueError):
        values = None
    if values is not None and values.ndim == 2 and values.shape[1] == 1:
        values = values[:, 0]  # (n, 1): a column of effects, as some libraries return
    if values is None or values.shape != (len(X),):
        shape = "something that is not numbers" if values is None else f"shape {values.shape}"
        raise AdapterError(f"{type(adapter).__name__}.effect(X) returned {shape} for {len(X)} rows; it must return "
                           f"one effect per row of X, shape ({len(X)},)")
    return values


class CateAdapter(BaseEstimator):
    """Base class: wraps one CATE estimator behind fit / effect / effect_interval / ate_interval.

    A scikit-learn estimator: ``__init__`` stores its parameters unchanged (so ``get_params``,
    ``set_params`` and ``sklearn.base.clone`` work), learned state lives in attributes ending in ``_``.
    ``fit`` sets ``interval_kind_`` and ``ate_interval_kind_`` (keys of INTERVAL_KINDS and
    ATE_INTERVAL_KINDS) when the adapter has intervals.
    """

    feature_names_: list[str]
    # Modules ``fit`` imports: imported before the fit is timed, so fit_seconds is the fit and not the process's
    # first import of its library (statsmodels.api: about a second, which made OLS look as slow as a forest).
    fit_imports: tuple[str, ...] = ()

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

    def interval_kind(self) -> str:
        """What the per-unit intervals of the fitted adapter claim (a key of INTERVAL_KINDS)."""
        return self._kind("interval_kind_", "effect_interval", INTERVAL_KINDS)

    def ate_interval_kind(self) -> str:
        """What the ATE interval of the fitted adapter claims (a key of ATE_INTERVAL_KINDS)."""
        return self._kind("ate_interval_kind_", "ate_interval", ATE_INTERVAL_KINDS)

    def _kind(self, attribute: str, method: str, vocabulary: dict) -> str:
        if not hasattr(self, "feature_names_"):
            raise AttributeError(f"{type(self).__name__} is not fitted: its interval kind is set by fit")
        kind = getattr(self, attribute, None)
        if kind is None:
            # An adapter without the interval method has no interval; one with it must say what it claims.
            if getattr(type(self), method) is getattr(CateAdapter, method):
                return "none"
            raise NotImplementedError(f"{type(self).__name__} implements {method} but its fit does not set "
                                      f"{attribute} (one of {', '.join(vocabulary)})")
        if kind not in vocabulary:
            raise ValueError(f"{type(self).__name__}.{attribute}={kind!r} is not one of {', '.join(vocabulary)}")
        return kind

    def native_importance(self) -> Optional[pd.DataFrame]:
        """The library's own feature importance(s), one column per measure, or None."""
        return None

    def summary(self) -> Optional[str]:
        """The library's own text summary of the fitted model, or None."""
        return None

    def insights(self, alpha: float) -> Optional[str]:
        """Plain-language statements about effect modifiers backed by the model's inference, or None."""
        return None
