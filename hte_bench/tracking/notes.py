"""Markdown descriptions (the UI's 'Description' box, tag ``mlflow.note.content``) and the curated metric set.

Pure text from dicts and tables, no MLflow: the tracker writes what these functions return.
"""
from __future__ import annotations

import math
from typing import Iterable, Optional

from hte_bench.evaluation import registry

NOTE = "mlflow.note.content"
MAX_CONFIG_METRICS = 40  # a configuration run's metric count: what the UI's chart view can show usefully

EXPERIMENT = """\
**hte-bench**: heterogeneous-treatment-effect estimators fitted on data generators whose true effect is known,
across seeds, and scored against the truth.

- **Configuration runs** (`hte_bench.kind = config`, named `<data>/<estimator>/<hash>`): one estimator with its
  settings on one data condition. Metrics: the headline ones only, as `<metric>_mean` with
  `<metric>_ci_lower/_ci_upper` (t-interval of the mean across the seeds it summarises: its `seeds` tag); every other aggregate is
  in the artifact `aggregate.json`, every per-seed value in the table `per_seed.json` (Evaluation/table view)
  and `per_seed.csv`. The Description of each run says what was fitted on what.
- **Seed runs** (children, named `<estimator>/seed=N`): every per-seed metric, predictions and plots.
- **Sweep runs** (`sweep/<time>`): group the configuration runs of one `hte-bench -m` sweep; their Description
  lists the best per data condition with links.
- **Leaderboard / promotion runs**: `hte-bench-leaderboard` and `hte-bench-promote` reports.

Lower √PEHE (`cate_rmse_test`) is better; coverage aims at 1 − alpha.
"""


def logged_metrics(summary: dict, keep: Iterable[str] = ()) -> dict[str, float]:
    """The configuration-run metrics: headline aggregates with their interval, seed counts, ``keep``.

    ``keep`` names aggregates readers need (a sweep's optimized metric, the selector scores), logged
    whether or not they are headline, as are the user's registered metrics (``metric_modules``) with their
    interval. The headline ones fill up to ``MAX_CONFIG_METRICS`` beside them; the rest stays in aggregate.json.
    """
    wanted: list[str] = []
    for name in registry.headline():
        base = name if registry.METRICS[name].level == "config" else f"{name}_mean"
        wanted += [base, f"{name}_ci_lower", f"{name}_ci_upper"]
    own = [f"{spec.name}_{stat}" for spec in registry.computed() for stat in ("mean", "ci_lower", "ci_upper")]
    # The seed counts always: a sweep ranks a configuration that lost seeds last, and reads that from them.
    counts = list(registry.names(group="run", level="config"))
    required = {k: float(summary[k]) for k in dict.fromkeys([*counts, *keep, *own]) if summary.get(k) is not None}
    room = max(MAX_CONFIG_METRICS - len(required), 0)  # a registry edit made too many headline: the first ones
    headline = [k for k in dict.fromkeys(wanted) if summary.get(k) is not None and k not in required][:room]
    return {**{k: float(summary[k]) for k in headline}, **required}


def fmt(value, digits: int = 3) -> str:
    """A number as people read it; '–' for missing or not finite."""
    try:
        v = float(value)
    except (TypeError, ValueError):
        return "–"
    return f"{v:.{digits}g}" if math.isfinite(v) else "–"


def interval(lo, hi) -> str:
    """``[lo, hi]``, or '–' without a lower bound (one seed, no inference)."""
    return f"[{fmt(lo)}, {fmt(hi)}]" if fmt(lo) != "–" else "–"


def marked_interval(metric: str, lo, hi) -> str:
    """``[lo, hi]``, marked † (registry.OUTSIDE_MARK) when a bound leaves the values ``metric`` can take."""
    span = interval(lo, hi)
    return span + (registry.OUTSIDE_MARK if span != "–" and registry.leaves_range(metric, lo, hi) else "")


def _text(value) -> str:
    """A table cell's text ('' for a missing one)."""
    return value if isinstance(value, str) else ""  # a CSV's empty cell reads back as NaN


def _cell(value) -> str:
    """A CSV cell as text: a lone seed reads back as a number, a missing one as NaN."""
    return "" if value is None or (isinstance(value, float) and math.isnan(value)) else str(value)


def run_link(experiment_id: str, run_id: str, label: str) -> str:
    """A markdown link the MLflow UI follows to a run's page."""
    return f"[{label}](#/experiments/{experiment_id}/runs/{run_id})"


