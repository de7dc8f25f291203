"""Ranks configurations within each data condition, with paired tests against the best (no MLflow here).

A data condition is the generator plus every resolved data knob (``compare.study``): configurations on
different data are never ranked, tested or judged together.
"""
from __future__ import annotations

import math
from typing import Optional

import numpy as np
import pandas as pd

from hte_bench.compare import study
from hte_bench.config import is_hashed, seed_list
from hte_bench.data.conditions import reads_file_rows
from hte_bench.errors import ConfigError
from hte_bench.evaluation import registry

# Ranking reads the metric registry (direction or target of every metric). Parent-level metrics: a root mean
# square (ate_rmse) is ranked through its per-seed squared error (same order, and testable); a share of seeds
# (ate_coverage_rate) only exists across seeds, so it has no paired test.

# vs_best when the paired test finds a difference opposite to the ranking by mean: lower loss on most seeds.
MIXED = "mixed: better on most seeds"


def parent_only(metric: str) -> bool:
    """Whether ``metric`` exists only across seeds (on the configuration run), asked of the registry when
    needed: a user's metric module may register one after this module is imported."""
    return registry.is_registered(metric) and registry.spec(metric).level == "config"


# Context columns shown for every configuration, whatever the ranking metric.
CONTEXT = ["ate_bias_mean", "ate_coverage_rate", "ate_coverage_rate_ci_lower", "ate_coverage_rate_ci_upper",
           "cate_coverage_test_mean", "calib_slope_test_mean", "importance_rank_corr_mean", "fit_seconds_mean"]
# The per-seed metric behind each mean of CONTEXT: recomputed on the seeds a row is compared on.
_CONTEXT_MEANS = {"ate_bias_mean": "ate_bias", "cate_coverage_test_mean": "cate_coverage_test",
                  "calib_slope_test_mean": "calib_slope_test", "importance_rank_corr_mean": "importance_rank_corr",
                  "fit_seconds_mean": "fit_seconds"}


_STAT_WORDS = {"mean": "mean", "std": "standard deviation", "ci_lower": "interval's lower bound",
               "ci_upper": "interval's upper bound"}


def direction(metric: str) -> str:
    """'lower', 'higher' or 'target=<value>' — how the metric is ranked (one-line error if it cannot rank)."""
    base, stat = registry.split_name(metric)
    if stat is not None and metric not in registry.METRICS and registry.spec(base).level == "seed":
        # Sweep summaries and optimized_metric use the aggregate names, so people type them here.
        raise ConfigError(f"--metric={metric} is an aggregate: did you mean {base}? (the board ranks per-seed "
                          f"metrics; {metric} is their {_STAT_WORDS[stat]} across seeds)")
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


def distinguishing_overrides(parents: pd.DataFrame, group: str = "tags.condition_hash") -> pd.Series:
    """For each row, the ``key=value`` params that tell it apart from its neighbours.

    Top-level params are compared within ``group`` (a data condition); estimator params only between
    configurations of the same estimator (a forest and an OLS differ in every estimator key). Data knobs
    are never shown: they are the condition's, in its own column.
    """
    out = pd.Series("", index=parents.index, dtype=object)
    # Settings outside a configuration's hash (seeds, n_jobs, tracking, …) never tell configurations apart.
    params = sorted(c for c in parents.columns if c.startswith("params.") and is_hashed(c[len("params."):])
                    and not c.startswith("params.data."))
    choices = sorted(c for c in parents.columns if c.startswith(_CHOICE_TAGS))  # one order in every table
    keys = parents[group] if group in parents else pd.Series("", index=parents.index)
    for _, part in parents.groupby(keys):
        picked = [c for c in choices if _varies(part[c])]  # outcome_model=lasso, as the user chose it
        shared = [c for c in params if not c.startswith("params.estimator.") and _varies(part[c])]
        for _, sub in part.groupby("tags.estimator"):
            own = [c for c in params if c.startswith("params.estimator.") and _varies(sub[c])]
            shown = [c for c in shared + own if not _from_choice(c, picked, sub)]
            for idx, row in sub.iterrows():
                out[idx] = " ".join([f"{c[len('tags.choice.'):]}={row[c]}" for c in picked if pd.notna(row[c])]
                                    + [f"{c[len('params.'):]}={row[c]}" for c in shown if pd.notna(row[c])])
    return out


