"""Adapter for any econml CATE estimator (DML, DR, meta-learners, forests) built from config."""
from __future__ import annotations

import copy
import hashlib
import inspect
import warnings
from collections import OrderedDict
from typing import Any, Optional

import numpy as np
import pandas as pd

from hte_bench.errors import ConfigError
from hte_bench.estimators.base import CateAdapter, NoInference
from hte_bench.evaluation.insights import describe_coefficients


# Fitted first stages of this process, most recent last. Keyed by data, seed and every non-final
# parameter (nuisance models included), so a hit is exactly the fit a fresh run would compute.
_NUISANCE_CACHE: "OrderedDict[str, Any]" = OrderedDict()
_CACHE_SIZE = [16]
INTERVAL_ROWS = 10_000  # rows per effect_interval call (memory; see EconmlAdapter.effect_interval)


def configure_nuisance_cache(size: int) -> None:
    """How many first-stage fits this process keeps (0 disables reuse); set from the top-level config."""
    _CACHE_SIZE[0] = int(size)
    while len(_NUISANCE_CACHE) > max(_CACHE_SIZE[0], 0):
        _NUISANCE_CACHE.popitem(last=False)


def clear_nuisance_cache() -> None:
    """Forget every cached first-stage fit (tests, benchmarks)."""
    _NUISANCE_CACHE.clear()


_WARNED: dict = {}  # warnings' "once per location" registry for the ones passed on (as Python's own would be)


def _pass_on(caught) -> None:
    """Warn again what a ``catch_warnings(record=True)`` block caught, under its own module's name (so filters on
    the module still apply) and shown once per location, as if it had not been caught."""
    if not caught:  # the usual fit: no module table to build
        return
    import sys

    by_file = {getattr(m, "__file__", None): name for name, m in list(sys.modules.items())}
    for w in caught:
        module = by_file.get(w.filename) or w.filename
        warnings.warn_explicit(w.message, w.category, w.filename, w.lineno, module=module, registry=_WARNED)


