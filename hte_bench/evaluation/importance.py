"""One model-agnostic importance for every CATE function: sklearn permutation importance of tau(x)."""
from __future__ import annotations

from typing import Callable, Optional

import numpy as np
import pandas as pd


def _effect_regressor(fn: Callable[[pd.DataFrame], np.ndarray]):
    """Presents a CATE function to sklearn as a fitted regressor whose prediction is tau(x)."""
    from sklearn.base import BaseEstimator, RegressorMixin

    class EffectFunction(RegressorMixin, BaseEstimator):
        def __init__(self, fn=None):
            self.fn = fn

        def fit(self, X, y=None):
            return self

        def predict(self, X) -> np.ndarray:
            return np.ravel(self.fn(X))

        def __sklearn_is_fitted__(self) -> bool:
            return True

    return EffectFunction(fn)


def effect_importance(fn: Callable[[pd.DataFrame], np.ndarray], X: pd.DataFrame, seed: int,
                      n_repeats: int = 3, max_rows: int = 500) -> pd.Series:
    """Mean squared change of tau(x) when one feature is permuted, one value per feature.

    The target is the function's own unpermuted output, so the score drop under permutation is
    E[(tau(X) - tau(X_perm_j))^2]: zero for a feature tau does not use, comparable between an estimate
    and the true tau function because both are measured on the same X the same way. Each repeat uses
    at most ``max_rows`` rows: a forest's predict dominates the cost.
    """
    from sklearn.inspection import permutation_importance

    wrapped = _effect_regressor(_as_frame(fn, X))
    baseline = np.ravel(fn(X))
    # sklearn shuffles a NumPy array in place where it would index a DataFrame column by column, and a plain
    # squared-error scorer skips its metric's input checks: the same permutations and values, ~4x cheaper.
    result = permutation_importance(wrapped, X.to_numpy(), baseline, scoring=_neg_mean_squared_error,
                                    n_repeats=n_repeats, random_state=seed,
                                    max_samples=min(1.0, max_rows / max(len(X), 1)))
    return pd.Series(np.maximum(result.importances_mean, 0.0), index=[str(c) for c in X.columns])


def _as_frame(fn: Callable[[pd.DataFrame], np.ndarray], X: pd.DataFrame) -> Callable:
    """fn on rows of X given as a NumPy array: rebuilt as a frame with X's column names and dtypes."""
    columns, dtypes = X.columns, list(X.dtypes)
    if len(set(dtypes)) == 1 and dtypes[0] == X.to_numpy().dtype:  # one dtype: the array is the frame
        return lambda values: fn(pd.DataFrame(values, columns=columns))
    # Series.astype, not ndarray.astype: a column may have a pandas dtype (category, nullable integers).
    return lambda values: fn(pd.DataFrame({c: pd.Series(values[:, j]).astype(dt)
                                           for j, (c, dt) in enumerate(zip(columns, dtypes))}))


def _neg_mean_squared_error(estimator, X, y) -> float:
    """sklearn's neg_mean_squared_error scorer without its input validation, computed the same way."""
    errors = (np.reshape(y, (-1, 1)) - np.reshape(estimator.predict(X), (-1, 1))) ** 2
    return -float(np.mean(np.mean(errors, axis=0)))


def importance_table(estimated: pd.Series, true: Optional[pd.Series], modifiers: Optional[list[str]],
                     native: Optional[pd.DataFrame] = None) -> pd.DataFrame:
    """Estimated vs true permutation importance per feature, whether it is a true modifier, the library's own measures."""
    table = pd.DataFrame({"estimated": estimated})
    table["true"] = true if true is not None else np.nan
    # Unknown (None: no truth, or a CSV without data.modifiers) is NaN, not "no feature is a modifier".
    table["true_modifier"] = [f in set(modifiers) for f in table.index] if modifiers is not None else np.nan
    if native is not None:
        table = table.join(native.add_prefix("native_"))
    table.index.name = "feature"
    return table