_CHOICE_TAGS = tuple(f"tags.choice.{g}" for g in ("outcome_model", "treatment_model"))


def _from_choice(column: str, picked: list[str], rows: pd.DataFrame) -> bool:
    """Whether a param only restates a chosen nuisance group: one of its own keys (outcome_model.max_depth) or
    the estimator's copy of one through ${outcome_model} (estimator.model.model_y.max_depth, equal row by row),
    with one value per option chosen — a max_depth varied on top of the choice is shown."""
    key = column[len("params."):]
    for choice in picked:
        group = choice[len("tags.choice."):]
        own = key.startswith(f"{group}.") or any(
            key.endswith(c[len(f"params.{group}"):]) and rows[c].astype(str).tolist() == rows[column].astype(str).tolist()
            for c in rows.columns if c.startswith(f"params.{group}."))
        if own and rows.groupby(choice)[column].agg(lambda v: v.astype(str).nunique()).le(1).all():
            return True
    return False


def _paired_p(a: np.ndarray, b: np.ndarray, test: str) -> tuple[float, float]:
    """(two-sided p-value that two configurations' per-seed losses differ, its direction: > 0 when ``a``'s are
    the higher); NaN when not testable.

    The direction is the test's own (Wilcoxon: the signed ranks' sum; t-test: the mean difference): ranked by
    mean, a configuration can still have the lower loss on most seeds, and a test that finds that must not
    read as "worse".
    """
    from scipy import stats

    ok = np.isfinite(a) & np.isfinite(b)
    a, b = a[ok], b[ok]
    if len(a) < 2:
        return float("nan"), float("nan")
    diff = a - b
    if np.allclose(diff, 0):
        return 1.0, 0.0
    if test == "wilcoxon":
        nonzero = diff[diff != 0]
        ranks = stats.rankdata(np.abs(nonzero))
        return float(stats.wilcoxon(a, b).pvalue), float(np.sign(ranks[nonzero > 0].sum() - ranks[nonzero < 0].sum()))
    if test == "ttest":
        return float(stats.ttest_rel(a, b).pvalue), float(np.sign(diff.mean()))
    raise ConfigError(f"test={test!r} is not allowed; allowed: wilcoxon, ttest")


def seed_losses(seeds: pd.DataFrame, metric: str, alphas: dict[str, float]) -> pd.DataFrame:
    """Wide table of per-seed losses: index seed, one column per parent run id."""
    col = f"metrics.{registry.per_seed_source(metric)}"
    if col not in seeds.columns:
        return pd.DataFrame()
    ok = seeds[seeds["status"] == "FINISHED"]
    wide = ok.pivot_table(index="tags.seed", columns="parent_id", values=col, aggfunc="first")
    for run_id in wide.columns:
        values = wide[run_id].to_numpy(dtype=float)
        wide[run_id] = values ** 2 if registry.summarised_as(metric) == "rms" else loss(metric, values, alphas.get(run_id, 0.05))
    return wide


# Per-unit coverage metrics: only intervals whose kind claims per-unit validity are ranked by them.
PER_UNIT_COVERAGE = ("cate_coverage_train", "cate_coverage_test")


def _seed_sets(ok: pd.DataFrame, ids) -> dict[str, set[int]]:
    """Per configuration run, the seeds of its FINISHED seed runs."""
    if not len(ok):
        return {r: set() for r in ids}
    return {r: {int(s) for s in ok.loc[ok["parent_id"] == r, "tags.seed"]} for r in ids}


