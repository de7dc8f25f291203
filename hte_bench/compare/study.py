"""Data conditions and studies across them: which runs share data, a metric against a data knob, fresh seeds.

A **data condition** is the generator plus every resolved data knob. Configurations are ranked, tested and
judged only against others of their own condition; a study puts conditions side by side, one line per
configuration, never pooled. No MLflow here.
"""
from __future__ import annotations

import math
from typing import Optional

import numpy as np
import pandas as pd

from hte_bench.config import seed_list
from hte_bench.data.conditions import condition_of
from hte_bench.errors import ConfigError

# What an interval of each kind lets a coverage number say (kinds are tagged on seed runs by the runner).
PER_UNIT_VALID = ("per_unit", "bootstrap")   # per-unit coverage is evidence about per-unit intervals
KIND_NOTES = {
    "broadcast_ate": "ATE interval repeated: not a per-unit interval",
    "not_honest": "forest without honesty: not a valid per-unit interval",
    "conservative_bound": "conservative bound: coverage above 1-α is expected, not a virtue",
    "none": "no interval",
    "unknown": "interval kind not recorded (older run)",
}


def with_conditions(parents: pd.DataFrame) -> pd.DataFrame:
    """Configuration runs with ``tags.condition_hash``/``tags.condition`` filled for runs logged before those
    tags existed (rebuilt from their ``params.data.*``); a label shared by two conditions gets its hash."""
    import yaml

    out = parents.reset_index(drop=True)
    for col in ("tags.condition_hash", "tags.condition"):
        if col not in out:
            out[col] = None
    data_cols = [c for c in out.columns if c.startswith("params.data.")]
    for idx in out.index[out["tags.condition_hash"].isna()]:
        # Params are str(value): "None" is Python's null, not YAML's.
        knobs = {c[len("params.data."):]: None if out.at[idx, c] == "None" else yaml.safe_load(out.at[idx, c])
                 for c in data_cols if isinstance(out.at[idx, c], str)}
        out.at[idx, "tags.condition_hash"], out.at[idx, "tags.condition"] = condition_of(knobs, out.at[idx, "tags.data"])
    shared = out.groupby("tags.condition")["tags.condition_hash"].transform("nunique") > 1
    out.loc[shared, "tags.condition"] = out.loc[shared, "tags.condition"] + " [" + \
        out.loc[shared, "tags.condition_hash"].str[:6] + "]"
    return out


def fresh_seeds(used, n: int) -> list[int]:
    """``n`` seeds above every seed already used in the experiment (by any ranking or confirmation)."""
    start = max((int(s) for s in used), default=-1) + 1
    return list(range(start, start + n))


def t_interval(values, level: float = 0.95) -> tuple[float, float, float, int]:
    """(mean, lower, upper, n) of the finite values: Student-t interval of the mean across seeds."""
    from hte_bench.evaluation.aggregate import mean_interval

    v = np.asarray(values, dtype=float)
    v = v[np.isfinite(v)]
    mean, _, lo, hi = mean_interval(v, 1.0 - level)
    return mean, lo, hi, int(v.size)


def knobs_varying(parents: pd.DataFrame) -> list[str]:
    """Data knobs (``data.<knob>``) whose value differs among configuration runs of the same generator."""
    def same_number(value) -> str:  # "2" and "2.0" (the same knob logged as given) are one value
        try:
            return repr(float(value))
        except (TypeError, ValueError):
            return str(value)

    cols = [c for c in parents.columns if c.startswith("params.data.") and c != "params.data._target_"]
    return sorted({c[len("params."):] for c in cols for _, g in parents.groupby("tags.data")
                   if g[c].map(same_number).nunique(dropna=False) > 1})


def check_study(parents: pd.DataFrame, metric: str, by: str) -> None:
    """One-line ConfigError unless ``by`` is a data knob of these runs and ``metric`` exists per seed; cheap,
    so the command line checks it before printing anything."""
    import difflib

    from hte_bench.evaluation import registry

    if registry.spec(metric).level != "seed":
        raise ConfigError(f"--by needs a per-seed metric; {metric} exists only across seeds "
                          f"(try ate_bias or cate_rmse_test)")
    varying = knobs_varying(parents)
    if by in varying:
        return
    if by.startswith("data.") and f"params.{by}" in parents:  # a knob of the runs, at one value throughout
        values = sorted({str(v) for v in parents[f"params.{by}"].dropna()})
        raise ConfigError(f"--by={by} does not vary among these runs (every one has {by}={', '.join(values)}), so "
                          f"there is nothing to plot against it; knobs that vary: {', '.join(varying) or '(none)'}")
    knobs = sorted(c[len("params."):] for c in parents.columns
                   if c.startswith("params.data.") and c != "params.data._target_")
    close = difflib.get_close_matches(by, varying or knobs, n=1) or difflib.get_close_matches(by, knobs, n=1)
    hint = f" (did you mean {close[0]}?)" if close else ""
    raise ConfigError(f"--by={by} is not a data knob of these runs{hint}; knobs that vary: "
                      f"{', '.join(varying) or '(none: every run has the same data)'}")


