"""Adapter for CausalML's CATE learners (meta-learners and causal forest), so one study compares libraries on the same seeds."""
from __future__ import annotations

import copy
import inspect
from typing import Any, Optional

import numpy as np
import pandas as pd

from hte_bench.errors import ConfigError
from hte_bench.estimators.base import CateAdapter, NoInference

# CausalML's own clipping of estimated propensities (causalml.propensity.compute_propensity_score).
CLIP = (1e-3, 1 - 1e-3)
REQUIRES = ("causalml",)  # the libraries a fitted adapter needs to load elsewhere (config.model_dependencies)
# Learners that cross-fit inside their own fit (the R-learner's outcome model, the DR-learner's nuisances):
# a resample drawn with replacement puts copies of a row on both sides of their folds, so each refit's
# nuisances have seen the rows they are scored on and the refits are biased (README "DoubleML and CausalML").
CROSS_FITTING = ("BaseRLearner", "BaseDRLearner")


class CausalMLAdapter(CateAdapter):
    """Wraps an unfitted CausalML learner (``model``, built by Hydra with its nuisance models).

    ``propensity_model`` (the X-, R- and DR-learners' ``${treatment_model}``): its cross-fitted
    probabilities are passed as CausalML's ``p`` when fitting, and a fit on the whole training sample gives
    ``p`` for new rows (the X-learner weights its two effect models by it). ``n_bootstraps > 0`` gives
    intervals as CausalML's ``BaseLearner.bootstrap`` does (refit on resamples of the training rows drawn
    with replacement, percentiles of the predictions), but keeping the refitted learners so the test split
    gets intervals too (CausalML's ``fit_predict(return_ci=True)`` only predicts the rows it was fitted on):
    kinds ``bootstrap`` / ``bootstrap``; the ATE interval is the percentile interval of each refit's mean
    effect over the rows. ``n_bootstraps = 0`` (the default, as for econml's meta-learners): no intervals; nor
    for the R- and DR-learners, whose own cross-fitting the resampling breaks (CROSS_FITTING).
    """

    def __init__(self, model: Any, propensity_model: Any = None, n_bootstraps: int = 0, random_state: int = 0):
        self.model = model
        self.propensity_model = propensity_model
        self.n_bootstraps = n_bootstraps
        self.random_state = random_state

    def fit(self, X: pd.DataFrame, T: np.ndarray, Y: np.ndarray) -> "CausalMLAdapter":
        if int(self.n_bootstraps) < 0:
            raise ConfigError(f"estimator.n_bootstraps={self.n_bootstraps}: must be 0 (no intervals) or more")
        self.feature_names_ = [str(c) for c in X.columns]
        Xa, t, y = X.to_numpy(dtype=float), np.asarray(T).astype(int), np.asarray(Y, dtype=float)
        p = self._fit_propensity(Xa, t)
        self.model_ = self._fit_one(Xa, t, y, p)
        self.bootstrap_models_ = []
        self.no_interval_reason_ = self._no_bootstrap_reason()
        rng = np.random.RandomState(self.random_state)
        for _ in range(0 if self.no_interval_reason_ else int(self.n_bootstraps)):
            idx = rng.choice(len(t), size=len(t))
            self.bootstrap_models_.append(self._fit_one(Xa[idx], t[idx], y[idx], None if p is None else p[idx]))
        kind = "bootstrap" if self.bootstrap_models_ else "none"
        self.interval_kind_ = self.ate_interval_kind_ = kind
        return self

    def _no_bootstrap_reason(self) -> Optional[str]:
        """Why no bootstrap interval is given (None: the bootstrap is valid or not asked for)."""
        if not int(self.n_bootstraps):
            return (f"{type(self.model).__name__} has intervals only by bootstrap: set estimator.n_bootstraps "
                    "(e.g. 100; each refits the whole learner)")
        crossfit = [c.__name__ for c in type(self.model).__mro__ if c.__name__ in CROSS_FITTING]
        if crossfit:
            return (f"no interval: CausalML's bootstrap (resampling with replacement) is invalid for "
                    f"{type(self.model).__name__}, which cross-fits inside fit; copies of a row land on both sides "
                    "of its folds and bias every refit (its interval missed its own estimate on engagement)")
        return None

    def _fit_propensity(self, X: np.ndarray, t: np.ndarray) -> Optional[np.ndarray]:
        """Cross-fitted P(T=1|X) on the training rows (CausalML's p), and ``propensity_model_`` for new rows."""
        from sklearn.base import clone
        from sklearn.model_selection import StratifiedKFold, cross_val_predict

        if self.propensity_model is None:
            self.propensity_model_ = None
            return None
        folds = StratifiedKFold(5, shuffle=True, random_state=self.random_state)
        p = cross_val_predict(clone(self.propensity_model), X, t, cv=folds, method="predict_proba")[:, 1]
        self.propensity_model_ = clone(self.propensity_model).fit(X, t)
        return np.clip(p, *CLIP)

    def _fit_one(self, X: np.ndarray, t: np.ndarray, y: np.ndarray, p: Optional[np.ndarray]) -> Any:
        """A fresh copy of the CausalML learner fitted on these rows (p and the DR-learner's seed where it takes them)."""
        model = copy.deepcopy(self.model)
        params = inspect.signature(model.fit).parameters
        kwargs = {}
        if p is not None and "p" in params:
            kwargs["p"] = p
        if "seed" in params:  # BaseDRRegressor seeds its cross-fitting split here
            kwargs["seed"] = int(self.random_state)
        if "verbose" in params:
            kwargs["verbose"] = False
        from joblib import parallel_config

        # CausalML's R-learner cross-fits with n_jobs=-1 whatever it is given: a pool of worker processes per fit
        # (seconds of imports each, also inside hte-bench's own seed processes). Folds one after another give
        # the same numbers; hte-bench parallelises seeds instead (n_jobs).
        with parallel_config(backend="sequential"):
            model.fit(X, treatment=t, y=y, **kwargs)
        return model

    def _predict(self, model: Any, X: np.ndarray) -> np.ndarray:
        params = inspect.signature(model.predict).parameters
        kwargs = {}
        if self.propensity_model_ is not None and "p" in params:
            kwargs["p"] = np.clip(self.propensity_model_.predict_proba(X)[:, 1], *CLIP)
        if "verbose" in params:
            kwargs["verbose"] = False
        return np.ravel(model.predict(X, **kwargs))

    def effect(self, X: pd.DataFrame) -> np.ndarray:
        return self._predict(self.model_, X.to_numpy(dtype=float))

    def _draws(self, X: pd.DataFrame) -> np.ndarray:
        """Per-unit effects of every bootstrap refit, shape (n_bootstraps, n)."""
        if not self.bootstrap_models_:
            raise NoInference(self.no_interval_reason_)
        Xa = X.to_numpy(dtype=float)
        return np.vstack([self._predict(m, Xa) for m in self.bootstrap_models_])

    def effect_interval(self, X: pd.DataFrame, alpha: float) -> tuple[np.ndarray, np.ndarray]:
        lo, hi = np.percentile(self._draws(X), [100 * alpha / 2, 100 * (1 - alpha / 2)], axis=0)
        return lo, hi

    def ate_interval(self, X: pd.DataFrame, alpha: float) -> tuple[float, float]:
        lo, hi = np.percentile(self._draws(X).mean(axis=1), [100 * alpha / 2, 100 * (1 - alpha / 2)])
        return float(lo), float(hi)

    def native_importance(self) -> Optional[pd.DataFrame]:
        imp = getattr(self.model_, "feature_importances_", None)  # the causal forest's split importance
        if imp is None or len(np.ravel(imp)) != len(self.feature_names_):
            return None
        return pd.DataFrame({"forest_split_importance": np.ravel(imp)}, index=self.feature_names_)
