"""Ranks configurations within each data generator, with paired tests against the best (no MLflow here)."""
from __future__ import annotations

import math
from typing import Optional

import numpy as np
import pandas as pd

from hte_bench.errors import ConfigError
from hte_bench.evaluation import registry

# Ranking reads the metric registry (direction or target of every metric). Parent-level metrics:
# ate_rmse is ranked through its per-seed squared error (same order, and testable); ate_coverage_rate only
# exists across seeds, so it has no paired test.
PARENT_ONLY = set(registry.names(level="config"))
RANKABLE = sorted(registry.rankable())
# Context columns shown for every configuration, whatever the ranking metric.
CONTEXT = ["ate_bias_mean", "ate_coverage_rate", "ate_coverage_rate_ci_lower", "ate_coverage_rate_ci_upper",
           "cate_coverage_test_mean", "calib_slope_test_mean", "importance_rank_corr_mean", "fit_seconds_mean"]
# Settings that do not change what is estimated: never shown as distinguishing overrides.
_IGNORED_PARAMS = ("tracking.", "n_jobs", "seeds", "n_seeds", "seed", "optimized_metric", "resume",
                   "nuisance_cache")


def direction(metric: str) -> str:
    """'lower', 'higher' or 'target=<value>' — how the metric is ranked (one-line error if it cannot rank)."""
    registry.loss(metric, [])  # refuses unregistered and context-only metrics in one line
    return registry.spec(metric).direction()


def loss(metric: str, values, alpha: float = 0.05) -> np.ndarray:
    """Per-seed values turned into a loss (lower is better) for ranking and paired tests."""
    return registry.loss(metric, values, alpha)


def latest_per_config(parents: pd.DataFrame) -> pd.DataFrame:
    """One row per config_hash: the most recently started finished parent run (reruns replace, not merge)."""
    if parents.empty:
        return parents
    ordered = parents.sort_values("start_time", ascending=False)
    return ordered.drop_duplicates("tags.config_hash").reset_index(drop=True)


def _varies(col: pd.Series) -> bool:
    return col.astype(str).nunique(dropna=False) > 1


def distinguishing_overrides(parents: pd.DataFrame) -> pd.Series:
    """For each row, the ``key=value`` params that tell it apart from its neighbours.

    Data and top-level params are compared within a data generator; estimator params only between
    configurations of the same estimator (a forest and an OLS differ in every estimator key).
    """
    out = pd.Series("", index=parents.index, dtype=object)
    params = [c for c in parents.columns if c.startswith("params.")
              and not c[len("params."):].startswith(_IGNORED_PARAMS)]
    for _, group in parents.groupby("tags.data"):
        shared = [c for c in params if not c.startswith("params.estimator.") and _varies(group[c])]
        for _, sub in group.groupby("tags.estimator"):
            own = [c for c in params if c.startswith("params.estimator.") and _varies(sub[c])]
            for idx, row in sub.iterrows():
                out[idx] = " ".join(f"{c[len('params.'):]}={row[c]}" for c in shared + own if pd.notna(row[c]))
    return out


def _paired_p(a: np.ndarray, b: np.ndarray, test: str) -> float:
    """Two-sided p-value that two configurations' per-seed losses differ; NaN when not testable."""
    from scipy import stats

    ok = np.isfinite(a) & np.isfinite(b)
    a, b = a[ok], b[ok]
    if len(a) < 2:
        return float("nan")
    diff = a - b
    if np.allclose(diff, 0):
        return 1.0
    if test == "wilcoxon":
        return float(stats.wilcoxon(a, b).pvalue)
    if test == "ttest":
        return float(stats.ttest_rel(a, b).pvalue)
    raise ConfigError(f"test={test!r} is not allowed; allowed: wilcoxon, ttest")


def seed_losses(seeds: pd.DataFrame, metric: str, alphas: dict[str, float]) -> pd.DataFrame:
    """Wide table of per-seed losses: index seed, one column per parent run id."""
    col = "metrics.ate_bias" if metric == "ate_rmse" else f"metrics.{metric}"
    if col not in seeds.columns:
        return pd.DataFrame()
    ok = seeds[seeds["status"] == "FINISHED"]
    wide = ok.pivot_table(index="tags.seed", columns="parent_id", values=col, aggfunc="first")
    for run_id in wide.columns:
        values = wide[run_id].to_numpy(dtype=float)
        wide[run_id] = values ** 2 if metric == "ate_rmse" else loss(metric, values, alphas.get(run_id, 0.05))
    return wide


