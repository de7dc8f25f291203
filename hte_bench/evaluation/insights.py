"""Plain-language statements about effect modifiers, each backed by inference.

Every estimator gets the same kind of statement: the best linear projection (BLP) of doubly robust scores
on the features, as grf's ``best_linear_projection``: OLS of the scores on an intercept and the centered
features with HC3 standard errors. The scores are grf's, with the estimator's own tau_hat on the test split:
    Γ_i = τ̂(x_i) + (T_i − ê_i)/(ê_i(1 − ê_i)) · (Y_i − m̂_i − (T_i − ê_i) τ̂(x_i)),
with ê and m̂ = ê μ̂1 + (1 − ê) μ̂0 from the seed's shared nuisances (fitted on the train split). Why this score
rather than the plain AIPW score μ̂1 − μ̂0 + ...: E[Γ | X] = τ(X) whenever ê is right, whatever τ̂, so a poor
estimator cannot manufacture a modifier, while a good τ̂ removes most of the outcome noise from Γ (the plain
AIPW score is the special case τ̂ = μ̂1 − μ̂0 and says nothing about the estimator). On the test split τ̂ is
out of sample, so it carries none of the test units' noise. A feature is named as a modifier only when its
interval excludes zero (per feature, not adjusted for multiplicity), with direction and size.
Estimators with their own coefficient inference (LinearDML, interaction OLS) keep that statement too.
"""
from __future__ import annotations

from typing import Optional

import numpy as np
import pandas as pd

from hte_bench.evaluation.registry import level_text

NO_TARGETING = "No targeting indicators, no features important in decision to treat."
INTERCEPT = "(Intercept)"


def p_text(p: float, digits: int) -> str:
    """``p = 0.012``; a p-value that underflowed to 0 in double precision reads ``p < 1e-16``, not ``p = 0``."""
    return "p < 1e-16" if p == 0 else f"p = {p:.{digits}g}"


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
                         f"(slope {row['point_estimate']:.4g}, {level_text(alpha)} CI "
                         f"[{row['ci_lower']:.4g}, {row['ci_upper']:.4g}], {p_text(row['pvalue'], 3)})")
    body = "\n".join(lines) if lines else f"- {NO_TARGETING}"
    return (f"# Insights\n\nSource: {source}, alpha = {alpha}; per-feature intervals, not adjusted for "
            f"multiplicity (with {len(table)} features and no effect modification, about {alpha * len(table):.2g} "
            f"false claims are expected).\n\n{body}\n")


def best_linear_projection(scores, X: pd.DataFrame, alpha: float = 0.05, standardize: bool = False) -> pd.DataFrame:
    """grf's best_linear_projection: OLS of DR scores on an intercept and centered features, HC3 SEs.

    One row per feature (plus ``(Intercept)``, the mean score: an ATE estimate) with coef, se, ci_lower,
    ci_upper, pvalue; with ``standardize`` the slopes are per +1 sd of the feature. Constant features are
    dropped (listed in ``table.attrs["dropped"]``): they cannot modify anything in this sample; so are features
    collinear with earlier ones (``table.attrs["collinear"]``).
    """
    import statsmodels.api as sm

    y = np.asarray(scores, dtype=float).ravel()
    frame = X.reset_index(drop=True).astype(float)
    if len(frame) != y.size:
        raise ValueError(f"best_linear_projection: X has {len(frame)} rows but there are {y.size} scores")
    if not np.isfinite(y).all():
        raise ValueError("best_linear_projection: non-finite DR scores")
    sd = frame.std(ddof=1)
    dropped = [str(c) for c in frame.columns if not sd[c] > 0]
    frame = frame.drop(columns=dropped)
    design = frame - frame.mean()
    # A feature that is a linear combination of earlier ones (a copy, a sum) has no slope of its own: as R's
    # lm (grf) leaves it NA, it is dropped and said, not given the others' interval from a singular fit.
    collinear = collinear_columns(design)
    kept = [c for c in design.columns if str(c) not in collinear]
    design, frame = design[kept], frame[kept]
    if standardize:
        design = design / sd[frame.columns]
    design.columns = [str(c) for c in design.columns]
    fit = sm.OLS(y, sm.add_constant(design, has_constant="add")).fit(cov_type="HC3")
    ci = np.asarray(fit.conf_int(alpha=alpha))
    names = [INTERCEPT, *design.columns]
    table = pd.DataFrame({"coef": np.asarray(fit.params), "se": np.asarray(fit.bse), "ci_lower": ci[:, 0],
                          "ci_upper": ci[:, 1], "pvalue": np.asarray(fit.pvalues),
                          "sd": [np.nan, *sd[frame.columns].to_numpy(float)],
                          "per_sd": [False] + [bool(standardize)] * design.shape[1]}, index=names)
    table.index.name = "feature"
    table.attrs["dropped"] = dropped
    table.attrs["collinear"] = collinear
    table.attrs["n"] = int(y.size)
    return table