def study_table(parents: pd.DataFrame, seeds: pd.DataFrame, metric: str, by: str,
                level: float = 0.95) -> pd.DataFrame:
    """``metric`` against the data knob ``by``: one row per (generator, configuration, value of ``by``).

    The configuration is the estimator with its non-data overrides plus any other data knob that varies
    (each line of the study stays on one setting of everything else). Cells: mean over seeds with a
    Student-t interval at ``level`` and the number of seeds. The cells of one data condition stand on the
    seeds all its configurations finished (as the board compares them), so a column compares like with
    like; a condition whose configurations share no seed keeps each one's own (the cell names its seeds).
    """
    from hte_bench.compare.leaderboard import distinguishing_overrides, latest_per_config, shared_seed_values

    check_study(parents, metric, by)
    parents = latest_per_config(with_conditions(parents))
    other = [k for k in knobs_varying(parents) if k != by]
    overrides = distinguishing_overrides(parents, group="tags.data")
    ok = seeds[seeds["status"] == "FINISHED"] if len(seeds) else seeds
    values, common = {}, {}  # run id -> the metric's finite values by seed; condition -> its shared seeds
    for chash, group in parents.groupby("tags.condition_hash"):
        have, common[chash] = shared_seed_values(ok, group["run_id"], f"metrics.{metric}")
        values.update({r: have[r].dropna() for r in group["run_id"]})
    rows = []
    for idx, p in parents.iterrows():
        v, shared = values[p["run_id"]], common[p["tags.condition_hash"]]
        ran = seed_list(v.index) if shared and set(v.index) - set(shared) else ""  # its seeds the cell leaves out
        v = v.reindex(shared).dropna() if shared else v
        named = seed_list(v.index) if shared else f"own seeds {seed_list(v.index) or 'none'}"
        mean, lo, hi, n = t_interval(v, level)
        line = " ".join([p["tags.estimator"], overrides[idx], *[f"{k}={p.get('params.' + k)}" for k in other]])
        rows.append({"data": p["tags.data"], "config": " ".join(line.split()), by: _knob_text(p, by),
                     "condition": p["tags.condition"], "mean": mean, "ci_lower": lo, "ci_upper": hi,
                     "n_seeds": n, "seeds": named, "ran_seeds": ran, "parent_run_id": p["run_id"]})
    table = pd.DataFrame(rows)
    return table.sort_values(["data", "config", by], key=_natural).reset_index(drop=True)


def _knob_text(run: pd.Series, knob: str) -> str:
    """A run's data knob as its condition label spells it (typed like the generator's default: a logged ``2``
    is ``2.0`` for a float knob), so 2 and 2.0 share a column as they share a condition."""
    import yaml

    from hte_bench.data.conditions import typed_knobs

    text = run.get(f"params.{knob}")
    if not isinstance(text, str):
        return text
    name = knob[len("data."):]
    target = run.get("params.data._target_")
    value = typed_knobs({"_target_": target if isinstance(target, str) else "", name: yaml.safe_load(text)})[name]
    return str(value)


def _natural(col: pd.Series) -> pd.Series:
    """Sort knob values as numbers when they all are (n=500 before n=1000), else as text."""
    num = pd.to_numeric(col, errors="coerce")
    return num if num.notna().all() else col.astype(str)


def study_grid(table: pd.DataFrame, by: str, metric: Optional[str] = None) -> pd.DataFrame:
    """The study as people read it: configurations down, values of the knob across, ``mean [lo, hi] (n)``;
    with ``metric``, bounds outside its registered range are marked as on the boards."""
    from hte_bench.evaluation.registry import OUTSIDE_MARK, leaves_range

    def cell(r) -> str:
        if not math.isfinite(r["mean"]):
            return "–"
        ci = f" [{r['ci_lower']:.4g}, {r['ci_upper']:.4g}]" if math.isfinite(r["ci_lower"]) else ""
        if ci and metric and leaves_range(metric, r["ci_lower"], r["ci_upper"]):
            ci += OUTSIDE_MARK
        # A column's cells share their seeds; the cells of one row (different conditions) may not.
        ran = f"; ran {r['ran_seeds']}, those not common to the column not used" if r.get("ran_seeds") else ""
        return f"{r['mean']:.4g}{ci} (n={r['n_seeds']}: {r['seeds']}{ran})"

    shown = table.assign(cell=table.apply(cell, axis=1))
    grid = shown.pivot_table(index=["data", "config"], columns=by, values="cell", aggfunc="first")
    ordered = sorted(grid.columns, key=lambda v: (pd.to_numeric(pd.Series([v]), errors="coerce").iloc[0], str(v)))
    return grid[ordered].fillna("–")


