"""Plain-language statements about effect modifiers, as the seed notebook wrote them, backed by inference."""
from __future__ import annotations

from typing import Optional

import numpy as np
import pandas as pd

NO_TARGETING = "No targeting indicators, no features important in decision to treat."


def describe_coefficients(table: pd.DataFrame, alpha: float, source: str) -> str:
    """Insights from a per-feature table of CATE-slope inference (point_estimate, pvalue, ci_lower, ci_upper).

    A feature is named only when its interval excludes zero at level alpha, not when a bare coefficient
    passes a threshold as in the notebook.
    """
    lines = []
    for name, row in table.iterrows():
        if row["pvalue"] < alpha:
            direction = "increases" if row["point_estimate"] > 0 else "decreases"
            lines.append(f"- As {name} increases, treatment effect {direction}. "
                         f"(slope {row['point_estimate']:.4g}, {100 * (1 - alpha):.0f}% CI "
                         f"[{row['ci_lower']:.4g}, {row['ci_upper']:.4g}], p = {row['pvalue']:.3g})")
    body = "\n".join(lines) if lines else f"- {NO_TARGETING}"
    return f"# Insights\n\nSource: {source}, alpha = {alpha}.\n\n{body}\n"


def describe_without_inference(importance: Optional[pd.Series], X: pd.DataFrame, tau_hat: np.ndarray,
                               top: int = 3) -> str:
    """Descriptive statements for estimators without per-feature inference, labelled as such."""
    head = ("# Insights\n\nThis estimator reports no per-feature inference, so nothing below is a "
            "significance statement. Features ranked by permutation importance of the estimated CATE; "
            "direction is the sign of the Spearman correlation between the feature and the estimated CATE.\n\n")
    if importance is None or not np.isfinite(importance).any() or float(np.nanmax(importance)) <= 0:
        return head + f"- {NO_TARGETING} (the estimated CATE does not vary with any feature)\n"
    lines = []
    for name in importance.sort_values(ascending=False).index[:top]:
        if importance[name] <= 0:
            break
        rho = pd.Series(np.asarray(X[name], dtype=float)).corr(pd.Series(tau_hat), method="spearman")
        direction = "increases" if rho > 0 else "decreases"
        lines.append(f"- As {name} increases, the estimated treatment effect {direction} "
                     f"(importance {importance[name]:.4g}, Spearman {rho:+.2f}).")
    return head + "\n".join(lines) + "\n"