def seed_note(experiment_id: str, parent_id: str, seed: int, status: str, tags: dict, metrics: dict,
              alpha: float = 0.05) -> str:
    """A seed run's description: which seed of which configuration and data condition, and its figures
    against the truth with the intervals' level and kind (or why it failed)."""
    parent = run_link(experiment_id, parent_id, f"{tags.get('estimator', '?')} {tags.get('config_hash', '')[:6]}")
    lines = [f"Seed **{seed}** of the configuration run {parent} on the data condition "
             f"`{tags.get('condition') or tags.get('data', '?')}`.", ""]
    if status != "FINISHED":
        return "\n".join([*lines, f"**{status}:** {str(tags.get('error', '?'))[:500]} (the full traceback: `traceback.txt`)."])
    if "cate_rmse_test" in metrics:
        kind, ate_kind = tags.get("interval_kind", "none"), tags.get("ate_interval_kind", "none")
        level = registry.level_text(alpha)
        lo, hi = metrics.get("ate_ci_lower"), metrics.get("ate_ci_upper")
        covered = {1: ": covers the truth", 0: ": misses the truth"}.get(metrics.get("ate_covered"), "")
        ate_span = (f" ({level} interval [{fmt(lo, 4)}, {fmt(hi, 4)}], kind {ate_kind}{covered})"
                    if ate_kind != "none" and fmt(lo) != "–" else "")
        lines.append(f"√PEHE on the test sample {fmt(metrics['cate_rmse_test'], 4)}; ATE {fmt(metrics.get('ate_hat'), 4)}"
                     f"{ate_span} against the true {fmt(metrics.get('ate_true'), 4)}; per-unit coverage of the test "
                     f"sample by {level} intervals "
                     f"{fmt(metrics.get('cate_coverage_test'), 3) if kind != 'none' else 'n/a'} (interval kind "
                     f"{kind}). These are this seed's alone; the configuration run gives means with intervals.")
    else:
        lines.append("No known truth: only the truth-free metrics (Metrics table).")
    lines += ["", "Per-unit effects, intervals and the truth: `predictions.parquet`."]
    return "\n".join(lines)


def headline_table(summary: dict, alpha: float, note: bool = True) -> str:
    """Markdown table of the headline aggregates: mean, interval (with its kind), goal, meaning; with ``note``,
    the † note below it when an interval leaves its metric's range."""
    level = f"{100 * (1 - alpha):g} %"
    rows = ["| metric | mean | interval | better | meaning |", "|---|---|---|---|---|"]
    outside = False
    for name in registry.headline():
        s = registry.METRICS[name]
        if s.level == "config":
            mid = summary.get(name)
            kind = f"Wilson {level}" if f"{name}_ci_lower" in summary else "across seeds"
        else:
            mid = summary.get(f"{name}_mean")
            kind = f"t {level} across seeds"
        if mid is None:
            continue
        lo, hi = summary.get(f"{name}_ci_lower"), summary.get(f"{name}_ci_upper")
        span = f"{marked_interval(name, lo, hi)} ({kind})" if fmt(lo) != "–" else "–"
        outside |= registry.OUTSIDE_MARK in span
        rows.append(f"| `{name}` | {fmt(mid)} | {span} | {s.direction()} | {s.description} |")
    return "\n".join(rows) + (f"\n\n{registry.OUTSIDE_NOTE}" if outside and note else "")


