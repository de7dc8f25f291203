"""Seed notebook 003's analyses redone on real fits: AIPW ATE with balance, subgroup, decile, quartile and heatmap tables.

Every number comes from the observed data (X, T, Y) or from a fitted ``Estimate``; the true tau only ever
appears as the "true" column beside an estimate (the notebook filled its causal-forest effects, tuning scores
and intervals from the true tau, and ran its doubly robust step on the wage level instead of the log wage).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Optional, Sequence

import numpy as np
import pandas as pd

from hte_bench.evaluation import metrics

if TYPE_CHECKING:  # annotations only; matplotlib and the data containers are imported where used
    from matplotlib.figure import Figure

    from hte_bench.data.base import Dataset, Truth
    from hte_bench.estimators.base import Estimate

NAN = float("nan")

# Okabe-Ito colours, as in hte_bench.plots (not imported so this module loads without matplotlib).
_BLUE = "#0072B2"
_ORANGE = "#E69F00"
_GREY = "#999999"


# --------------------------------------------------------------------------- subgroup declarations


@dataclass
class Subgroup:
    """A categorical column (``bins`` None) or a numeric column cut into right-closed bins (``pd.cut``)."""

    name: str
    column: str
    bins: Optional[list[float]] = None
    labels: Optional[list[str]] = None

    def assign(self, X: pd.DataFrame) -> pd.Series:
        """The level of every row of X as a string categorical; NaN where a value falls outside the bins."""
        if self.column not in X.columns:
            raise ValueError(f"subgroup {self.name!r}: column {self.column!r} is not a feature "
                             f"(features: {[str(c) for c in X.columns]})")
        values = X[self.column].reset_index(drop=True)
        if self.bins is None:
            levels = sorted(pd.unique(values.dropna()).tolist())
            cats = pd.Categorical(values.astype(object).map(_level_name),
                                  categories=[_level_name(v) for v in levels])
            return pd.Series(cats, name=self.name)
        cut = pd.cut(values.astype(float), bins=list(self.bins), labels=self.labels)
        # Labels as strings so tables and figures print the same names whether labels were given or not.
        cut = cut.cat.rename_categories([str(c) for c in cut.cat.categories])
        return pd.Series(cut, name=self.name)


def _level_name(v: Any) -> str:
    """A category value as a short string (1.0 -> '1')."""
    if isinstance(v, (float, np.floating)) and float(v).is_integer():
        return str(int(v))
    return str(v)


def _as_subgroup(s: Any) -> Subgroup:
    """A Subgroup from a Subgroup or a mapping with its fields (as a YAML config would give)."""
    if isinstance(s, Subgroup):
        return s
    if isinstance(s, dict) or hasattr(s, "keys"):
        d = dict(s)
        return Subgroup(name=str(d["name"]), column=str(d["column"]),
                        bins=None if d.get("bins") is None else [float(b) for b in d["bins"]],
                        labels=None if d.get("labels") is None else [str(x) for x in d["labels"]])
    raise TypeError(f"subgroups: expected Subgroup or mapping, got {type(s).__name__}")


# Seed notebook 003's groups. Ages are continuous, so the age bands keep pandas' interval names: a label
# such as '36-50' would wrongly suggest that 35.5 is excluded.
# --------------------------------------------------------------------------- AIPW and balance


def _arrays(X, T, Y=None) -> tuple:
    """X as a float matrix, T as 0/1 ints, Y as floats; raises on mismatched lengths or non-binary T."""
    Xm = np.asarray(X, dtype=float)
    if Xm.ndim == 1:
        Xm = Xm.reshape(-1, 1)
    t = np.asarray(T).ravel()
    if not set(np.unique(t).tolist()) <= {0, 1}:
        raise ValueError("subgroups: treatment must be binary 0/1")
    t = t.astype(int)
    if len(t) != len(Xm):
        raise ValueError(f"subgroups: X has {len(Xm)} rows but T has {len(t)}")
    if Y is None:
        return Xm, t
    y = np.asarray(Y, dtype=float).ravel()
    if len(y) != len(Xm):
        raise ValueError(f"subgroups: X has {len(Xm)} rows but Y has {len(y)}")
    return Xm, t, y


def aipw_ate(X, T, Y, seed: int, n_bootstrap: int = 500, alpha: float = 0.05, n_folds: int = 2) -> dict:
    """Cross-fitted AIPW estimate of the ATE on the observed outcome, with a score-based SE and a bootstrap interval."""
    from sklearn.linear_model import LogisticRegression, Ridge
    from sklearn.model_selection import StratifiedKFold
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from statsmodels.stats.weightstats import DescrStatsW

    Xm, t, y = _arrays(X, T, Y)
    n = len(y)
    if min(int(t.sum()), int(n - t.sum())) < max(2, n_folds):
        raise ValueError("aipw_ate: each treatment arm needs at least max(2, n_folds) units")

    # Cross-fitting: every unit's nuisance predictions come from models that never saw it, so its own noise
    # cannot leak into its score. Ridge/logistic would be nearly unbiased in-sample too, but the score stays
    # valid if a flexible model is swapped in; 2 folds keep each arm's training set at half the data.
    # n_folds < 2 fits in-sample, as the notebook did.
    if n_folds >= 2:
        splits = list(StratifiedKFold(n_splits=n_folds, shuffle=True, random_state=seed).split(Xm, t))
    else:
        everyone = np.arange(n)
        splits = [(everyone, everyone)]

    e_hat = np.empty(n)
    mu0 = np.empty(n)
    mu1 = np.empty(n)
    for train, held in splits:
        # Standardised features: prior_wage is in the tens of thousands and would otherwise dominate the
        # penalties of both the logistic and the ridge fits.
        ps = make_pipeline(StandardScaler(), LogisticRegression(C=1.0, max_iter=1000))
        ps.fit(Xm[train], t[train])
        e_hat[held] = ps.predict_proba(Xm[held])[:, 1]
        for arm, mu in ((1, mu1), (0, mu0)):
            rows = train[t[train] == arm]
            model = make_pipeline(StandardScaler(), Ridge(alpha=1.0))
            model.fit(Xm[rows], y[rows])
            mu[held] = model.predict(Xm[held])
    # Trimming bounds the inverse weights at 100; units beyond it are a positivity problem worth a look.
    e_hat = np.clip(e_hat, 0.01, 0.99)

    scores = (mu1 - mu0 + t * (y - mu1) / e_hat - (1 - t) * (y - mu0) / (1 - e_hat))
    stats = DescrStatsW(scores)
    ate = float(stats.mean)
    se = float(stats.std_mean)  # sd(ddof=1)/sqrt(n): the influence-function SE of AIPW
    ci_lower, ci_upper = (float(v) for v in stats.zconfint_mean(alpha=alpha))

    # The bootstrap resamples scores with the nuisance fits held fixed (as the notebook did); with
    # cross-fitting their estimation error is second order, so this mainly checks normality of the mean.
    rng = np.random.default_rng(seed)
    boot = np.empty(int(n_bootstrap))
    chunk = max(1, 2_000_000 // max(n, 1))  # bounds memory at ~16 MB of indices for any n
    for start in range(0, int(n_bootstrap), chunk):
        k = min(chunk, int(n_bootstrap) - start)
        boot[start:start + k] = scores[rng.integers(0, n, size=(k, n))].mean(axis=1)
    if boot.size:
        boot_lo, boot_hi = np.percentile(boot, [100 * alpha / 2, 100 * (1 - alpha / 2)])
    else:
        boot_lo = boot_hi = NAN

    return {"ate": ate, "se": se, "ci_lower": ci_lower, "ci_upper": ci_upper,
            "boot_ci_lower": float(boot_lo), "boot_ci_upper": float(boot_hi),
            "n": n, "n_treated": int(t.sum()), "n_folds": int(n_folds), "alpha": float(alpha),
            "n_bootstrap": int(n_bootstrap), "scores": scores, "e_hat": e_hat, "mu0_hat": mu0, "mu1_hat": mu1}


def balance_table(X, T, e_hat) -> pd.DataFrame:
    """Signed standardized mean difference per covariate, unweighted and inverse-propensity weighted."""
    names = [str(c) for c in X.columns] if isinstance(X, pd.DataFrame) else [f"x{j}" for j in range(np.shape(X)[1])]
    Xm, t = _arrays(X, T)
    e = np.asarray(e_hat, dtype=float).ravel()
    if len(e) != len(t):
        raise ValueError(f"balance_table: e_hat has {len(e)} values for {len(t)} units")
    if not (np.all(e > 0) and np.all(e < 1)):
        raise ValueError("balance_table: e_hat must lie strictly between 0 and 1")
    treated, control = t == 1, t == 0
    w = np.where(treated, 1.0 / e, 1.0 / (1.0 - e))
    rows = []
    for j, name in enumerate(names):
        x1, x0 = Xm[treated, j], Xm[control, j]
        # One denominator for both SMDs (the unweighted arms' pooled sd), so weighting changes only the
        # numerator and the two columns are directly comparable.
        sd = math.sqrt((np.var(x1, ddof=1) + np.var(x0, ddof=1)) / 2.0) if min(x1.size, x0.size) > 1 else NAN
        m1, m0 = float(np.mean(x1)), float(np.mean(x0))
        wm1 = float(np.average(x1, weights=w[treated]))
        wm0 = float(np.average(x0, weights=w[control]))
        rows.append({"covariate": name, "smd_unweighted": _smd(m1 - m0, sd), "smd_weighted": _smd(wm1 - wm0, sd),
                     "mean_treated": m1, "mean_control": m0,
                     "mean_treated_weighted": wm1, "mean_control_weighted": wm0})
    return pd.DataFrame(rows)


def _smd(diff: float, sd: float) -> float:
    """diff/sd; 0 for a covariate constant in both arms, ±inf when the arms are separated without spread."""
    if not math.isfinite(sd):
        return NAN
    if sd > 0:
        return diff / sd
    return 0.0 if abs(diff) <= 1e-12 else math.copysign(math.inf, diff)


def max_abs_smd_weighted(table: pd.DataFrame) -> float:
    """Largest |weighted SMD| of a balance table (NaN entries ignored; NaN when none is defined)."""
    return _max_abs(table["smd_weighted"])


def max_abs_smd_unweighted(table: pd.DataFrame) -> float:
    """Largest |unweighted SMD| of a balance table (NaN entries ignored; NaN when none is defined)."""
    return _max_abs(table["smd_unweighted"])


def _max_abs(col: pd.Series) -> float:
    """Max of |values| ignoring NaN."""
    v = np.abs(pd.to_numeric(col, errors="coerce").to_numpy(dtype=float, na_value=NAN))
    v = v[~np.isnan(v)]
    return float(v.max()) if v.size else NAN


# --------------------------------------------------------------------------- CATE tables


SUBGROUP_COLUMNS = ["subgroup", "column", "level", "n", "tau_hat_mean", "tau_true_mean", "diff", "coverage"]


def subgroup_table(X: pd.DataFrame, tau_true, tau_hat, lower=None, upper=None,
                   subgroups: Sequence[Subgroup] = ()) -> pd.DataFrame:
    """Per subgroup level: n, mean estimated and true tau, their difference, and interval coverage of the true tau."""
    t, h = metrics.paired(tau_true, tau_hat, "tau_true and tau_hat", where="subgroups")
    if len(X) != t.size:
        raise ValueError(f"subgroup_table: X has {len(X)} rows but tau has {t.size}")
    lo = None if lower is None else metrics.as_1d(lower)
    hi = None if upper is None else metrics.as_1d(upper)
    rows = []
    for sg in (_as_subgroup(s) for s in subgroups):
        level = sg.assign(X)
        for name in level.cat.categories:
            mask = (level == name).to_numpy(dtype=bool)
            n = int(mask.sum())
            # Empty levels stay in the table (n = 0) so a declared level never silently disappears.
            mean_hat = float(h[mask].mean()) if n else NAN
            mean_true = float(t[mask].mean()) if n else NAN
            cover = metrics.interval_coverage(t[mask], None if lo is None else lo[mask],
                                              None if hi is None else hi[mask])
            rows.append({"subgroup": sg.name, "column": sg.column, "level": str(name), "n": n,
                         "tau_hat_mean": mean_hat, "tau_true_mean": mean_true, "diff": mean_hat - mean_true,
                         "coverage": cover})
    table = pd.DataFrame(rows, columns=SUBGROUP_COLUMNS)
    table["n"] = table["n"].astype(int)
    return table


def calibration_by_decile(tau_true, tau_hat) -> pd.DataFrame:
    """Mean estimated vs mean true tau per decile of the estimate (metrics.calibration_table) with their gap."""
    table = metrics.calibration_table(tau_true, tau_hat, bins=10)
    table["gap"] = table["mean_pred"] - table["mean_true"]
    return table


def quartile_profiles(X: pd.DataFrame, tau_hat, tau_true) -> pd.DataFrame:
    """Count, mean estimated/true tau and feature means overall and in the top/bottom quarter by estimated tau."""
    h, t = metrics.paired(tau_hat, tau_true, "tau_hat and tau_true", where="subgroups")
    if len(X) != h.size:
        raise ValueError(f"quartile_profiles: X has {len(X)} rows but tau has {h.size}")
    # Groups are defined by the ESTIMATE, as a targeting rule would be; inclusive thresholds keep ties
    # together (a constant estimate puts everyone in both groups, which is the truth about it).
    q25, q75 = np.quantile(h, [0.25, 0.75]) if h.size else (NAN, NAN)
    groups = {"overall": np.ones(h.size, dtype=bool), "top_quartile": h >= q75, "bottom_quartile": h <= q25}
    numeric = X.reset_index(drop=True).select_dtypes(include=["number", "bool"]).astype(float)
    columns = {}
    for label, mask in groups.items():
        n = int(mask.sum())
        column = {"count": float(n),
                  "tau_hat_mean": float(h[mask].mean()) if n else NAN,
                  "tau_true_mean": float(t[mask].mean()) if n else NAN}
        for feature in numeric.columns:
            column[str(feature)] = float(numeric[feature].to_numpy()[mask].mean()) if n else NAN
        columns[label] = column
    table = pd.DataFrame(columns)
    table.index.name = "row"
    return table


# --------------------------------------------------------------------------- figures


def _figure(width: float, height: float, ncols: int = 1) -> tuple["Figure", list]:
    """A Figure on its own Agg canvas (no pyplot state) with ncols Axes."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(fig)
    axes = [fig.add_subplot(1, ncols, i + 1) for i in range(ncols)]
    return fig, axes