def _redrawn(ok: pd.DataFrame, run_ids, seeds) -> list[int]:
    """The ``seeds`` whose data differ between these configuration runs' seed runs (several ``data_hash``)."""
    if not len(ok) or "tags.data_hash" not in ok or not seeds:
        return []
    mine = ok[ok["parent_id"].isin(list(run_ids)) & ok["tags.seed"].astype(int).isin(seeds)]
    counts = mine.dropna(subset=["tags.data_hash"]).groupby(mine["tags.seed"].astype(int))["tags.data_hash"].nunique()
    return sorted(int(s) for s in counts.index[counts > 1])


def _per_seed(ok: pd.DataFrame, column: str) -> pd.DataFrame:
    """Wide table of one per-seed metric: index seed (int), one column per parent run id."""
    if column not in ok.columns or not len(ok):
        return pd.DataFrame()
    wide = ok.pivot_table(index="tags.seed", columns="parent_id", values=column, aggfunc="first")
    wide.index = wide.index.astype(int)
    return wide


def _on(wide: pd.DataFrame, run_id: str, seeds: list[int]) -> np.ndarray:
    """The run's values on exactly ``seeds`` (NaN where missing)."""
    if wide.empty or run_id not in wide:
        return np.full(len(seeds), np.nan)
    return wide[run_id].reindex(seeds).to_numpy(dtype=float)


def summarised_seeds(parents: pd.DataFrame, seeds: pd.DataFrame) -> pd.DataFrame:
    """The seed runs each configuration run summarises (its ``seeds`` tag: the seeds of the latest command that
    reached it), so boards, the sweep summary and the run's own figures speak of the same seeds; seed runs of
    other commands stay in the store, unused here. Runs without the tag keep all their seed runs."""
    if seeds.empty or "tags.seeds" not in parents.columns:
        return seeds
    summarised = {r: set(seeds_of(t)) for r, t in zip(parents["run_id"], parents["tags.seeds"])
                  if isinstance(t, str) and t}
    keep = [p not in summarised or int(s) in summarised[p] for p, s in zip(seeds["parent_id"], seeds["tags.seed"])]
    return seeds[keep]


def seeds_of(text: str) -> list[int]:
    """The seeds of a ``compared_on_seeds`` cell (``0-7``, ``0,3,9``, ``own seeds 0-2``, ``none``)."""
    text = str(text).replace("own seeds", "").strip()
    out: list[int] = []
    for part in filter(None, text.split(",")) if text != "none" else []:
        lo, _, hi = part.strip().partition("-")
        out.extend(range(int(lo), int(hi or lo) + 1))
    return out


def readable_seeds(text) -> str:
    """A seed list kept machine-readable in a tag (``0,1,2,3``) as boards write seeds (``0-3``); other text
    (``none (skipped)``) as it is."""
    text = "" if text is None else str(text)
    return seed_list(seeds_of(text)) if text.replace(",", "").replace("-", "").isdigit() else text