def collinear_columns(frame: pd.DataFrame) -> list[str]:
    """The columns that are linear combinations of the ones before them (a copy, a sum, a full set of dummies'
    last one), found in one Cholesky pass over the correlation matrix (k × k, cheap for any n): a column whose
    part not explained by the kept ones is ~0 (an exact combination: ~1e-16). Constant columns are not judged."""
    values = frame.to_numpy(float)
    varying = [i for i in range(values.shape[1]) if np.nanstd(values[:, i]) > 0]
    if len(varying) < 2:
        return []
    from scipy.linalg import solve_triangular

    corr = np.atleast_2d(np.corrcoef(values[:, varying], rowvar=False))
    if np.linalg.eigvalsh(corr).min() > 1e-9:  # the usual case, in one decomposition: nothing to find
        return []
    collinear, kept = [], []
    L = np.zeros_like(corr)  # the Cholesky factor of the kept columns' block, filled row by row
    for j in range(len(varying)):
        m = len(kept)
        w = solve_triangular(L[:m, :m], corr[kept, j], lower=True) if m else np.zeros(0)
        rest = corr[j, j] - w @ w
        if rest < 1e-9:
            collinear.append(str(frame.columns[varying[j]]))
            continue
        L[m, :m], L[m, m] = w, np.sqrt(rest)
        kept.append(j)
    return collinear


def estimate_slopes(tau_hat, X: pd.DataFrame, table: pd.DataFrame) -> pd.Series:
    """Least-squares slopes of the estimator's own tau_hat on the features of a BLP table, on the same scale.

    Descriptive (no inference): shows whether the estimate moves with a feature the DR scores say matters.
    """
    features = [f for f in table.index if f != INTERCEPT]
    frame = X.reset_index(drop=True)[features].astype(float) if features else pd.DataFrame(index=range(len(X)))
    design = frame - frame.mean()
    if bool(table["per_sd"].iloc[1:].all()) and features:
        design = design / table.loc[features, "sd"].to_numpy(float)
    D = np.column_stack([np.ones(len(design)), design.to_numpy(float)])
    coef, *_ = np.linalg.lstsq(D, np.asarray(tau_hat, dtype=float).ravel(), rcond=None)
    return pd.Series(coef, index=[INTERCEPT, *features], name="tau_hat_slope")


def named_modifiers(table: pd.DataFrame) -> list[str]:
    """Features of a BLP table whose interval excludes zero."""
    rows = table.drop(index=INTERCEPT, errors="ignore")
    return [str(f) for f, r in rows.iterrows() if r["ci_lower"] > 0 or r["ci_upper"] < 0]


def describe_blp(table: pd.DataFrame, alpha: float, source: str) -> str:
    """Markdown statements from a BLP table: modifiers with direction, size and interval; the rest as 'no evidence'."""
    level = f"{level_text(alpha)} CI, HC3"
    rows = table.drop(index=INTERCEPT, errors="ignore")
    named = named_modifiers(table)
    lines = []
    for name in named:
        r = rows.loc[name]
        step = f"+1 sd of {name} ({r['sd']:.3g})" if r["per_sd"] else f"+1 of {name}"
        verb = "raises" if r["coef"] > 0 else "lowers"
        own = (f" This estimator's τ̂ moves by {r['tau_hat_slope']:+.3g} per step."
               if "tau_hat_slope" in rows.columns else "")
        lines.append(f"- Each {step} {verb} the effect by {abs(r['coef']):.3g} "
                     f"[{r['ci_lower']:.3g}, {r['ci_upper']:.3g}] ({level}; {p_text(r['pvalue'], 2)}).{own}")
    if not named:
        lines.append(f"- {NO_TARGETING} (no feature's interval excludes zero)")
    others = [str(f) for f in rows.index if str(f) not in named]
    if others:
        lines.append(f"- No evidence of effect modification (interval includes zero): {', '.join(others)}.")
    if table.attrs.get("dropped"):
        lines.append(f"- Constant in this sample, not assessed: {', '.join(table.attrs['dropped'])}.")
    if table.attrs.get("collinear"):
        lines.append(f"- A linear combination of the features before it, not assessed: "
                     f"{', '.join(table.attrs['collinear'])}.")
    if INTERCEPT in table.index:
        i = table.loc[INTERCEPT]
        lines.append(f"- Average effect (intercept): {i['coef']:.3g} [{i['ci_lower']:.3g}, {i['ci_upper']:.3g}] ({level}).")
    return (f"## Effect modifiers: best linear projection of doubly robust scores\n\n{source} "
            f"n = {table.attrs.get('n', 'unknown')}; per-feature intervals, not adjusted for multiplicity.\n\n"
            + "\n".join(lines) + "\n")


def compose(blp_text: Optional[str], native: Optional[str]) -> str:
    """insights.md: the BLP statement for every estimator, then the estimator's own coefficient statement if any."""
    parts = ["# Insights\n"]
    if blp_text:
        parts.append(blp_text)
    if native:
        body = native.split("\n", 1)[1].lstrip("\n") if native.startswith("# Insights") else native
        parts.append("## The estimator's own coefficient inference\n\n" + body)
    return "\n".join(parts)