def _bin_labels(bins: Sequence[float]) -> list[str]:
    """Interval names for right-closed bins whose first bin also holds its left edge."""
    edges = [float(b) for b in bins]
    return [("[" if i == 0 else "(") + f"{a:g}, {b:g}]" for i, (a, b) in enumerate(zip(edges[:-1], edges[1:]))]


def heatmap_figure(X: pd.DataFrame, tau_hat, tau_true, row: str = "age", col: str = "education_years",
                   row_bins: Sequence[float] = (20, 35, 50, 65),
                   col_bins: Sequence[float] = (8, 12, 14, 20)) -> "Figure":
    """Side-by-side heatmaps of mean estimated and mean true tau per row×col cell, on one colour scale, with n."""
    h, t = metrics.paired(tau_hat, tau_true, "tau_hat and tau_true", where="subgroups")
    # include_lowest: education is clipped at 8 years, and a plain right-closed cut at 8 would silently
    # drop those units from the notebook's heatmap.
    r = pd.cut(X[row].reset_index(drop=True).astype(float), list(row_bins), labels=_bin_labels(row_bins),
               include_lowest=True)
    c = pd.cut(X[col].reset_index(drop=True).astype(float), list(col_bins), labels=_bin_labels(col_bins),
               include_lowest=True)
    frame = pd.DataFrame({"r": r, "c": c, "hat": h, "true": t})
    outside = int((r.isna() | c.isna()).sum())
    grouped = frame.dropna(subset=["r", "c"]).groupby(["r", "c"], observed=False)
    shape = (len(r.cat.categories), len(c.cat.categories))
    counts = grouped.size().to_numpy().reshape(shape)
    means = {k: grouped[k].mean().to_numpy(dtype=float, na_value=NAN).reshape(shape) for k in ("hat", "true")}
    finite = np.concatenate([m[np.isfinite(m)] for m in means.values()])
    vmin, vmax = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 1.0)
    if vmax <= vmin:
        vmax = vmin + 1e-9

    fig, axes = _figure(11.0, 4.2, ncols=2)
    image = None
    for ax, key, title in ((axes[0], "hat", "estimated mean τ̂"), (axes[1], "true", "true mean τ")):
        m = means[key]
        # Same vmin/vmax on both panels so colour differences are differences in tau, not in scaling.
        image = ax.imshow(np.ma.masked_invalid(m), cmap="viridis", vmin=vmin, vmax=vmax, aspect="auto")
        for i in range(shape[0]):
            for j in range(shape[1]):
                value = "–" if not np.isfinite(m[i, j]) else f"{m[i, j]:.3f}"
                light = np.isfinite(m[i, j]) and (m[i, j] - vmin) / (vmax - vmin) > 0.6
                ax.text(j, i, f"{value}\nn={counts[i, j]}", ha="center", va="center", fontsize=9,
                        color="black" if light else "white" if np.isfinite(m[i, j]) else _GREY)
        ax.set_xticks(range(shape[1]), list(c.cat.categories))
        ax.set_yticks(range(shape[0]), list(r.cat.categories))
        ax.set_xlabel(col)
        ax.set_ylabel(row)
        ax.set_title(title)
    fig.colorbar(image, ax=axes, label="mean effect in cell", shrink=0.9)
    note = f" ({outside} units outside the bins)" if outside else ""
    fig.suptitle(f"Effect by {row} × {col}: estimate vs truth{note}")
    return fig