def sweep_order(loss: float, n_failed) -> tuple:
    """How a sweep orders its configurations within a data condition: those that fitted every seed first, then
    by loss. A configuration's aggregate is over the seeds that finished, so one that fails on the hardest
    seeds would otherwise look better than one that fitted them all."""
    return (bool(n_failed) and n_failed == n_failed, loss)  # a NaN count (no metric logged) is no failure


def best_per_condition(parents: pd.DataFrame, metric: str) -> pd.DataFrame:
    """The best configuration run of each data condition by the aggregate ``metric`` (lower loss wins, as the
    metric registry says; ``sweep_order``: a configuration that lost seeds only if none fitted every seed);
    one row per condition, with the value and the run."""
    from hte_bench.evaluation import registry

    if parents.empty or f"metrics.{metric}" not in parents:
        return pd.DataFrame()
    parents = with_conditions(parents)
    # Each run at its own alpha (a coverage metric's target is 1 - alpha; alpha may be swept).
    alphas = parents["params.alpha"].astype(float).fillna(0.05) if "params.alpha" in parents else \
        pd.Series(0.05, parents.index)
    loss = pd.Series([registry.aggregate_loss(metric, v, a) for v, a in
                      zip(parents[f"metrics.{metric}"].astype(float), alphas)], index=parents.index)
    failed = parents["metrics.n_seeds_failed"] if "metrics.n_seeds_failed" in parents else pd.Series(0, parents.index)
    rows = []
    for chash, group in parents.assign(_loss=loss, _failed=failed).groupby("tags.condition_hash", sort=False):
        group = group[np.isfinite(group["_loss"])]
        if group.empty:
            continue
        best = group.loc[min(group.index, key=lambda i: sweep_order(group.at[i, "_loss"], group.at[i, "_failed"]))]
        rows.append({"condition": best["tags.condition"], "condition_hash": chash, "best_config": best["run_name"],
                     "config_hash": best.get("tags.config_hash"), metric: float(best[f"metrics.{metric}"]),
                     "parent_run_id": best["run_id"], "n_configs": len(group)})
    return pd.DataFrame(rows).sort_values("condition").reset_index(drop=True) if rows else pd.DataFrame()


def interval_kinds(seeds: pd.DataFrame, parent_ids, tag: str) -> dict[str, str]:
    """Per configuration run, the interval kind its seed runs recorded under ``tag`` (``unknown`` when the
    tag is absent: runs from before kinds were recorded; ``a/b`` when seeds disagree)."""
    out = {}
    for run_id in parent_ids:
        kinds: Optional[pd.Series] = None
        if len(seeds) and f"tags.{tag}" in seeds:
            kinds = seeds.loc[seeds["parent_id"] == run_id, f"tags.{tag}"].dropna()
        out[run_id] = "/".join(sorted(set(kinds))) if kinds is not None and len(kinds) else "unknown"
    return out


def runs_level(parents: pd.DataFrame) -> float:
    """The interval level of a study of these configuration runs: 1 − their alpha; 95% when they mix levels."""
    alphas = {float(a) for a in parents["params.alpha"].dropna()} if "params.alpha" in parents else set()
    return 1 - alphas.pop() if len(alphas) == 1 else 0.95


def save_study_figures(table: pd.DataFrame, knob: str, metric: str, out, level: float = 0.95) -> None:
    """The study figure of each generator in ``table`` (its intervals at ``level``) as
    ``plots/study_<data>_<knob, dots as underscores>.png`` under ``out`` (the sweep run's and the leaderboard
    run's alike), titled with the seeds behind its cells."""
    from pathlib import Path

    from hte_bench import plots as P
    from hte_bench.evaluation.registry import level_text

    folder = Path(out) / "plots"
    folder.mkdir(exist_ok=True)
    for data, part in table.groupby("data"):
        named = sorted({str(s) for s in part.get("seeds", pd.Series(dtype=str)).dropna() if str(s)})
        seeds = f"seeds {named[0]}" if len(named) == 1 else "each cell's seeds (study csv)"
        fig = P.study_plot(part, knob, metric, level=level,
                           title=f"{data}: {metric} by {knob}; mean and {level_text(1 - level)} t-interval over {seeds}")
        fig.savefig(folder / f"study_{data}_{knob.replace('.', '_')}.png", dpi=100, bbox_inches="tight")