def build(parents: pd.DataFrame, seeds: pd.DataFrame, metric: str = "cate_rmse_test", test: str = "wilcoxon",
          level: float = 0.05, correction: str = "holm") -> pd.DataFrame:
    """The leaderboard: configurations ranked by ``metric`` within each data condition.

    ``parents``/``seeds`` are run tables (columns ``tags.*``, ``params.*``, ``metrics.*``). Within a
    condition every ranked configuration is scored, summarised (mean and t-interval across seeds) and tested
    on the same seeds: those all of them finished (``compared_on_seeds``), so a configuration with more or
    luckier seeds gains nothing. Each is tested against the best (chosen on those same seeds); p-values are
    corrected with ``adjusted_p`` (statsmodels' ``multipletests`` methods). A share of seeds
    (``ate_coverage_rate``) exists only across seeds: it keeps each configuration's own seeds (``compared_on_seeds`` says so). Ranking by
    per-unit coverage skips configurations whose intervals do not claim it.
    """
    direction(metric)
    parents = latest_per_config(study.with_conditions(parents))
    if parents.empty:
        return pd.DataFrame()
    alpha_col = parents["params.alpha"] if "params.alpha" in parents else pd.Series(0.05, index=parents.index)
    alphas = {r: float(a) for r, a in zip(parents["run_id"], alpha_col)}
    share = registry.summarised_as(metric) == "share"
    losses = seed_losses(seeds, metric, alphas) if not share else pd.DataFrame()
    if not losses.empty:
        losses.index = losses.index.astype(int)
    ids = parents["run_id"]
    ok = seeds[seeds["status"] == "FINISHED"] if len(seeds) else seeds
    own = _seed_sets(ok, ids)
    board = pd.DataFrame({
        "data": parents["tags.data"], "condition": parents["tags.condition"],
        "estimator": parents["tags.estimator"], "overrides": distinguishing_overrides(parents),
        # The same settings named alike in every condition (compared across the whole board), for average_rank.
        "settings": distinguishing_overrides(parents.assign(_all=""), group="_all"),
        "config_hash": parents["tags.config_hash"],
        "selection_seeds": [seed_list(own[r]) for r in ids], "compared_on_seeds": "", "n_compared": 0,
        "interval": "", "alpha": [alphas[r] for r in ids],
        "seeds_ok": parents.get("metrics.n_seeds_ok"), "seeds_failed": parents.get("metrics.n_seeds_failed"),
        "interval_kind": ids.map(study.interval_kinds(seeds, ids, "interval_kind")),
        "ate_interval_kind": ids.map(study.interval_kinds(seeds, ids, "ate_interval_kind")),
        "condition_hash": parents["tags.condition_hash"], "parent_run_id": ids,
        # Seeds that re-split the rows of one file (data=csv, by its generator as promotion judges it).
        "resplits": [reads_file_rows({"_target_": t}) for t in
                     parents.get("params.data._target_", pd.Series("", index=parents.index)).fillna("")]})
    cols = [metric, f"{metric}_ci_lower", f"{metric}_ci_upper"] if parent_only(metric) else \
        [f"{metric}_{stat}" for stat in ("mean", "ci_lower", "ci_upper")]
    for col in cols:
        board[col] = math.nan
    for col in CONTEXT:
        board[col] = parents.get(f"metrics.{col}")
    unclaimed = pd.Series(False, index=board.index)
    if metric in PER_UNIT_COVERAGE:  # a broadcast ATE or a dishonest forest claims nothing per unit
        unclaimed = ~board["interval_kind"].isin(study.PER_UNIT_VALID + ("unknown",))
    board["score"] = math.nan
    board["p_vs_best"] = math.nan
    board["p_vs_best_adj"] = math.nan
    board["vs_best"] = "untested"
    board["rank"] = pd.Series(pd.NA, index=board.index, dtype="Int64")
    values = _per_seed(ok, f"metrics.{registry.per_seed_source(metric)}")
    own = _with_values(own, values)
    context = {name: _per_seed(ok, f"metrics.{source}")
               for name, source in {**_CONTEXT_MEANS, "ate_coverage_rate": "ate_covered"}.items()}
    board["context_seeds"] = [f"own seeds {seed_list(own[r])}" for r in ids]
    frames = []
    for _, group in board.groupby("condition_hash", sort=False):
        group = group.copy()
        ranked = group.index[~unclaimed[group.index] & group["parent_run_id"].map(lambda r: bool(own[r]))]
        if share:  # only across seeds: each configuration on its own seeds, as logged
            for idx in group.index:
                r = group.at[idx, "parent_run_id"]
                row = parents.loc[idx]
                group.at[idx, metric] = row.get(f"metrics.{metric}", math.nan)
                for side in ("ci_lower", "ci_upper"):
                    group.at[idx, f"{metric}_{side}"] = row.get(f"metrics.{metric}_{side}", math.nan)
                group.at[idx, "score"] = float(loss(metric, [group.at[idx, metric]], alphas[r])[0])
                group.at[idx, "compared_on_seeds"] = f"own seeds {seed_list(own[r])}" if own[r] else "none"
                group.at[idx, "n_compared"] = len(own[r])
                group.at[idx, "interval"] = f"{registry.level_text(alphas[r])} Wilson across its own seeds"
            common: list[int] = []
        else:
            common = sorted(set.intersection(*(own[group.at[i, "parent_run_id"]] for i in ranked))) \
                if len(ranked) else []
            # Paired by seed number only where the draws are the same (tag data_hash): after a generator or
            # library change, a configuration not rerun has other data under the same seed.
            redrawn = _redrawn(ok, group.loc[ranked, "parent_run_id"], common)
            if redrawn:
                common = [s for s in common if s not in redrawn]
                group["redrawn_seeds"] = seed_list(redrawn)
            for idx in group.index:
                r = group.at[idx, "parent_run_id"]
                # Unranked rows are summarised on the common seeds too when they have them, else on their own.
                on = common if common and set(common) <= own[r] else sorted(own[r])
                v = _on(values, r, on)
                group.at[idx, "compared_on_seeds"] = seed_list(on) if on else "none"
                group.at[idx, "n_compared"] = len(on)
                if registry.summarised_as(metric) == "rms":  # a root mean square over seeds: no t-interval
                    group.at[idx, metric] = float(np.sqrt(np.nanmean(v ** 2))) if np.isfinite(v).any() else math.nan
                    group.at[idx, "interval"] = "none (root mean square over seeds)"
                else:
                    mean, lo, hi, _ = study.t_interval(v, 1 - alphas[r])
                    group.at[idx, f"{metric}_mean"] = mean
                    group.at[idx, f"{metric}_ci_lower"], group.at[idx, f"{metric}_ci_upper"] = lo, hi
                    group.at[idx, "interval"] = (f"{registry.level_text(alphas[r])} t-interval across seeds {seed_list(on)}"
                                                 if len(on) > 1 else "none (1 seed)")
                if on and any(r in wide for wide in context.values() if not wide.empty):
                    for name, value in _context_on(context, r, on, alphas[r]).items():
                        group.at[idx, name] = value
                    group.at[idx, "context_seeds"] = seed_list(on)
                if idx in ranked and common:
                    lv = _on(losses, r, common)
                    group.at[idx, "score"] = float(np.nanmean(lv)) if np.isfinite(lv).any() else math.nan
        if not share and len(ranked) and not common:
            group.loc[ranked, "vs_best"] = "unranked: no common seed"
            frames.append(group)
            continue
        group.loc[unclaimed[group.index][lambda u: u].index, "score"] = math.nan
        order = group.sort_values("score", na_position="last")
        frames.append(_rank_condition(order, losses.reindex(common) if common else losses, test, level,
                                      correction))
    out = pd.concat(frames)
    out.loc[unclaimed, "vs_best"] = "unranked: " + out.loc[unclaimed, "interval_kind"]
    out = out.sort_values(["data", "condition", "rank"], kind="stable", na_position="last")
    first = ["data", "condition", "rank", "estimator", "overrides", "vs_best", "score"]
    return out[first + [c for c in out.columns if c not in first]].reset_index(drop=True)