def subgroup_figure(table: pd.DataFrame) -> "Figure":
    """Grouped bars of mean estimated vs mean true tau for every subgroup level of a subgroup_table."""
    n = len(table)
    fig, (ax,) = _figure(max(6.0, 1.5 + 0.85 * n), 4.8)
    if n == 0:
        ax.text(0.5, 0.5, "no subgroups declared", ha="center", va="center", transform=ax.transAxes, color=_GREY)
        return fig
    # A gap between subgroups so levels of one grouping read as a block.
    x, position, previous = [], 0.0, None
    for name in table["subgroup"]:
        if previous is not None and name != previous:
            position += 0.6
        x.append(position)
        position += 1.0
        previous = name
    x = np.asarray(x)
    width = 0.38
    hat = table["tau_hat_mean"].to_numpy(dtype=float, na_value=NAN)
    true = table["tau_true_mean"].to_numpy(dtype=float, na_value=NAN)
    ax.bar(x - width / 2, np.nan_to_num(hat), width, color=_BLUE, label="estimated mean τ̂")
    ax.bar(x + width / 2, np.nan_to_num(true), width, color=_ORANGE, label="true mean τ")
    ax.set_xticks(x, [f"{lv}\nn={k}".replace(" ", "\n", 1) if len(str(lv)) > 9 else f"{lv}\nn={k}"
                      for lv, k in zip(table["level"], table["n"])], fontsize=8)
    # The subgroup's name once under its block of levels instead of on every tick.
    names = table["subgroup"].to_numpy()
    for name in dict.fromkeys(names):
        centre = float(x[names == name].mean())
        ax.text(centre, -0.2, str(name), transform=ax.get_xaxis_transform(), ha="center", va="top",
                fontsize=9, fontweight="bold")
    ax.axhline(0.0, color="black", linewidth=0.8)
    ax.set_ylabel("mean effect in subgroup")
    ax.set_title("Effect by subgroup: estimate vs truth")
    ax.legend(fontsize="small")
    ax.grid(True, axis="y", alpha=0.3)
    return fig