def build(parents: pd.DataFrame, seeds: pd.DataFrame, metric: str = "cate_rmse_test", test: str = "wilcoxon",
          level: float = 0.05, correction: str = "holm") -> pd.DataFrame:
    """The leaderboard: configurations ranked by ``metric`` within each data generator.

    ``parents``/``seeds`` are run tables (columns ``tags.*``, ``params.*``, ``metrics.*``). Each
    configuration is tested against the best of its generator on the seeds both share; p-values are
    corrected for the number of comparisons with statsmodels ``multipletests``.
    """
    from statsmodels.stats.multitest import multipletests

    direction(metric)
    parents = latest_per_config(parents)
    if parents.empty:
        return pd.DataFrame()
    alpha_col = parents["params.alpha"] if "params.alpha" in parents else pd.Series(0.05, index=parents.index)
    alphas = {r: float(a) for r, a in zip(parents["run_id"], alpha_col)}
    losses = seed_losses(seeds, metric, alphas) if metric != "ate_coverage_rate" else pd.DataFrame()
    board = pd.DataFrame({
        "data": parents["tags.data"], "estimator": parents["tags.estimator"],
        "overrides": distinguishing_overrides(parents), "config_hash": parents["tags.config_hash"],
        "seeds_ok": parents.get("metrics.n_seeds_ok"), "seeds_failed": parents.get("metrics.n_seeds_failed"),
        "parent_run_id": parents["run_id"]})
    if metric in PARENT_ONLY:
        board[metric] = parents.get(f"metrics.{metric}")
        for side in ("ci_lower", "ci_upper"):
            board[f"{metric}_{side}"] = parents.get(f"metrics.{metric}_{side}")
    else:
        for stat in ("mean", "ci_lower", "ci_upper"):
            board[f"{metric}_{stat}"] = parents.get(f"metrics.{metric}_{stat}")
    for col in CONTEXT:
        board[col] = parents.get(f"metrics.{col}")
    if metric == "ate_coverage_rate":
        board["score"] = [float(loss(metric, [v], alphas[r])[0])
                          for v, r in zip(board[metric], board["parent_run_id"])]
    else:
        board["score"] = [float(np.nanmean(losses[r])) if r in losses and np.isfinite(losses[r]).any()
                          else math.nan for r in board["parent_run_id"]]
    board["p_vs_best"] = math.nan
    board["p_vs_best_adj"] = math.nan
    board["vs_best"] = "untested"
    board["rank"] = 0
    frames = []
    for _, group in board.groupby("data", sort=True):
        group = group.sort_values("score", na_position="last").copy()
        group["rank"] = group["score"].rank(method="min").astype("Int64")
        best = group.iloc[0]["parent_run_id"]
        others = group.index[1:]
        if not losses.empty and best in losses:
            for idx in others:
                run_id = group.at[idx, "parent_run_id"]
                if run_id in losses:
                    group.at[idx, "p_vs_best"] = _paired_p(losses[run_id].to_numpy(float),
                                                           losses[best].to_numpy(float), test)
            testable = group.loc[others, "p_vs_best"].dropna()
            if len(testable):
                group.loc[testable.index, "p_vs_best_adj"] = multipletests(testable.to_numpy(), alpha=level,
                                                                           method=correction)[1]
            adj = group.loc[others, "p_vs_best_adj"]
            group.loc[adj.index[adj < level], "vs_best"] = "worse"
            group.loc[adj.index[adj >= level], "vs_best"] = "tied"
        group.loc[group.index[0], "vs_best"] = "best"
        frames.append(group)
    out = pd.concat(frames)
    first = ["data", "rank", "estimator", "overrides", "vs_best", "score"]
    return out[first + [c for c in out.columns if c not in first]].reset_index(drop=True)


def average_rank(board: pd.DataFrame) -> Optional[pd.DataFrame]:
    """Mean rank of each estimator+overrides across data generators (only meaningful beside per-DGP ranks)."""
    if board.empty or board["data"].nunique() < 2:
        return None
    non_data = board["overrides"].str.split().apply(
        lambda parts: " ".join(p for p in parts if not p.startswith("data.")))
    key = board["estimator"] + np.where(non_data != "", " " + non_data, "")
    table = board.assign(config=key).pivot_table(index="config", columns="data", values="rank", aggfunc="min")
    table["mean_rank"] = table.mean(axis=1)
    table["n_data"] = table.drop(columns="mean_rank").notna().sum(axis=1)
    return table.sort_values("mean_rank")


# Truth-free scores a user could select a configuration by on real data, and which way is better.
SELECTORS = {name: registry.METRICS[name].goal
             for name in ("rscore", "dr_mse", "qini", "autoc", "cal_score", "policy_value_model")}


def selector_validation(board: pd.DataFrame, parents: pd.DataFrame, oracle: str = "cate_rmse_test") -> pd.DataFrame:
    """How well each truth-free score picks configurations, judged by the truth (no other tool can).

    Within each data generator: the configuration each score would pick, its oracle value (mean
    ``oracle`` across seeds), the regret against the oracle-best configuration, and the Spearman
    correlation between the score and the oracle across configurations (signed so that +1 means the
    score orders configurations exactly as the truth does).
    """
    from scipy import stats

    rows = []
    latest = parents.set_index("run_id")
    for data, group in board.groupby("data"):
        ids = group["parent_run_id"]
        truth = latest.loc[ids, f"metrics.{oracle}_mean"].astype(float).to_numpy() \
            if f"metrics.{oracle}_mean" in latest else np.full(len(ids), np.nan)
        if not np.isfinite(truth).any():
            continue
        oracle_loss = loss(oracle, truth)
        best = int(np.nanargmin(oracle_loss))
        for score, way in SELECTORS.items():
            col = f"metrics.{score}_mean"
            if col not in latest:
                continue
            values = latest.loc[ids, col].astype(float).to_numpy()
            ok = np.isfinite(values) & np.isfinite(oracle_loss)
            if ok.sum() < 2:
                continue
            score_loss = np.where(ok, values if way == "lower" else -values, np.inf)
            pick = int(np.argmin(score_loss))
            rho = stats.spearmanr(score_loss[ok], oracle_loss[ok]).statistic if ok.sum() > 2 else float("nan")
            labels = (group["estimator"] + " " + group["overrides"]).str.strip().to_numpy()
            rows.append({"data": data, "selector": score, "direction": way, "n_configs": int(ok.sum()),
                         "picked": labels[pick], f"picked_{oracle}": truth[pick],
                         "oracle_best": labels[best], f"best_{oracle}": truth[best],
                         "regret": float(oracle_loss[pick] - oracle_loss[best]),
                         "picked_oracle_rank": int(stats.rankdata(oracle_loss[ok], method="min")[
                             np.flatnonzero(ok).tolist().index(pick)]),
                         "spearman_with_oracle": float(rho)})
    return pd.DataFrame(rows)