def _context_on(context: dict[str, pd.DataFrame], run_id: str, on: list[int], alpha: float) -> dict[str, float]:
    """The context columns of one row on the seeds it is compared on (so a promotion gate reads the seeds the
    configuration was selected on, not a resume's extra seeds): means, and the ATE coverage rate with its
    Wilson interval at the run's level. A metric none of its seeds carries keeps the run's own value (NaN in a
    store: the run's aggregate had no seed of it either)."""
    from hte_bench.evaluation.aggregate import coverage_rate

    out = {}
    for name, wide in context.items():
        if wide.empty or run_id not in wide:  # no seed of it carries the metric: the run's own value stands
            continue
        v = _on(wide, run_id, on)
        if name == "ate_coverage_rate":
            out.update(coverage_rate(v, name, alpha))
        else:
            out[name] = float(np.nanmean(v)) if np.isfinite(v).any() else math.nan
    return out


def _with_values(own: dict[str, set[int]], values: pd.DataFrame) -> dict[str, set[int]]:
    """Each run's finished seeds that carry the metric: an analysis metric (R-score, DR scores) exists on the
    first ``analyses.seeds`` seeds only, so a board of it is on those seeds, and says so. A run without the
    value on any seed keeps its finished seeds (it is listed, unranked, on them)."""
    out = {}
    for run_id, finished in own.items():
        have = set()
        if not values.empty and run_id in values:
            column = values[run_id]
            have = {int(s) for s in column.index[np.isfinite(column.to_numpy(float))]}
        out[run_id] = finished & have if finished & have else finished
    return out


