"""The promoted estimator as an MLflow pyfunc model: features in, CATE with its interval out.

Lives in the tracking package because it subclasses MLflow's PythonModel; only promotion and model loading import it.
"""
import numpy as np
import pandas as pd
from mlflow.pyfunc import PythonModel

from hte_bench.estimators.base import NoInference


class CateModel(PythonModel):
    """Wraps a fitted adapter; ``predict`` returns ``tau_hat, tau_lower, tau_upper`` (NaN bounds without inference)."""

    def __init__(self, adapter, feature_names: list[str], alpha: float):
        self.adapter = adapter
        self.feature_names = list(feature_names)
        self.alpha = float(alpha)

    def predict(self, context, model_input: pd.DataFrame, params: dict | None = None) -> pd.DataFrame:
        X = pd.DataFrame(model_input)[self.feature_names].astype(float)
        tau = np.asarray(self.adapter.effect(X), dtype=float)
        try:
            lo, hi = self.adapter.effect_interval(X, self.alpha)
        except NoInference:
            lo = hi = np.full(len(X), np.nan)
        return pd.DataFrame({"tau_hat": tau, "tau_lower": np.asarray(lo, float), "tau_upper": np.asarray(hi, float)},
                            index=X.index)