def config_note(what: dict, summary: dict, alpha: float, failed: list[int]) -> str:
    """The configuration run's description: what was fitted on what, seeds, interval kinds, headline figures.

    ``what`` holds estimator, condition, seeds (finished), interval_kind, ate_interval_kind, code_version.
    """
    ok = int(summary.get("n_seeds_ok", 0) or 0)
    settings = f" with `{what['settings']}`" if what.get("settings") else ""
    first = _first_figures(summary, what.get("analyses_seeds"), alpha, what.get("interval_kind") or "")
    lines = [f"**{what['estimator']}**{settings} fitted on **{what['condition']}**; these figures summarise "
             f"{ok} seed{'s' * (ok != 1)} ({what.get('seeds') or 'none'}: those that finished of the seeds the latest "
             "command asked for; seed runs of other commands stay under it, unused here)"
             + (f", failed: {', '.join(map(str, failed))} (see their seed runs)" if failed else "") + ".",
             "", first,
             f"- per-unit CATE intervals: **{what.get('interval_kind') or 'unknown'}**; "
             f"ATE interval: **{what.get('ate_interval_kind') or 'unknown'}** (level {100 * (1 - alpha):g} %)",
             f"- code {what.get('code_version', '?')}; " + (
                 "each seed is another train/test split of the same rows of the file and its own fit (seed N: split "
                 "and models with random_state N), so seeds are not independent samples and intervals across them "
                 "are optimistic" if what.get("resplits") else
                 "each seed draws its own sample and fit (seed N: data and models with random_state N)"), ""]
    if what.get("kind", "config") != "config":  # promotion's confirmation on fresh seeds
        lines.insert(0, f"**{what['kind'].capitalize()} run** of a promoted configuration, on fresh seeds: "
                        "never ranked by the leaderboard nor resumed into.\n")
    if what.get("analyses_seeds"):
        which = ("on no seed (`analyses.seeds=0`)" if what["analyses_seeds"] == "none"
                 else f"seeds {what['analyses_seeds']} only (`analyses.seeds`), so their means are over those seeds")
        lines.insert(-1, "- insights, truth-free scores (R-score, DR MSE, DRTester, policy values), subgroup "
                         f"tables and interpreter trees: {which}")
    if not ok:
        lines.append("Every seed failed: see the `error` tag and `traceback.txt` of each seed run.")
        return "\n".join(lines)
    if "ate_true_mean" not in summary:
        lines.append("No true tau for this data: only truth-free metrics are available.\n")
    lines.append(headline_table(summary, alpha, note=registry.OUTSIDE_NOTE not in first))  # said once
    widths = ", ".join(f"`{k}` {fmt(summary[k])}" for k in ("ate_ci_width_mean", "cate_ci_width_test_mean")
                       if k in summary)
    if widths:
        lines.append(f"\nMean interval widths: {widths}.")
    lines.append("\nEvery aggregate: artifact `aggregate.json`; every seed: table `per_seed.json` "
                 "(Evaluation tab / artifact view) and `per_seed.csv`.")
    return "\n".join(lines)


def _first_figures(summary: dict, rscore_seeds: str | None = None, alpha: float = 0.05,
                   interval_kind: str = "") -> str:
    """One line of the main figures with their intervals: the UI shows only a description's first lines."""
    from hte_bench.compare.study import PER_UNIT_VALID

    parts, outside = [], False
    rscore = f"R-score (seeds {rscore_seeds})" if rscore_seeds else "R-score"
    kinds = {k.strip() for k in interval_kind.split(",") if k.strip()}
    for name, label in (("cate_rmse_test", "√PEHE test"), ("ate_bias", "ATE bias"),
                        ("cate_coverage_test", "CATE coverage test"), ("rscore", rscore)):
        if f"{name}_mean" in summary and fmt(summary[f"{name}_mean"]) != "–":
            if name == "cate_coverage_test" and kinds and not kinds <= set(PER_UNIT_VALID):
                # A broadcast ATE interval (or none) claims nothing per unit: its "coverage" is no evidence.
                parts.append(f"{label} n/a: {interval_kind} intervals ({fmt(summary[f'{name}_mean'])})")
                continue
            lo, hi = summary.get(f"{name}_ci_lower"), summary.get(f"{name}_ci_upper")
            mark = registry.OUTSIDE_MARK if registry.leaves_range(name, lo, hi) else ""
            outside = outside or bool(mark)
            span = interval(lo, hi)
            parts.append(f"{label} **{fmt(summary[f'{name}_mean'])}**" + (f" {span}{mark}" if span != "–" else ""))
    level = registry.level_text(alpha)
    if fmt(summary.get("ate_coverage_rate")) != "–":
        span = interval(summary.get("ate_coverage_rate_ci_lower"), summary.get("ate_coverage_rate_ci_upper"))
        parts.append(f"ATE coverage **{fmt(summary['ate_coverage_rate'])}** {span} ({level} Wilson)")
    if not parts:
        return ""
    return ("- " + " · ".join(parts) + f"; means with {level} t-intervals across seeds"
            + (f" ({registry.OUTSIDE_NOTE})" if outside else ""))


def _seeds_of_metric(run, base: str) -> str:
    """The seeds behind a configuration run's mean of ``base``: its analysis seeds (tag ``analyses_seeds``) for
    an analysis metric, else its seeds."""
    subset = run.data.tags.get("analyses_seeds")
    return subset if subset and registry.on_analysis_seeds(base) else run.data.tags.get("seeds", "")