def _rank_condition(group: pd.DataFrame, losses: pd.DataFrame, test: str, level: float,
                    correction: str) -> pd.DataFrame:
    """Ranks and paired tests against the best within one condition (``group`` sorted by score; ``losses``
    restricted to the seeds the condition is compared on)."""
    scored = group["score"].notna()
    if not scored.any():
        return group
    group.loc[scored, "rank"] = _ranks(group.loc[scored, "score"])
    # Within a tie the order (hence "best", and promotion's pick) is the configuration hash's, not float noise.
    group = group.sort_values(["rank", "config_hash"], na_position="last", kind="stable")
    best = group.iloc[0]["parent_run_id"]
    others = group.index[1:][scored[group.index[1:]]]
    sign: dict = {}
    if not losses.empty and best in losses:
        for idx in others:
            run_id = group.at[idx, "parent_run_id"]
            if run_id in losses:
                group.at[idx, "p_vs_best"], sign[idx] = _paired_p(losses[run_id].to_numpy(float),
                                                                  losses[best].to_numpy(float), test)
        testable = group.loc[others, "p_vs_best"].dropna()
        if len(testable):
            group.loc[testable.index, "p_vs_best_adj"] = adjusted_p(testable.to_numpy(), correction, level)
        adj = group.loc[others, "p_vs_best_adj"]
        differs = adj.index[adj < level]
        group.loc[[i for i in differs if sign.get(i, 0) > 0], "vs_best"] = "worse"
        # A difference the other way: lower loss on most seeds although the mean ranks it below (one bad seed).
        group.loc[[i for i in differs if sign.get(i, 0) <= 0], "vs_best"] = MIXED
        group.loc[adj.index[adj >= level], "vs_best"] = "tied"
    group.loc[group.index[0], "vs_best"] = "best"
    return group


def _ranks(scores: pd.Series) -> pd.Series:
    """Ranks 1, 2, ... where scores equal up to floating-point rounding share the lower rank: coverage 0.9 and
    1.0 are both 0.05 from 0.95, but |0.9 - 0.95| < |1.0 - 0.95| in floating point, and rounding picked a winner."""
    ordered = scores.sort_values(kind="stable")
    ranks, rank, anchor = {}, 0, None
    for position, (idx, value) in enumerate(ordered.items(), start=1):
        if anchor is None or not np.isclose(value, anchor, rtol=1e-9, atol=1e-12):
            rank, anchor = position, value
        ranks[idx] = rank
    return pd.Series(ranks, dtype="Int64").reindex(scores.index)


def adjusted_p(pvals: np.ndarray, method: str = "holm", level: float = 0.05) -> np.ndarray:
    """p-values adjusted for multiple comparisons: statsmodels' ``multipletests(pvals, level, method)[1]``.

    Run with the process's objects frozen out of the garbage collector: statsmodels runs a full
    ``gc.collect()`` on every call (Holm's step-down among others), 0.2-0.4 s in a process that holds MLflow
    and econml, once per data condition of a board; with ``gc.freeze`` it has nothing old to scan."""
    import gc

    from statsmodels.stats.multitest import multipletests

    frozen_already = gc.get_freeze_count() > 0  # the host program's own freeze is not ours to undo
    gc.freeze()
    try:
        return multipletests(pvals, alpha=level, method=method)[1]
    finally:
        if not frozen_already:
            gc.unfreeze()


