"""Adapter for any econml CATE estimator (DML, DR, meta-learners, forests) built from config."""
from __future__ import annotations

import copy
import hashlib
import inspect
from collections import OrderedDict
from typing import Any, Optional

import numpy as np
import pandas as pd

from hte_bench.estimators.base import CateAdapter, NoInference
from hte_bench.evaluation.insights import describe_coefficients


# Parameters that only change the final stage of econml's orthogonal learners: configurations that differ
# only in these reuse the first-stage (nuisance) fits through econml's cache_values/refit_final.
FINAL_STAGE_PARAMS = {
    "CausalForestDML": {"n_estimators", "criterion", "max_depth", "min_samples_split", "min_samples_leaf",
                        "min_weight_fraction_leaf", "min_var_fraction_leaf", "min_var_leaf_on_val",
                        "max_features", "min_impurity_decrease", "max_samples", "min_balancedness_tol",
                        "honest", "fit_intercept", "subforest_size", "n_jobs", "verbose"},
    "LinearDML": {"fit_cate_intercept"},
    "DML": {"model_final", "fit_cate_intercept"},
    "NonParamDML": {"model_final"},
    "DRLearner": {"model_final", "multitask_model_final"},
    "LinearDRLearner": {"fit_cate_intercept"},
}
# Fitted first stages of this process, most recent last. Keyed by data, seed and every non-final
# parameter (nuisance models included), so a hit is exactly the fit a fresh run would compute.
_NUISANCE_CACHE: "OrderedDict[str, Any]" = OrderedDict()
_CACHE_SIZE = [16]


def configure_nuisance_cache(size: int) -> None:
    """How many first-stage fits this process keeps (0 disables reuse); set from the top-level config."""
    _CACHE_SIZE[0] = int(size)
    while len(_NUISANCE_CACHE) > max(_CACHE_SIZE[0], 0):
        _NUISANCE_CACHE.popitem(last=False)


def clear_nuisance_cache() -> None:
    """Forget every cached first-stage fit (tests, benchmarks)."""
    _NUISANCE_CACHE.clear()


def _init_params(model: Any) -> dict[str, Any]:
    return {name: getattr(model, name, None) for name in inspect.signature(type(model).__init__).parameters
            if name != "self"}


def _describe(value: Any) -> str:
    """A complete text of a parameter value: sklearn models by all their parameters, recursively.

    Not repr(): sklearn elides long reprs with '...', and two nuisance models differing in the elided
    part would share a cache entry.
    """
    if hasattr(value, "get_params"):
        params = value.get_params(deep=False)
        return f"{type(value).__qualname__}({_describe(params)})"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k!r}: {_describe(v)}" for k, v in sorted(value.items())) + "}"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_describe(v) for v in value) + "]"
    return repr(value)