def interval_keys(metric: str) -> tuple:
    """The names of the interval bounds logged beside an aggregate: a mean's t-interval, or a share of seeds'
    Wilson interval (ate_coverage_rate); () for anything else."""
    base, stat = registry.split_name(metric)
    if not registry.is_registered(base):
        return ()
    if stat == "mean" or (stat is None and registry.summarised_as(base) == "share"):
        return f"{base}_ci_lower", f"{base}_ci_upper"
    return ()


def sweep_rows(parents: list, metric: str, top: int = 1000) -> list[dict]:
    """Per data condition, the ``top`` configuration runs of a sweep by ``metric`` (its registry loss at
    each run's alpha), best first; ranks never compare across conditions."""
    rows = []
    base, bounds = registry.split_name(metric)[0], interval_keys(metric)
    for p in parents:
        value = p.data.metrics.get(metric, math.nan)
        lo, hi = (p.data.metrics.get(k) for k in bounds) if bounds else (None, None)
        alpha = float(p.data.params.get("alpha", 0.05))
        score = registry.aggregate_loss(metric, value, alpha) if math.isfinite(value) else math.inf
        rows.append({"condition": p.data.tags.get("condition") or p.data.tags.get("data", "?"),
                     "estimator": p.data.tags.get("estimator", "?"), "run_name": p.info.run_name,
                     "run_id": p.info.run_id, "value": value, "lo": lo, "hi": hi, "loss": score, "alpha": alpha,
                     "seeds": int(p.data.metrics.get("n_seeds_ok", 0) or 0),
                     "seed_list": _seeds_of_metric(p, base),
                     "failed": int(p.data.metrics.get("n_seeds_failed", 0) or 0)})
    from hte_bench.compare.study import sweep_order

    settings = run_settings(parents)
    rows.sort(key=lambda r: (r["condition"], sweep_order(r["loss"], r["failed"])))
    out, seen, last = [], {}, {}
    for r in rows:
        seen[r["condition"]] = seen.get(r["condition"], 0) + 1
        # Equal values share a rank (1, 2, 2, 4), as on the leaderboard.
        prev = last.get(r["condition"])
        key = sweep_order(r["loss"], r["failed"])
        rank = prev[1] if prev is not None and prev[0] == key else seen[r["condition"]]
        last[r["condition"]] = (key, rank)
        if seen[r["condition"]] <= top:
            # Without a value (every seed failed) a configuration is listed, not ranked.
            out.append({**r, "settings": settings.get(r["run_id"], ""),
                        "rank": rank if math.isfinite(r["loss"]) else "–"})
    return out


def tied_with(rows: list[dict], run_id: str) -> list[str]:
    """The configurations of ``sweep_rows`` that share the rank of ``run_id``'s row in its data condition."""
    mine = next((r for r in rows if r["run_id"] == run_id), {})
    return [r["run_name"] for r in rows if r["run_id"] != run_id and r["rank"] == mine.get("rank")
            and r["condition"] == mine.get("condition")]


def run_settings(parents: list) -> dict[str, str]:
    """Run id → the overrides that tell a sweep's configuration runs apart within their data condition (a grid's
    min_samples_leaf=10 max_depth=5, a search's outcome_model=lasso), as the leaderboard's overrides column."""
    import pandas as pd

    from hte_bench.compare.leaderboard import distinguishing_overrides

    frame = pd.DataFrame([{"run_id": p.info.run_id, **{f"tags.{k}": v for k, v in p.data.tags.items()},
                           **{f"params.{k}": v for k, v in p.data.params.items()}} for p in parents])
    if frame.empty or "tags.estimator" not in frame:
        return {}
    return dict(zip(frame["run_id"], distinguishing_overrides(frame)))