def average_rank(board: pd.DataFrame) -> Optional[pd.DataFrame]:
    """Mean over data conditions of each configuration's rank within its condition (only meaningful beside the
    per-condition ranks; nothing is pooled across conditions). A configuration is its estimator and settings,
    named alike in every condition; each cell reads ``rank/ranked in that condition``. Only conditions where
    two or more configurations were ranked count (``n_conditions``); a lone one is shown ``1/1 (alone)``."""
    if board.empty or board["condition"].nunique() < 2:
        return None
    settings = board["settings"] if "settings" in board else board["overrides"]
    key = (board["estimator"] + " " + settings).str.strip()
    ranked = board.assign(config=key, of=board.groupby("condition")["rank"].transform("count"))
    table = ranked.pivot_table(index="config", columns="condition", values="rank", aggfunc="min")
    size = ranked.groupby("condition")["of"].first()
    # A condition where one configuration was ranked alone is no contest: its "1/1" would count as a win.
    contested = table.loc[:, [c for c in table.columns if size[c] >= 2]]
    mean_rank = contested.mean(axis=1)
    n_conditions = contested.notna().sum(axis=1)
    cells = table.apply(lambda col: col.map(
        lambda r: "–" if pd.isna(r) else f"{int(r)}/{int(size[col.name])}" + ("" if size[col.name] >= 2 else " (alone)")))
    cells["mean_rank"], cells["n_conditions"] = mean_rank, n_conditions
    return cells.sort_values("mean_rank")


# Truth-free scores a user could select a configuration by on real data, and which way is better.
SELECTORS = {name: registry.METRICS[name].goal
             for name in ("rscore", "dr_mse", "qini", "autoc", "cal_score", "policy_value_model")}


def _tied(values: np.ndarray) -> np.ndarray:
    """Indices whose value equals the minimum (up to rounding): ties are reported, never broken by row order."""
    best = np.min(values)
    return np.flatnonzero(np.isclose(values, best, rtol=1e-12, atol=1e-12))


def selector_validation(board: pd.DataFrame, parents: pd.DataFrame, seeds: Optional[pd.DataFrame] = None,
                        oracle: str = "cate_rmse_test") -> pd.DataFrame:
    """How well each truth-free score picks configurations, judged by the truth (no other tool can).

    Within each data condition: the configuration(s) each score would pick (all of them when several have
    the same score: ``n_tied``), their oracle value (mean ``oracle`` across seeds), the regret against the
    oracle-best configuration (averaged over tied picks), and the Spearman correlation between the score
    and the oracle across configurations (signed so that +1 means the score orders them as the truth does).
    With the seed runs (``seeds``), the oracle and each score are averaged on the seeds all the condition's
    configurations have them for, as the board compares them (scores exist only on the first
    ``analyses.seeds`` seeds); otherwise on each run's own means. ``oracle_seeds``/``selector_seeds`` say which.
    """
    from scipy import stats

    rows = []
    latest = parents.set_index("run_id")
    ok = seeds[seeds["status"] == "FINISHED"] if seeds is not None and len(seeds) else pd.DataFrame()
    for _, group in board.groupby("condition_hash", sort=False):
        ids = group["parent_run_id"]
        truth, oracle_seeds = _condition_means(latest, ok, ids, oracle)
        if not np.isfinite(truth).any():
            continue
        oracle_loss = loss(oracle, truth)
        labels = (group["estimator"] + " " + group["overrides"]).str.strip().to_numpy()
        best = _tied(np.where(np.isfinite(oracle_loss), oracle_loss, np.inf))
        for score, way in SELECTORS.items():
            values, score_seeds = _condition_means(latest, ok, ids, score)
            ok_rows = np.isfinite(values) & np.isfinite(oracle_loss)
            if ok_rows.sum() < 2:
                continue
            score_loss = np.where(ok_rows, values if way == "lower" else -values, np.inf)
            picks = _tied(score_loss)
            ranks = stats.rankdata(np.where(ok_rows, oracle_loss, np.inf), method="min")
            rho, why = _spearman(score_loss[ok_rows], oracle_loss[ok_rows])
            if why.endswith("(needs 3)") and not ok_rows.all():  # say which configurations lack the score
                why += f"; without {score}: {', '.join(labels[~ok_rows])}"
            rows.append({"data": group["data"].iloc[0], "condition": group["condition"].iloc[0], "selector": score,
                         "direction": way, "n_configs": int(ok_rows.sum()), "picked": " | ".join(labels[picks]),
                         "n_tied": len(picks), f"picked_{oracle}": float(np.mean(truth[picks])),
                         "oracle_best": " | ".join(labels[best]), f"best_{oracle}": float(truth[best[0]]),
                         "regret": float(np.mean(oracle_loss[picks]) - oracle_loss[best[0]]),
                         "picked_oracle_rank": float(np.mean(ranks[picks])),
                         "spearman_with_oracle": float(rho), "spearman_note": why,
                         "oracle_seeds": oracle_seeds, "selector_seeds": score_seeds})
    return pd.DataFrame(rows)