# --------------------------------------------------------------------------- the whole analysis


@dataclass
class SubgroupReport:
    """Tables, figures and scalar metrics of one seed's subgroup analysis."""

    tables: dict[str, pd.DataFrame] = field(default_factory=dict)
    figures: dict[str, "Figure"] = field(default_factory=dict)
    metrics: dict[str, float] = field(default_factory=dict)


# Public interface: the scalar metric names analyse() returns.
SUBGROUP_METRICS: tuple[str, ...] = (
    "aipw_ate",
    "aipw_ate_se",
    "aipw_ate_ci_lower",
    "aipw_ate_ci_upper",
    "aipw_boot_ci_lower",
    "aipw_boot_ci_upper",
    "aipw_ate_covered",
    "max_abs_smd_unweighted",
    "max_abs_smd_weighted",
)


def analyse(dataset: "Dataset", truth: "Truth", estimate: "Estimate", seed: int, alpha: float = 0.05,
            n_bootstrap: int = 500) -> SubgroupReport:
    """AIPW and balance on the train split's observed data; subgroup, decile, quartile and heatmap views of the estimate on the test split."""
    report = SubgroupReport()

    # AIPW uses what the estimator was trained on (train X, T and the observed Y) and is judged against the
    # train sample's true ATE, the same target as the run's ate_true.
    aipw = aipw_ate(dataset.X_train, dataset.T_train, dataset.Y_train, seed=seed, n_bootstrap=n_bootstrap,
                    alpha=alpha)
    ate_true = float(np.mean(metrics.as_1d(truth.tau_train)))
    covered = 1.0 if aipw["ci_lower"] <= ate_true <= aipw["ci_upper"] else 0.0
    report.tables["aipw_ate"] = pd.DataFrame([{
        "ate": aipw["ate"], "se": aipw["se"], "ci_lower": aipw["ci_lower"], "ci_upper": aipw["ci_upper"],
        "boot_ci_lower": aipw["boot_ci_lower"], "boot_ci_upper": aipw["boot_ci_upper"],
        "ate_true": ate_true, "bias": aipw["ate"] - ate_true, "covered": covered,
        "n": aipw["n"], "n_treated": aipw["n_treated"], "n_folds": aipw["n_folds"], "alpha": alpha,
        "n_bootstrap": aipw["n_bootstrap"],
        "share_propensity_clipped": float(np.mean((aipw["e_hat"] <= 0.01) | (aipw["e_hat"] >= 0.99))),
    }])
    balance = balance_table(dataset.X_train, dataset.T_train, aipw["e_hat"])
    report.tables["balance"] = balance

    # The CATE views use the test split: units the estimator never saw, so the comparison is out of sample.
    X, tau, hat = dataset.X_test, truth.tau_test, estimate.tau_hat_test
    declared = truth.extra.get("subgroups") if truth.extra else None
    if declared:
        table = subgroup_table(X, tau, hat, estimate.lower_test, estimate.upper_test, declared)
        report.tables["subgroups"] = table
        report.figures["subgroups"] = subgroup_figure(table)
    report.tables["calibration_by_decile"] = calibration_by_decile(tau, hat)
    report.tables["quartile_profiles"] = quartile_profiles(X, hat, tau)
    heatmap = dict(truth.extra.get("heatmap") or {}) if truth.extra else {}
    row, col = heatmap.get("row", "age"), heatmap.get("col", "education_years")
    if row in X.columns and col in X.columns:
        report.figures["heatmap"] = heatmap_figure(X, hat, tau, **heatmap)

    report.metrics = {
        "aipw_ate": aipw["ate"],
        "aipw_ate_se": aipw["se"],
        "aipw_ate_ci_lower": aipw["ci_lower"],
        "aipw_ate_ci_upper": aipw["ci_upper"],
        "aipw_boot_ci_lower": aipw["boot_ci_lower"],
        "aipw_boot_ci_upper": aipw["boot_ci_upper"],
        "aipw_ate_covered": covered,
        "max_abs_smd_unweighted": max_abs_smd_unweighted(balance),
        "max_abs_smd_weighted": max_abs_smd_weighted(balance),
    }
    return report