def _fingerprint(X: np.ndarray) -> str:
    """Identity of a feature matrix (shape and bytes): is this the sample the model was fitted on?"""
    h = hashlib.sha256(repr(X.shape).encode())
    h.update(np.ascontiguousarray(X).tobytes())
    return h.hexdigest()


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

    ``model`` is the unfitted econml object (built by ``hydra.utils.instantiate`` from its nested config,
    nuisance models included); ``fit`` fits a copy, ``model_``. ``inference`` is passed to ``fit``
    (``"bootstrap"`` for meta-learners, which otherwise have no intervals; ``"auto"`` lets econml choose,
    ``None`` disables inference). ``final_stage`` names the parameters of ``model`` that change only its
    final stage: configurations differing only in those reuse the first-stage (nuisance) fit through
    econml's ``cache_values``/``refit_final``. Nothing declared, no reuse.

    Interval kinds (set by fit from the fitted inference, see base.INTERVAL_KINDS):
    - no inference: ``none`` / ``none``.
    - ``inference=bootstrap``: ``bootstrap`` / ``bootstrap``.
    - linear final stage (LinearDML, LinearDRLearner, ...): ``per_unit`` / ``ate`` — the CATE and its mean
      over X are linear contrasts of the final coefficients, with their exact standard errors.
    - forest final stage (CausalForestDML, ForestDRLearner): ``per_unit`` from the honest forest's BLB
      variance, ``not_honest`` with ``honest=False``. ATE: CausalForestDML with a discrete treatment and
      ``drate=True`` (econml's default) gives a doubly robust ATE of the training sample with its own
      standard error (``ate__inference``): ``ate``. Otherwise econml's ``ate_interval`` rests on
      ``stderr_mean``, which it documents as a conservative upper bound: ``conservative_bound``.
    """

    def __init__(self, model: Any, inference: Optional[str] = "auto", final_stage: Optional[list] = None):
        self.model = model
        self.inference = inference
        self.final_stage = final_stage

    def fit(self, X: pd.DataFrame, T: np.ndarray, Y: np.ndarray) -> "EconmlAdapter":
        final = self._final_stage_names()
        self._check_inference_option()
        self.feature_names_ = [str(c) for c in X.columns]
        self.x_sd_ = X.std().to_numpy(dtype=float)
        Xa, Ta, Ya = X.to_numpy(dtype=float), np.asarray(T), np.asarray(Y, dtype=float)
        self.train_fingerprint_ = _fingerprint(Xa)
        key = self._cache_key(final, Xa, Ta, Ya)
        self.reused_nuisance_ = key is not None and key in _NUISANCE_CACHE
        # econml warns, and goes on, when its final stage's covariance is singular (a feature that is a copy or
        # a combination of others, more features than rows): its coefficients are then not identified. Caught
        # here to say so; every other warning is passed on as it came (also when the fit raises).
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                self._fit_model(key, final, Xa, Ta, Ya)
            finally:
                invalid = [str(w.message) for w in caught if "Inference will be invalid" in str(w.message)]
                others = [w for w in caught if "Inference will be invalid" not in str(w.message)]
        _pass_on(others)
        self.invalid_inference_ = invalid[0] if invalid else None
        self.row_space_ = self._row_space(Xa) if invalid else None
        self.interval_kind_, self.ate_interval_kind_ = self._interval_kinds()
        return self

    def _row_space(self, Xa: np.ndarray) -> Optional[np.ndarray]:
        """Orthonormal rows spanning the training design of a singular linear final stage (intercept first when
        it fits one), or None when no effect has a valid interval: a featurized final stage this cannot check,
        or a saturated one (as many parameters as rows: no residual variance)."""
        if getattr(self.model_, "featurizer", None) is not None:
            return None
        design = self._design(Xa)
        _, sv, vt = np.linalg.svd(design, full_matrices=False)
        rank = int(np.sum(sv > sv.max() * max(design.shape) * np.finfo(float).eps))
        return None if rank >= design.shape[0] else vt[:rank]

    def _design(self, Xa: np.ndarray) -> np.ndarray:
        return np.column_stack([np.ones(len(Xa)), Xa]) if getattr(self.model_, "fit_cate_intercept", True) else Xa

    def _fit_model(self, key, final, Xa, Ta, Ya) -> None:
        """Fit the econml model (or refit the final stage of a cached first stage) into ``model_``."""
        from sklearn.base import clone

        if self.reused_nuisance_:
            self.model_ = self._refit_final(_NUISANCE_CACHE[key], final)
            _NUISANCE_CACHE.move_to_end(key)
        else:
            model = clone(self.model, safe=False)  # econml objects have no get_params: a deep copy
            kwargs = {}
            if "inference" in inspect.signature(model.fit).parameters:
                kwargs["inference"] = self.inference
            if key is not None:
                kwargs["cache_values"] = True
            model.fit(Ya, Ta, X=Xa, **kwargs)
            self.model_ = model
            if key is not None:
                # A reference, not a copy: copying costs ~0.5 s per fit and only reuse needs it (_refit_final).
                _NUISANCE_CACHE[key] = model
                configure_nuisance_cache(_CACHE_SIZE[0])

    def _check_inference_option(self) -> None:
        """A misspelt inference string refused before the nuisances are fitted (econml says so only after)."""
        options = getattr(self.model, "_get_inference_options", None)
        if not isinstance(self.inference, str) or options is None:
            return
        allowed = sorted(options())
        if self.inference not in allowed:
            import difflib

            close = difflib.get_close_matches(self.inference, allowed, n=1)
            hint = f" (did you mean estimator.inference={close[0]}?)" if close else ""
            raise ConfigError(f"estimator.inference={self.inference!r} is not an inference {type(self.model).__name__} "
                              f"offers{hint}; allowed: {', '.join(allowed)}, or null")

    def _final_stage_names(self) -> tuple[str, ...]:
        """The declared final-stage parameters, each checked against the econml class's ``__init__``."""
        declared = self.final_stage or ()
        if isinstance(declared, str):
            raise ConfigError(f"estimator.final_stage must be a list of parameter names, got {declared!r}")
        cls = type(self.model)
        allowed = [name for name, p in inspect.signature(cls.__init__).parameters.items()
                   if name != "self" and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]
        names = tuple(str(n) for n in declared)
        for name in names:
            if name not in allowed:
                raise ConfigError(f"estimator.final_stage: {name!r} is not a parameter of {cls.__name__}; "
                                  f"allowed: {', '.join(allowed)}")
        return names

    def _cache_key(self, final: tuple[str, ...], X: np.ndarray, T: np.ndarray, Y: np.ndarray) -> Optional[str]:
        """Identity of the first stage: data bytes and every parameter outside the declared final stage."""
        if not final or _CACHE_SIZE[0] <= 0:
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

    def _refit_final(self, cached: Any, final: tuple[str, ...]) -> Any:
        """A copy of the cached fit with this configuration's final-stage parameters, final stage refitted."""
        model = self._copy_first_stage(cached)
        for name in final:
            setattr(model, name, copy.deepcopy(getattr(self.model, name)))
        model.refit_final(inference=self.inference)
        return model

    def _interval_kinds(self) -> tuple[str, str]:
        """(per-unit kind, ATE kind) of the fitted model, read from the inference econml attached to it."""
        from econml.inference import (BootstrapInference, LinearModelFinalInference,
                                      LinearModelFinalInferenceDiscrete)

        if self.invalid_inference_ and self.row_space_ is None:
            return "none", "none"
        inference = getattr(self.model_, "_inference", None)
        finals = getattr(inference, "fitted_models_final", None) or []
        if inference is None or (finals and not hasattr(finals[0], "prediction_stderr")):
            return "none", "none"  # no inference, or a final model with point estimates only (LassoCV)
        if isinstance(inference, BootstrapInference):
            return "bootstrap", "bootstrap"
        if isinstance(inference, (LinearModelFinalInference, LinearModelFinalInferenceDiscrete)):
            return "per_unit", "ate"
        unit = "not_honest" if getattr(self.model_, "honest", True) is False else "per_unit"
        return unit, "ate" if self._has_dr_ate() else "conservative_bound"

    def _uses_dr_ate(self) -> bool:
        """Whether the ATE and its interval are econml's doubly robust ones (inference on, DR available)."""
        return self.ate_interval_kind_ == "ate" and self._has_dr_ate()

    def _has_dr_ate(self) -> bool:
        """Whether econml computed a doubly robust training-sample ATE with its standard error (drate)."""
        try:
            return hasattr(self.model_, "ate__inference") and np.all(np.isfinite(self.model_.ate_stderr_))
        except AttributeError:  # drate=False or a continuous treatment
            return False

    def _check_inference(self, Xa: np.ndarray) -> None:
        """After econml's singular-covariance warning, NoInference unless every row's effect is estimable: its
        features in the span of the training design (a copied or summed feature is copied or summed there too).
        Such an effect's interval does not depend on how the collinear coefficients are split."""
        if not getattr(self, "invalid_inference_", None):
            return
        why = (f"econml warned '{self.invalid_inference_}': a feature is a copy or a linear combination of "
               "others, or there are too many features for the rows")
        if self.row_space_ is None:
            raise NoInference(why)
        design = self._design(Xa)
        residual = design - (design @ self.row_space_.T) @ self.row_space_
        scale = np.maximum(np.linalg.norm(design, axis=1), 1.0)
        if np.any(np.linalg.norm(residual, axis=1) > 1e-8 * scale):
            raise NoInference(why + "; these rows' effects are not identified by the training features")

    def _call(self, method: str, *args, **kwargs):
        # econml signals "no inference" with an AttributeError: naming 'inference' when there is none, "Only point
        # estimates are available!" when inference='auto' met a final model without standard errors (e.g. a
        # DRLearner with LassoCV as model_final). Either way: no intervals, and a reason.
        try:
            return getattr(self.model_, method)(*args, **kwargs)
        except AttributeError as err:
            if "inference" in str(err):
                raise NoInference(f"{type(self.model_).__name__} was fitted with inference="
                                  f"{self.inference!r}: econml gives no intervals without inference") from err
            if "Only point estimates" in str(err):
                raise NoInference(f"{type(self.model_).__name__}: econml has only point estimates for this final "
                                  f"model (inference={self.inference!r} found no standard errors)") from err
            raise

    def effect(self, X: pd.DataFrame) -> np.ndarray:
        return np.ravel(self.model_.effect(X.to_numpy(dtype=float)))

    def effect_interval(self, X: pd.DataFrame, alpha: float):
        # A forest's interval call holds ~23 kB a row at once (1000 trees): 2 GiB for 100 000 rows, so a forest
        # is asked in blocks of INTERVAL_ROWS. Its rows' intervals are per-row sums over trees, the same numbers
        # in any block (tests/test_large_samples.py). Linear models need little memory and are asked in one call:
        # their matrix products can change in the last digit with the block's shape.
        Xa = X.to_numpy(dtype=float)
        self._check_inference(Xa)
        rows = max(len(Xa), 1)  # an empty X is still one call: econml says what it makes of it
        step = INTERVAL_ROWS if getattr(self.model_, "n_estimators", None) else rows
        blocks = [self._call("effect_interval", Xa[i:i + step], alpha=alpha) for i in range(0, rows, step)]
        return tuple(np.concatenate([np.ravel(block[side]) for block in blocks]) for side in (0, 1))

    def ate_interval(self, X: pd.DataFrame, alpha: float):
        Xa = X.to_numpy(dtype=float)
        self._check_inference(Xa)
        if self._uses_dr_ate():
            # econml's doubly robust ATE exists for the training sample only; its interval is centred on
            # that DR estimate (ate()), not on the mean of the forest's CATEs.
            if _fingerprint(Xa) != self.train_fingerprint_:
                raise NoInference("the doubly robust ATE interval (econml ate__inference) exists for the "
                                  "training sample only")
            lo, hi = self.model_.ate__inference().conf_int(alpha=alpha)
        else:
            lo, hi = self._call("ate_interval", Xa, alpha=alpha)
        return float(np.ravel(lo)[0]), float(np.ravel(hi)[0])

    def ate(self, X: pd.DataFrame) -> float:
        """The ATE over X that ate_interval is about: the DR estimate on the training sample, else mean CATE."""
        if self._uses_dr_ate() and _fingerprint(X.to_numpy(dtype=float)) == self.train_fingerprint_:
            return float(np.ravel(self.model_.ate_)[0])
        return super().ate(X)

    def native_importance(self) -> Optional[pd.DataFrame]:
        cols = {}
        try:
            cols["forest_split_importance"] = np.ravel(self.model_.feature_importances_)
        except (AttributeError, ValueError):
            pass
        for arm, m in enumerate(getattr(self.model_, "models", None) or []):
            # The seed notebook's T-learner view: how each arm's outcome model uses the features.
            if hasattr(m, "feature_importances_"):
                cols[f"outcome_model_arm{arm}"] = np.ravel(m.feature_importances_)
        coef = self._coef_table(0.05)
        if coef is not None:
            cols["abs_coef_x_sd"] = np.abs(coef["point_estimate"].to_numpy() * self.x_sd_)
        return pd.DataFrame(cols, index=self.feature_names_) if cols else None

    def _coef_table(self, alpha: float) -> Optional[pd.DataFrame]:
        """econml's inference on the final-stage CATE coefficients, one row per feature, or None."""
        if not hasattr(self.model_, "coef__inference") or getattr(self, "invalid_inference_", None):
            return None
        try:
            inference = self.model_.coef__inference(**self._t_kwargs(self.model_.coef__inference))
            # From the inference results, not summary_frame(): that rounds every column to 3 decimals, so a
            # p-value of 1.4e-4 read 0.0 (and "p < 1e-16"), and the slopes lost their digits.
            lower, upper = inference.conf_int(alpha=alpha)
            columns = {"point_estimate": inference.point_estimate, "stderr": inference.stderr,
                       "zstat": inference.zstat(0), "pvalue": inference.pvalue(0), "ci_lower": lower,
                       "ci_upper": upper}
            columns = {k: np.ravel(np.asarray(v, dtype=float)) for k, v in columns.items()}
        except (AttributeError, ValueError, TypeError):  # no standard errors (e.g. inference off)
            return None
        if any(len(v) != len(self.feature_names_) for v in columns.values()):
            return None
        return pd.DataFrame(columns, index=self.feature_names_)

    @staticmethod
    def _t_kwargs(method) -> dict:
        # DR learners report per treatment arm; the binary treatment's arm is T=1.
        return {"T": 1} if "T" in inspect.signature(method).parameters else {}

    def summary(self) -> Optional[str]:
        # Only linear final stages have a coefficient summary; CausalForestDML.summary() prints a notice
        # about cache_values instead of returning one.
        if not (hasattr(self.model_, "summary") and hasattr(self.model_, "coef__inference")):
            return None
        try:
            return str(self.model_.summary(feature_names=self.feature_names_,
                                          **self._t_kwargs(self.model_.summary)))
        except (AttributeError, ValueError, TypeError, NotImplementedError):
            return None

    def insights(self, alpha: float) -> Optional[str]:
        frame = self._coef_table(alpha)
        if frame is None:
            return None
        return describe_coefficients(frame, alpha, source=f"econml {type(self.model_).__name__} coefficient inference")
