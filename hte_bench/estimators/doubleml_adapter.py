"""Adapter for DoubleML's cross-fitted, Neyman-orthogonal ATE estimators (IRM and PLR) (Chernozhukov et al. 2018)."""
from __future__ import annotations

import hashlib
from typing import Any, Optional

import numpy as np
import pandas as pd

from hte_bench.errors import ConfigError
from hte_bench.estimators.base import CateAdapter, NoInference, numpy_seed

MODELS = ("irm", "plr")
REQUIRES = ("doubleml",)  # the libraries a fitted adapter needs to load elsewhere (config.model_dependencies)


def _fingerprint(X: pd.DataFrame) -> str:
    return hashlib.sha256(np.ascontiguousarray(X.to_numpy(dtype=float)).tobytes()).hexdigest()


class DoubleMLAdapter(CateAdapter):
    """DoubleML ``DoubleMLIRM`` (``model: irm``, binary treatment, fully heterogeneous effects) or
    ``DoubleMLPLR`` (``model: plr``, partially linear: one constant effect).

    Both estimate one ATE with a cross-fitted, Neyman-orthogonal score and its standard error; with
    ``n_rep > 1`` DoubleML aggregates the repeated sample splits (median). The per-unit effect is that ATE
    for everyone: interval kinds ``broadcast_ate`` / ``ate``. ``ml_g`` is the outcome model (E[Y|X,D] for
    IRM, E[Y|X] for PLR's ``ml_l``), ``ml_m`` the propensity model. ``group_effects`` gives IRM's GATEs
    with joint intervals (DoubleML's ``gate``), for the subgroup tables.
    """

    def __init__(self, model: str = "irm", ml_g: Any = None, ml_m: Any = None, n_folds: int = 5,
                 n_rep: int = 1, random_state: int = 0):
        self.model = model
        self.ml_g = ml_g
        self.ml_m = ml_m
        self.n_folds = n_folds
        self.n_rep = n_rep
        self.random_state = random_state

    fit_imports = REQUIRES

    def fit(self, X: pd.DataFrame, T: np.ndarray, Y: np.ndarray) -> "DoubleMLAdapter":
        import doubleml
        from sklearn.base import clone

        if self.model not in MODELS:
            raise ConfigError(f"estimator.model={self.model!r}: allowed {', '.join(MODELS)}")
        if self.ml_g is None or self.ml_m is None:
            raise ConfigError("estimator.ml_g and estimator.ml_m (outcome and propensity models) are required")
        self.feature_names_ = [str(c) for c in X.columns]
        data = doubleml.DoubleMLData.from_arrays(X.to_numpy(dtype=float), np.asarray(Y, dtype=float),
                                                 np.asarray(T, dtype=int))
        kw = dict(n_folds=int(self.n_folds), n_rep=int(self.n_rep))
        with numpy_seed(self.random_state):
            if self.model == "irm":
                dml = doubleml.DoubleMLIRM(data, ml_g=clone(self.ml_g), ml_m=clone(self.ml_m), score="ATE", **kw)
            else:
                dml = doubleml.DoubleMLPLR(data, ml_l=clone(self.ml_g), ml_m=clone(self.ml_m), score="partialling out",
                                           **kw)
            dml.fit()
        self.model_ = dml
        self.ate_ = float(np.ravel(dml.coef)[0])
        self.ate_se_ = float(np.ravel(dml.se)[0])
        self.train_fingerprint_ = _fingerprint(X)
        self.interval_kind_, self.ate_interval_kind_ = "broadcast_ate", "ate"
        return self

    def effect(self, X: pd.DataFrame) -> np.ndarray:
        return np.full(len(X), self.ate_)

    def ate(self, X: pd.DataFrame) -> float:
        return self.ate_

    def ate_interval(self, X: pd.DataFrame, alpha: float) -> tuple[float, float]:
        ci = self.model_.confint(level=1 - float(alpha))
        return float(ci.iloc[0, 0]), float(ci.iloc[0, 1])

    def effect_interval(self, X: pd.DataFrame, alpha: float) -> tuple[np.ndarray, np.ndarray]:
        lo, hi = self.ate_interval(X, alpha)
        return np.full(len(X), lo), np.full(len(X), hi)

    def group_effects(self, X: pd.DataFrame, groups: pd.Series, alpha: float) -> pd.DataFrame:
        """GATEs of the training sample's groups (levels of ``groups``) with DoubleML's joint intervals.

        One row per level: ``gate``, ``gate_lower``, ``gate_upper`` (simultaneous over the levels, multiplier
        bootstrap) and ``n``. IRM only; X must be the training sample (the scores live there).
        """
        if self.model != "irm":
            raise NoInference("DoubleML group effects (gate) exist for the IRM model only")
        if _fingerprint(X) != self.train_fingerprint_:
            raise NoInference("DoubleML group effects use the training sample's orthogonal scores: pass X_train")
        levels = pd.Series(groups).reset_index(drop=True)
        present = [c for c in (levels.cat.categories if hasattr(levels, "cat") else sorted(levels.dropna().unique()))
                   if (levels == c).sum() > 0]
        dummies = pd.DataFrame({str(c): (levels == c).to_numpy() for c in present})
        with numpy_seed(self.random_state + 1):
            ci = self.model_.gate(dummies).confint(joint=True, level=1 - float(alpha))
        return pd.DataFrame({"level": [str(c) for c in present], "n": dummies.sum().to_numpy().astype(int),
                             "gate": ci["effect"].to_numpy(), "gate_lower": ci.iloc[:, 0].to_numpy(),
                             "gate_upper": ci.iloc[:, 2].to_numpy()})

    def summary(self) -> Optional[str]:
        table = self.model_.summary.copy()
        table.index = ["T"]
        return f"DoubleML {type(self.model_).__name__} (n_folds={self.n_folds}, n_rep={self.n_rep})\n{table.to_string()}"