def sweep_note(experiment_id: str, rows: list[dict], metric: str, how: str, n_configs: int,
               best: Optional[dict], top: int = 5) -> str:
    """The sweep run's description: the best run linked, then the ``top`` per data condition with links."""
    rows = [r for r in rows if r["rank"] == "–" or r["rank"] <= top]
    lines = [f"Sweep over **{n_configs}** configuration runs, ranked by `{metric}` ({how}).", ""]
    if best:
        row = next((r for r in rows if r["run_id"] == best["parent_run_id"]), {})
        span = marked_interval(metric, row.get("lo"), row.get("hi"))
        on = (f" {span} on seeds {row['seed_list']}" if span != "–" else f" on seeds {row['seed_list']}") \
            if row.get("seed_list") else ""
        tied = tied_with(rows, best["parent_run_id"])
        lines.append(f"**Best:** {run_link(experiment_id, best['parent_run_id'], best['label'])} "
                     f"`{metric}` = {fmt(best['value'], 4)}{on}"
                     + (f" (tied with {', '.join(tied)}: equal values, the tags name one of them)" if tied else "")
                     + "\n")
    if not rows:
        lines.append("No configuration produced this metric (see the runs' errors).")
        return "\n".join(lines)
    named = any(r.get("settings") for r in rows)  # a grid or search: what tells its configurations apart
    lines += ["| condition | rank | configuration |" + (" settings |" if named else "")
              + " value | interval | seeds | ok / failed |", "|---|---|---|" + ("---|" if named else "") + "---|---|---|---|"]
    outside = False
    for r in rows:
        span = marked_interval(metric, r["lo"], r["hi"])
        outside |= span.endswith(registry.OUTSIDE_MARK)
        lines.append(f"| {r['condition']} | {r['rank']} | {run_link(experiment_id, r['run_id'], r['run_name'])} | "
                     + (f"{_text(r.get('settings'))} | " if named else "")
                     + f"{fmt(r['value'], 4)} | {span} | {r.get('seed_list') or '?'} | {r['seeds']} / {r['failed']} |")
    levels = registry.levels_text(r.get("alpha", 0.05) for r in rows)
    spans = {"share": f"{levels} Wilson interval of the share of each configuration's own seeds (column seeds)",
             "rms": "none (a root mean square over each configuration's own seeds, column seeds)"}.get(
        registry.summarised_as(metric),
        f"{levels} t-interval of the mean across each configuration's own seeds (column seeds)")
    dash = "" if registry.summarised_as(metric) == "rms" else ", at 1 − the runs' alpha; – is one seed"
    lines.append(f"\nIntervals: {spans}{dash}. Ranks compare this sweep's "
                 "configurations within one data condition only; hte-bench-leaderboard compares every "
                 "configuration of the experiment on their common seeds with paired tests. Full table: "
                 "`leaderboard.csv` when truth exists.")
    if outside:
        lines.append(f"\n{registry.OUTSIDE_NOTE}")
    return "\n".join(lines)


def board_note(experiment_id: str, board, title: str, top: int = 3, metric: Optional[str] = None,
               how: str = "") -> str:
    """A leaderboard table's description: the top rows per data condition, with links to their runs, each with
    the ranking metric's mean and interval on the seeds it was compared on (the score it is ranked by is a
    loss: an R-score's is its negative); ``how``: the sentence naming the paired test, correction and level."""
    share = metric is not None and registry.summarised_as(metric) == "share"
    lines = [f"**{title}** — {len(board)} configurations; ranks within each data condition, "
             + ("each configuration on its own seeds (a rate across seeds: no paired test)." if share else
                "paired tests on the condition's common seeds against the best."), ""]
    if "parent_run_id" not in board:  # not a configuration board (nothing to link)
        return lines[0]
    where = "condition" if "condition" in board else "data"
    if (board.groupby(where).size() > top).any():
        lines[0] += f" The first {top} of each condition below; every configuration: `leaderboard.csv`."
    seeds = "compared_on_seeds" in board
    mean = next((c for c in (f"{metric}_mean", metric) if metric and c in board), None)
    value = f"{metric} mean [interval]" if mean == f"{metric}_mean" else (metric if mean else "score")
    lines += [f"| {where} | rank | estimator | overrides | vs best | {value} |" + (" seeds |" if seeds else ""),
              "|---|---|---|---|---|---|" + ("---|" if seeds else "")]
    outside = False
    for _, r in board.sort_values([where, "rank"]).groupby(where).head(top).iterrows():
        label = run_link(experiment_id, r["parent_run_id"], str(r["estimator"]))
        shown = fmt(r.get(mean or "score"), 4)
        if mean and f"{metric}_ci_lower" in board and fmt(r.get(f"{metric}_ci_lower")) != "–":
            shown += f" {marked_interval(metric, r.get(f'{metric}_ci_lower'), r.get(f'{metric}_ci_upper'))}"
            outside |= shown.endswith(registry.OUTSIDE_MARK)
        try:
            rank = str(int(r["rank"]))  # read back from a CSV as 1.0
        except (TypeError, ValueError):  # NaN, or pandas' NA: not ranked
            rank = "–"
        p_adj = r.get("p_vs_best_adj")
        versus = _text(r.get("vs_best")) + (f" (p={p_adj:.2g})" if isinstance(p_adj, float) and math.isfinite(p_adj)
                                            else "")
        lines.append(f"| {r[where]} | {rank} | {label} | {_text(r.get('overrides'))} | {versus} | {shown} |"
                     + (f" {_cell(r.get('compared_on_seeds'))} |" if seeds else ""))
    if mean:
        levels = registry.levels_text(board.get("alpha", [0.05]))
        kind = registry.interval_words(metric, levels)
        lines.append(f"\n{value}: on the seeds named beside it, with its {kind} (over those seeds). " + (
            "Ranked by its distance to the target." if share else
            "Ranked by its mean per-seed loss: the metric itself where lower is better, its negative where higher "
            "is, its distance to the target for coverage and calibration."))
    else:
        lines.append("\nScore: the mean per-seed loss of the ranking metric (lower is better; distance to the "
                     "target for coverage and calibration).")
    if how and not share:
        lines.append(f"\n{how}")
    if outside:
        lines.append(f"\n{registry.OUTSIDE_NOTE}")
    lines.append("\nFull table: the `leaderboard.json` table (artifact view) and `leaderboard.csv`.")
    return "\n".join(lines)


