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
        """tau_hat and its per-unit interval (NaN bounds without inference) for rows of the fitted features."""
        X = self.features(pd.DataFrame(model_input))
        tau = np.asarray(self.adapter.effect(X), dtype=float)
        try:
            lo, hi = self.adapter.effect_interval(X, self.alpha)
        except NoInference:
            lo = hi = np.full(len(X), np.nan)
        return pd.DataFrame({"tau_hat": tau, "tau_lower": np.asarray(lo, float), "tau_upper": np.asarray(hi, float)},
                            index=X.index)

    def features(self, frame: pd.DataFrame) -> pd.DataFrame:
        """The model's feature columns as floats, whatever numeric type they arrive in; ValueError names the
        columns that are missing, not numeric or incomplete."""
        missing = [c for c in self.feature_names if c not in frame.columns]
        if missing:
            raise ValueError(f"feature column(s) {missing} missing; the model needs {self.feature_names}")
        # Serving passes columns of the signature's AnyType as object Series: convert by value.
        numeric = {c: pd.to_numeric(frame[c], errors="coerce") for c in self.feature_names}
        bad = [c for c in self.feature_names if numeric[c].isna().any()]
        if bad:
            raise ValueError(f"feature column(s) {bad} hold missing or non-numeric values; the model needs numbers")
        return pd.DataFrame(numeric, index=frame.index).astype(float)


def feature_signature(example: pd.DataFrame, prediction: pd.DataFrame):
    """The model signature: every feature column by name, of any numeric type, and the three output columns.

    MLflow's schema enforcement refuses int64 values other than 0/1 in a ``double`` column ("Can not safely
    convert int64 to float64"), so typed columns would reject integer features; ``features`` checks instead.
    """
    from mlflow.models import ModelSignature, infer_signature
    from mlflow.types.schema import AnyType, ColSpec, Schema

    inputs = Schema([ColSpec(type=AnyType(), name=str(c)) for c in example.columns])
    return ModelSignature(inputs=inputs, outputs=infer_signature(example, prediction).outputs)