def shared_seed_values(ok: pd.DataFrame, ids, column: str) -> tuple[pd.DataFrame, list[int]]:
    """The finite values of a per-seed ``column`` (one column per run in ``ids``, seeds down, NaN elsewhere) and
    the seeds on which every run that has any value has one: what a condition's runs are compared on. A run
    without the value on any seed (every seed failed, a scorer that failed) does not empty that set."""
    wide = _per_seed(ok, column) if len(ok) else pd.DataFrame()
    have = wide.reindex(columns=list(ids)).apply(pd.to_numeric, errors="coerce")
    finite = np.isfinite(have.to_numpy(float))
    present = finite.any(axis=0)
    common = [int(s) for s in have.index[finite[:, present].all(axis=1)]] if present.any() else []
    return have.where(finite), common


def _condition_means(latest: pd.DataFrame, ok: pd.DataFrame, ids, metric: str) -> tuple[np.ndarray, str]:
    """Each run's mean of ``metric`` on the seeds all ``ids`` have it for, and those seeds; without per-seed
    values (or a shared seed) the runs' logged means, each on its own seeds (named from the runs' tags)."""
    have, common = shared_seed_values(ok, ids, f"metrics.{metric}")
    if common:  # a run without any value has the mean NaN: left out, as before any shared seed is chosen
        return have.loc[common].mean().to_numpy(float), seed_list(common)
    col = f"metrics.{metric}_mean"
    means = latest.loc[ids, col].astype(float).to_numpy() if col in latest else np.full(len(ids), np.nan)
    own = _tag(latest, ids, "analyses_seeds" if metric in SELECTORS else "seeds")
    if metric in SELECTORS:
        own = own.where(own != "", _tag(latest, ids, "seeds"))
    return means, "own seeds " + " | ".join(sorted(set(own) - {""}) or ["?"])


def _spearman(a: np.ndarray, b: np.ndarray) -> tuple[float, str]:
    """Spearman correlation of two score vectors and '' — or NaN and why it is undefined (a constant input
    has no ranking to agree with; scipy would only warn)."""
    from scipy import stats

    if len(a) < 3:
        return math.nan, f"undefined: {len(a)} configurations (needs 3)"
    for name, v in (("selector", a), ("oracle", b)):
        if np.allclose(v, v[0], rtol=1e-12, atol=1e-12):
            return math.nan, f"undefined: the {name} is the same for every configuration"
    return float(stats.spearmanr(a, b).statistic), ""


def _tag(latest: pd.DataFrame, ids, name: str) -> pd.Series:
    """A tag of the given runs as strings ('' where unset)."""
    col = f"tags.{name}"
    return latest.loc[ids, col].fillna("").astype(str) if col in latest else pd.Series("", index=ids)