def version_note(name: str, version_tags: dict, experiment_id: str, run_id: str) -> str:
    """A registered model version's description: what it is, where it came from, its figures."""
    import json

    summary = {}
    try:
        summary = json.loads(version_tags.get("metric_summary") or "{}")
    except ValueError:
        pass
    lines = [f"**{summary.get('estimator', '?')}** {summary.get('overrides', '') or ''} promoted as `{name}` "
             f"by `{version_tags.get('metric', '?')}` on **{summary.get('condition') or summary.get('data', '?')}**; "
             f"refit on {version_tags.get('refit_on', '?')}.",
             f"Promotion run: {run_link(experiment_id, run_id, run_id)}; source configuration runs: "
             + ", ".join(run_link(experiment_id, r, r[:8]) for r in
                         str(version_tags.get("source_parent_run_ids", "")).split(",") if r), ""]
    metric = version_tags.get("metric", "?")
    if version_tags.get("board_verdict"):  # how clearly it won: ties, 'mixed' rivals, adjusted p-values
        lines += [f"On the board it was chosen from: {version_tags['board_verdict']}.", ""]
    if version_tags.get(f"selection_{metric}"):  # the figure to report is the confirmation's, on fresh seeds
        from hte_bench.compare.leaderboard import readable_seeds

        def seeds(key: str, missing: str) -> str:
            return readable_seeds(version_tags.get(key)) or missing

        lines += [f"| `{metric}` | seeds | figure |", "|---|---|---|",
                  f"| confirmation ({version_tags.get('confirmation_caveat') or 'report this one'}) | "
                  f"{seeds('confirmation_seeds', 'none')} | "
                  f"{version_tags.get(f'confirmation_{metric}', 'skipped (--confirm-seeds 0)')} |",
                  f"| selection (optimistic: chosen on these seeds) | {seeds('selection_seeds', '?')} | "
                  f"{version_tags[f'selection_{metric}']} |", ""]
    lines += ["Selection figures (the board's row it was picked from):", "", "| figure | value |", "|---|---|"]
    lines += [f"| `{k}` | {fmt(v, 4) if isinstance(v, (int, float)) else v} |" for k, v in summary.items()
              if k not in ("data", "estimator", "overrides", "settings", "parent_run_id")]
    from hte_bench.estimators.base import INTERVAL_KINDS

    kind = version_tags.get("interval_kind", "unknown")
    level = version_tags.get("interval_level", "?")
    lines.append("\nPredict: `mlflow.pyfunc.load_model('models:/" + name + "@champion').predict(X)` returns "
                 f"tau_hat with tau_lower and tau_upper: {level} intervals of kind **{kind}** "
                 f"({INTERVAL_KINDS.get(kind, 'kind not recorded')}); NaN bounds without inference. The model's "
                 "metadata (MLmodel) holds the same.")
    return "\n".join(lines)