class EconmlAdapter(CateAdapter):
    """Wraps an econml estimator; intervals come from econml's own inference, never from elsewhere.

    ``model`` is the econml object (built by ``hydra.utils.instantiate`` from its nested config, nuisance
    models included); ``inference`` is passed to ``fit`` (e.g. ``"bootstrap"`` for meta-learners, which
    otherwise have no intervals; ``"auto"`` lets econml choose, ``None`` disables inference).
    """

    def __init__(self, model: Any, inference: Optional[str] = "auto"):
        self.model = model
        self.inference = inference

    def fit(self, X: pd.DataFrame, T: np.ndarray, Y: np.ndarray) -> "EconmlAdapter":
        self.feature_names_ = [str(c) for c in X.columns]
        self.x_sd_ = X.std().to_numpy(dtype=float)
        Xa, Ta, Ya = X.to_numpy(dtype=float), np.asarray(T), np.asarray(Y, dtype=float)
        kwargs = {}
        if "inference" in inspect.signature(self.model.fit).parameters:
            kwargs["inference"] = self.inference
        key = self._cache_key(Xa, Ta, Ya)
        self.reused_nuisance_ = key is not None and key in _NUISANCE_CACHE
        if self.reused_nuisance_:
            self.model = self._refit_final(_NUISANCE_CACHE[key])
            _NUISANCE_CACHE.move_to_end(key)
            return self
        if key is not None:
            kwargs["cache_values"] = True
        self.model.fit(Ya, Ta, X=Xa, **kwargs)
        if key is not None:
            # A reference, not a copy: copying costs ~0.5 s per fit and only reuse needs it (_refit_final).
            _NUISANCE_CACHE[key] = self.model
            configure_nuisance_cache(_CACHE_SIZE[0])
        return self

    def _cache_key(self, X: np.ndarray, T: np.ndarray, Y: np.ndarray) -> Optional[str]:
        """Identity of the first stage: data bytes and every parameter outside the final stage."""
        final = FINAL_STAGE_PARAMS.get(type(self.model).__name__)
        if final is None or _CACHE_SIZE[0] <= 0:
            return None
        h = hashlib.sha256(type(self.model).__qualname__.encode())
        for a in (X, T, Y):
            h.update(np.ascontiguousarray(a).tobytes())
        nuisance = {k: v for k, v in _init_params(self.model).items() if k not in final}
        h.update(_describe(nuisance).encode())
        return h.hexdigest()

    @staticmethod
    def _copy_first_stage(model: Any) -> Any:
        """A copy without the final stage: refit_final rebuilds it, and it is half of a fitted forest."""
        final = model._ortho_learner_model_final
        model._ortho_learner_model_final = None
        try:
            return copy.deepcopy(model)
        finally:
            model._ortho_learner_model_final = final

    def _refit_final(self, cached: Any) -> Any:
        """A copy of the cached fit with this configuration's final-stage parameters, final stage refitted."""
        model = self._copy_first_stage(cached)
        for name in FINAL_STAGE_PARAMS[type(self.model).__name__]:
            if hasattr(self.model, name):
                setattr(model, name, copy.deepcopy(getattr(self.model, name)))
        model.refit_final(inference=self.inference)
        return model

    def _call(self, method: str, *args, **kwargs):
        # econml signals "no inference" with an AttributeError naming 'inference'; turn it into a reason.
        try:
            return getattr(self.model, method)(*args, **kwargs)
        except AttributeError as err:
            if "inference" in str(err):
                raise NoInference(f"{type(self.model).__name__} was fitted with inference="
                                  f"{self.inference!r}: econml gives no intervals without inference") from err
            raise

    def effect(self, X: pd.DataFrame) -> np.ndarray:
        return np.ravel(self.model.effect(X.to_numpy(dtype=float)))

    def effect_interval(self, X: pd.DataFrame, alpha: float):
        lo, hi = self._call("effect_interval", X.to_numpy(dtype=float), alpha=alpha)
        return np.ravel(lo), np.ravel(hi)

    def ate_interval(self, X: pd.DataFrame, alpha: float):
        lo, hi = self._call("ate_interval", X.to_numpy(dtype=float), alpha=alpha)
        return float(np.ravel(lo)[0]), float(np.ravel(hi)[0])

    def native_importance(self) -> Optional[pd.DataFrame]:
        cols = {}
        try:
            cols["forest_split_importance"] = np.ravel(self.model.feature_importances_)
        except (AttributeError, ValueError):
            pass
        for arm, m in enumerate(getattr(self.model, "models", None) or []):
            # The seed notebook's T-learner view: how each arm's outcome model uses the features.
            if hasattr(m, "feature_importances_"):
                cols[f"outcome_model_arm{arm}"] = np.ravel(m.feature_importances_)
        coef = self._coef_table(0.05)
        if coef is not None:
            cols["abs_coef_x_sd"] = np.abs(coef["point_estimate"].to_numpy() * self.x_sd_)
        return pd.DataFrame(cols, index=self.feature_names_) if cols else None

    def _coef_table(self, alpha: float) -> Optional[pd.DataFrame]:
        """econml's inference on the final-stage CATE coefficients, one row per feature, or None."""
        if not hasattr(self.model, "coef__inference"):
            return None
        try:
            frame = self.model.coef__inference(**self._t_kwargs(self.model.coef__inference)).summary_frame(
                alpha=alpha, feature_names=self.feature_names_)
        except (AttributeError, ValueError):
            return None
        if len(frame) != len(self.feature_names_):
            return None
        frame.index = self.feature_names_
        return frame

    @staticmethod
    def _t_kwargs(method) -> dict:
        # DR learners report per treatment arm; the binary treatment's arm is T=1.
        return {"T": 1} if "T" in inspect.signature(method).parameters else {}

    def summary(self) -> Optional[str]:
        # Only linear final stages have a coefficient summary; CausalForestDML.summary() prints a notice
        # about cache_values instead of returning one.
        if not (hasattr(self.model, "summary") and hasattr(self.model, "coef__inference")):
            return None
        try:
            return str(self.model.summary(feature_names=self.feature_names_,
                                          **self._t_kwargs(self.model.summary)))
        except (AttributeError, ValueError, TypeError, NotImplementedError):
            return None

    def insights(self, alpha: float) -> Optional[str]:
        frame = self._coef_table(alpha)
        if frame is None:
            return None
        return describe_coefficients(frame, alpha, source=f"econml {type(self.model).__name__} coefficient inference")
