"""Linear regression estimators with statsmodels: ``Y ~ T * (x1 + … + xk)`` and the constant-effect model."""
from __future__ import annotations

from typing import Optional

import numpy as np
import pandas as pd

from hte_bench.estimators.base import CateAdapter
from hte_bench.evaluation.insights import describe_coefficients


class InteractionOLS(CateAdapter):
    """OLS of the outcome on treatment, features and treatment × feature interactions (statsmodels; the
    design is the one patsy builds from ``formula_``, column names included).

    tau(x) = b_T + Σ_j b_{T:x_j} x_j, so the CATE, its interval and the ATE interval are linear contrasts
    of the fitted coefficients. ``interactions=False`` gives ``Y ~ T + x1 + … + xk``: one effect for all.
    ``cov_type`` is statsmodels' (``nonrobust``, ``HC1``, ``HC3``, …).

    Interval kinds: ``per_unit`` (a contrast's CI is a pointwise CI for tau(x), valid if the linear model
    is right) and ``ate`` (the contrast at the mean row); without interactions the per-unit interval is
    the ATE interval for every unit: ``broadcast_ate``.
    """

    fit_imports = ("statsmodels.api", "scipy.stats")

    def __init__(self, interactions: bool = True, cov_type: str = "nonrobust"):
        self.interactions = interactions
        self.cov_type = cov_type

    def fit(self, X: pd.DataFrame, T: np.ndarray, Y: np.ndarray) -> "InteractionOLS":
        import statsmodels.api as sm

        self.feature_names_ = [str(c) for c in X.columns]
        self.aliases_ = [f"x{j}" for j in range(X.shape[1])]
        self.formula_ = self._formula(self.aliases_)
        # The design patsy builds from formula_ (same columns, names and order, so the same fit and summary),
        # built directly: patsy's parsing and evaluation cost twice the fit itself at n = 1000.
        x, t = X.to_numpy(dtype=float), np.asarray(T, dtype=float).ravel()
        columns = [np.ones(len(t)), t, *x.T]
        names = ["Intercept", "T", *self.aliases_]
        if self.interactions:
            columns += list((t[:, None] * x).T)
            names += [f"T:{a}" for a in self.aliases_]
        design = pd.DataFrame(np.column_stack(columns), columns=names, index=X.index)
        outcome = pd.Series(np.asarray(Y, dtype=float).ravel(), name="Y", index=X.index)
        self.result_ = sm.OLS(outcome, design, missing="drop").fit(cov_type=self.cov_type)
        # statsmodels wraps each attribute read in a pandas object: the arrays are read once here. The columns are
        # the design's own (``names``), so positions come from it.
        self.params_ = self.result_.params.to_numpy()
        self.cov_ = np.asarray(self.result_.cov_params())
        self.t_column_ = names.index("T")
        self.interaction_columns_ = [names.index(f"T:{a}") for a in self.aliases_] if self.interactions else []
        self.x_sd_ = X.std().to_numpy(dtype=float)
        self.interval_kind_ = "per_unit" if self.interactions else "broadcast_ate"
        self.ate_interval_kind_ = "ate"
        return self

    def _contrast(self, X: pd.DataFrame) -> np.ndarray:
        """Rows c with c·beta = tau(x) for each unit of X."""
        C = np.zeros((len(X), len(self.params_)))
        C[:, self.t_column_] = 1.0
        if self.interactions:
            C[:, self.interaction_columns_] = X.to_numpy(dtype=float)
        return C

    def effect(self, X: pd.DataFrame) -> np.ndarray:
        return self._contrast(X) @ self.params_

    def effect_interval(self, X: pd.DataFrame, alpha: float):
        # Same formula as result_.t_test(C).conf_int(), but only the diagonal of C V C': t_test would
        # build the n × n covariance, which does not fit in memory for large test samples.
        C = self._contrast(X)
        se = np.sqrt(np.einsum("ij,jk,ik->i", C, self.cov_, C))
        q = self._quantile(alpha)
        est = C @ self.params_
        return est - q * se, est + q * se

    def _quantile(self, alpha: float) -> float:
        from scipy import stats

        if self.result_.use_t:
            return float(stats.t.ppf(1 - alpha / 2, self.result_.df_resid))
        return float(stats.norm.ppf(1 - alpha / 2))

    def ate_interval(self, X: pd.DataFrame, alpha: float):
        # The ATE over X is the contrast at the mean row: T + mean(x_j)·T:x_j.
        test = self.result_.t_test(self._contrast(X).mean(axis=0, keepdims=True))
        lo, hi = np.ravel(test.conf_int(alpha=alpha))
        return float(lo), float(hi)

    def _interaction_table(self, alpha: float) -> Optional[pd.DataFrame]:
        if not self.interactions:
            return None
        at = self.interaction_columns_
        ci = np.asarray(self.result_.conf_int(alpha=alpha))[at]
        return pd.DataFrame({"point_estimate": self.params_[at], "pvalue": np.asarray(self.result_.pvalues)[at],
                             "ci_lower": ci[:, 0], "ci_upper": ci[:, 1]}, index=self.feature_names_)

    def native_importance(self) -> Optional[pd.DataFrame]:
        if not self.interactions:
            return None
        # |interaction coefficient| × the feature's sd: the spread of tau(x) that feature accounts for.
        return pd.DataFrame({"abs_coef_x_sd": np.abs(self.params_[self.interaction_columns_] * self.x_sd_)},
                            index=self.feature_names_)

    def _formula(self, terms: list[str]) -> str:
        """The model's formula over ``terms`` (the fit's aliases, or the features' names to show)."""
        rhs = " + ".join(terms)
        if not rhs:
            return "Y ~ T"
        return f"Y ~ T * ({rhs})" if self.interactions else f"Y ~ T + {rhs}"

    def summary(self) -> Optional[str]:
        names = {a: n for a, n in zip(self.aliases_, self.feature_names_)}
        legend = "\n".join(f"  {a} = {n}" for a, n in names.items())
        return f"formula: {self.formula_}\nwhere\n{legend}\n\n{self.result_.summary()}"

    def insights(self, alpha: float) -> Optional[str]:
        table = self._interaction_table(alpha)
        if table is None:
            return None
        # The formula with the features' names, as the claims below name them (the fit uses aliases x0, x1, ...).
        return describe_coefficients(table, alpha, source=f"statsmodels OLS {self._formula(self.feature_names_)} "
                                     f"(cov_type={self.cov_type}), interaction terms")
