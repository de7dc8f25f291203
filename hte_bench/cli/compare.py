"""Command lines ``hte-bench-leaderboard`` and ``hte-bench-promote``: read an experiment, rank, promote."""
from __future__ import annotations

import argparse
import math
import sys
import tempfile
from pathlib import Path
from typing import Optional

from hte_bench.errors import ConfigError, interrupted
from hte_bench.evaluation import registry
from hte_bench.evaluation.registry import OUTSIDE_MARK, OUTSIDE_NOTE, leaves_range, on_analysis_seeds

# statsmodels' multipletests methods, by the names its documentation gives (written out: importing
# statsmodels to list them would slow every --help).
CORRECTIONS = ("holm", "bonferroni", "sidak", "holm-sidak", "simes-hochberg", "hommel", "fdr_bh", "fdr_by",
               "fdr_tsbh", "fdr_tsbky")


class _OneLineParser(argparse.ArgumentParser):
    """argparse whose refusals are one line (no usage block), with a did-you-mean for a mistyped choice."""

    def error(self, message: str):
        import difflib
        import re

        found = re.search(r"invalid choice: '([^']*)' \(choose from (.*)\)", message)
        if found:
            # Python < 3.12.7 quotes the choices ('holm', 'bonferroni'), later versions do not.
            typed, choices = found.group(1), [c.strip().strip("'") for c in found.group(2).split(",")]
            close = difflib.get_close_matches(typed.lower(), choices, n=1) or \
                [c for c in choices if typed.lower() and c.endswith(typed.lower())][:1]
            if close:
                message += f"; did you mean {close[0]}?"
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _common(prog: str, description: str) -> argparse.ArgumentParser:
    p = _OneLineParser(prog=prog, description=description)
    p.add_argument("--experiment", default="hte-bench", help="MLflow experiment name (default: hte-bench)")
    p.add_argument("--tracking-uri", default=None,
                   help="default: $MLFLOW_TRACKING_URI, else sqlite:///mlruns/mlflow.db here")
    p.add_argument("--metric", default="cate_rmse_test",
                   help="child metric to rank by (default: cate_rmse_test = √PEHE out of sample); "
                        "also ate_rmse, ate_coverage_rate")
    p.add_argument("--data", default=None, help="only these data generators (comma-separated)")
    p.add_argument("--condition", default=None,
                   help="only these data conditions: labels as printed (e.g. 'engagement noise=3.0') or "
                        "condition hashes, comma-separated")
    p.add_argument("--estimator", default=None, help="only these estimators (comma-separated)")
    p.add_argument("--tag", action="append", default=[], metavar="KEY=VALUE", help="only runs with this tag")
    p.add_argument("--run-name", default=None, metavar="PATTERN", help="only runs whose name is LIKE this (%% = any)")
    p.add_argument("--test", choices=["wilcoxon", "ttest"], default="wilcoxon",
                   help="paired test against the best on shared seeds (default: wilcoxon signed-rank)")
    p.add_argument("--level", type=float, default=0.05, help="significance level (default: 0.05)")
    p.add_argument("--correction", default="holm", choices=CORRECTIONS, metavar="METHOD",
                   help=f"statsmodels multipletests method: {', '.join(CORRECTIONS)} (default: holm)")
    p.add_argument("--metric-module", action="append", default=[], metavar="MODULE",
                   help="your module that registers metrics (as in the runs' metric_modules), to rank by them")
    return p


def _quote(value: str) -> str:
    return value.replace("'", "\\'")


def _filter_string(args) -> str:
    parts = []
    for item in args.tag:
        if "=" not in item:
            raise ConfigError(f"--tag {item!r} is not KEY=VALUE")
        key, value = item.split("=", 1)
        parts.append(f"tags.`{key}` = '{_quote(value)}'")
    if args.run_name:
        parts.append(f"attributes.run_name LIKE '{_quote(args.run_name)}'")
    return " and ".join(parts)


def _load_metric_modules(names: list[str]) -> None:
    """The user's metric modules, importable from the current folder as they are for hte-bench."""
    from hte_bench.cli import current_folder_importable
    from hte_bench.evaluation import registry

    if names:
        current_folder_importable()
    registry.load_modules(names)


def load(args):
    """The tracker and the (parents, seeds) run tables after the command line's filters."""
    import pandas as pd

    from hte_bench.compare.leaderboard import direction, parent_only
    from hte_bench.compare.study import with_conditions
    from hte_bench.tracking.store import sqlite_path
    from hte_bench.tracking import Tracker, resolve_uri

    if not 0 < args.level < 1:
        raise ConfigError(f"--level={args.level} is not allowed; it must be in (0, 1)")
    _load_metric_modules(args.metric_module)
    direction(args.metric)
    uri = resolve_uri(args.tracking_uri)
    store = sqlite_path(uri)
    if store is not None and not store.is_file():
        # Reading must not create a store: an empty one would only hide that this is the wrong folder.
        raise ConfigError(f"no MLflow store at {uri}: run hte-bench in this folder first, or point "
                          "--tracking-uri at your store")
    tracker = Tracker.from_config({"uri": args.tracking_uri, "experiment": args.experiment})
    tracker.existing_experiment_id()
    # Configuration runs only (hte_bench.kind=config): promotion's confirmation runs are kept out of ranking.
    # Filtered before each run's aggregate.json is downloaded: a mistyped filter is refused in a second.
    parents = tracker.frame(tracker.config_runs(_filter_string(args)), aggregates=False)
    if not parents.empty:
        parents = with_conditions(parents)
    for column, wanted in (("tags.data", args.data), ("tags.estimator", args.estimator),
                           ("tags.condition", args.condition)):
        if wanted and not parents.empty:
            keep = [w.strip() for w in wanted.split(",")]
            match = parents[column].isin(keep)
            known = set(parents[column])
            available = sorted(parents[column].unique())
            if column == "tags.condition":  # a label, or its hash as the board prints it (6 characters or more)
                hashes = parents["tags.condition_hash"].astype(str)
                # A condition's words: its label's, and every data knob as logged, so a knob left at its default
                # (not in the label) is still found: noise=1.0 on the engagement data.
                knobs = [c for c in parents.columns if c.startswith("params.data.") and c != "params.data._target_"]
                words_of = [set(_numbers_as_floats(" ".join([str(label), *(
                    f"{c[len('params.data.'):]}={row[c]}" for c in knobs if isinstance(row[c], str))])).split())
                    for label, (_, row) in zip(parents[column], parents.iterrows())]
                for w in keep:
                    # noise=2 is the condition noise=2.0; a part of a label selects every condition that has it
                    # ("noise=3.0" beside overrides of n), the whole label one.
                    words = set(_numbers_as_floats(w).split())
                    hit = (hashes.str.startswith(w) if len(w) >= 6 else hashes == w) | \
                        pd.Series([words <= have for have in words_of], index=parents.index)
                    match |= hit
                    known |= {w} if hit.any() else set()
                available = sorted({f"{c} [{h[:6]}]" for c, h in zip(parents[column], hashes)})
            unknown = sorted(set(keep) - known)
            if unknown:
                import difflib

                names = sorted(set(parents[column].astype(str)))
                close = difflib.get_close_matches(unknown[0], names, n=1, cutoff=0.75)
                hint = f" (did you mean {close[0]!r}?)" if close else ""
                raise ConfigError(f"--{column.split('.')[1]}: no finished runs for {', '.join(map(repr, unknown))}"
                                  f"{hint}; available: {', '.join(available)}")
            parents = parents[match]
    if parents.empty:
        raise ConfigError(f"no finished configuration runs in experiment {args.experiment!r} match the filters")
    parents = tracker.with_aggregates(parents)
    needed = f"metrics.{args.metric}" if parent_only(args.metric) else f"metrics.{args.metric}_mean"
    if needed not in parents.columns or parents[needed].isna().all():
        present = [m for m in sorted(registry.rankable()) if f"metrics.{m}_mean" in parents.columns or f"metrics.{m}" in parents.columns]
        import difflib

        close = difflib.get_close_matches(args.metric, present, n=1)
        hint = f" (did you mean {close[0]}?)" if close else ""
        raise ConfigError(f"--metric={args.metric} was not logged by these runs{hint}; available: {', '.join(present)}")
    from hte_bench.compare.leaderboard import summarised_seeds

    seeds = summarised_seeds(parents, tracker.frame(tracker.seed_runs(parents["run_id"].tolist())))
    return tracker, parents, seeds


def _fmt(value, digits: int = 4) -> str:
    """A board cell for the terminal: a number to ``digits`` significant digits (one more than the UI's
    descriptions, notes.fmt: boards set configurations side by side), '–' if missing, text as it is."""
    if value is None:
        return "–"
    try:
        v = float(value)
    except (TypeError, ValueError):
        return str(value)
    return "–" if not math.isfinite(v) else f"{v:.{digits}g}"


def _interval(row, mid: str, lo: str, hi: str) -> str:
    """``mean [lo, hi]`` from a row's columns; the mean alone without bounds, '–' without a mean."""
    if mid not in row or _fmt(row[mid]) == "–":  # absent, None (a run without truth), NaN
        return "–"
    if _fmt(row.get(lo)) == "–" and _fmt(row.get(hi)) == "–":  # one seed, or a figure without interval
        return _fmt(row[mid])
    return f"{_fmt(row[mid])} [{_fmt(row.get(lo))}, {_fmt(row.get(hi))}]"


def _numbers_as_floats(label: str) -> str:
    """A condition label with every ``knob=number`` written as a float, so 2 and 2.0 name one condition."""
    import re

    def as_float(m) -> str:
        return f"={float(m.group(1))!r}"

    return re.sub(r"=(-?\d+(?:\.\d*)?(?:[eE]-?\d+)?)(?=\s|$)", as_float, label.strip())


def _value_header(metric: str, mid: str) -> str:
    """What the board's value column holds: a mean with its interval, a rate with its interval, or a root mean
    square over seeds (no interval)."""
    if registry.summarised_as(metric) == "rms":
        return "(root mean square over seeds)"
    return "mean [CI]" if mid != metric else "[CI]"


def short_overrides(text: str) -> str:
    """Overrides as printed: keys without their ``estimator.model.``/``estimator.`` prefix, never cut (the
    csv/html keep the full keys)."""
    import re

    return re.sub(r"(^|\s)estimator\.(model\.)?", r"\1", str(text or ""))


def _seeds_cell(row, metric: str = "") -> str:
    """The seeds a row is compared on, and the ones it ran that are not used (and why)."""
    on, own = str(row.get("compared_on_seeds") or ""), str(row.get("selection_seeds") or "")
    if on.startswith("own seeds") or on == own:
        return on.replace("own seeds ", "") + (" (own)" if on.startswith("own seeds") else "")
    why = (f"{metric} on analysis seeds only" if metric and on_analysis_seeds(metric)
           else "the others not common to every ranked configuration, not used")
    return f"{on} (ran {own}; {why})" if own else on


def _coverage(value, kind: str, claimed: bool) -> str:
    """A coverage number with the kind of interval it is about; a kind that claims nothing shows as n/a."""
    if kind == "none" or not math.isfinite(float(value if value is not None else math.nan)):
        return f"– ({kind})"
    return f"{_fmt(value, 3)} ({kind})" if claimed else f"n/a: {kind} ({_fmt(value, 3)})"


def _distance(row, metric: str) -> str:
    """``0.0125 from 0.95``: a target metric's ranking score and the target of this row's alpha."""
    from hte_bench.evaluation import registry

    target = registry.spec(metric).target_value(float(row.get("alpha", 0.05)))
    if not math.isfinite(float(row["score"])):
        return "–"
    # The mean's own distance beside it: seed-to-seed spread makes the per-seed distance larger (0.065 per seed
    # while the mean is 0.005 from 0.95), and a reader took the one for the other.
    mean = float(row.get(f"{metric}_mean", math.nan))
    own = f" (the mean: {_fmt(round(abs(mean - target), 12), 3)})" if math.isfinite(mean) else ""
    return f"{_fmt(row['score'], 3)} from {target:g}{own}"


def readable(board, metric: str):
    """The leaderboard as people read it: one formatted string column per quantity, coverage with its kind."""
    import pandas as pd

    from hte_bench.compare.leaderboard import direction, parent_only
    from hte_bench.compare.study import PER_UNIT_VALID

    mid = metric if parent_only(metric) else f"{metric}_mean"
    # A target metric (coverage aims at 1 - alpha) is ranked by its mean per-seed distance to the target, which
    # is not the distance of the mean shown: the board shows the number it ranks by, and the target.
    targeted = direction(metric).startswith("target") and not parent_only(metric)  # a rate: its own distance
    rows = []
    for _, r in board.iterrows():
        ate_kind, kind = r["ate_interval_kind"], r["interval_kind"]
        lo, hi = f"{metric}_ci_lower", f"{metric}_ci_upper"
        value = _interval(r, mid, lo, hi) + (OUTSIDE_MARK if leaves_range(metric, r.get(lo), r.get(hi)) else "")
        cover = _interval(r, "ate_coverage_rate", "ate_coverage_rate_ci_lower", "ate_coverage_rate_ci_upper")
        rows.append({
            "condition": r["condition"], "rank": r["rank"] if pd.notna(r["rank"]) else "–", "estimator": r["estimator"],
            "overrides": short_overrides(r["overrides"]),
            "vs best": r["vs_best"] + ("" if not math.isfinite(r["p_vs_best_adj"]) else f" (p={r['p_vs_best_adj']:.2g})"),
            f"{metric} ({direction(metric)}) {_value_header(metric, mid)}": value,
            "compared on seeds": _seeds_cell(r, metric),
            **({"ranked by: mean per-seed distance to target": _distance(r, metric)} if targeted else {}),
            "ATE bias": _fmt(r["ate_bias_mean"]),
            "ATE coverage [Wilson] (kind)": cover + f" ({ate_kind})",
            "CATE coverage (kind)": _coverage(r["cate_coverage_test_mean"], kind,
                                              kind in PER_UNIT_VALID or kind == "unknown"),
            "calib slope": _fmt(r["calib_slope_test_mean"], 3),
            "importance ρ": _fmt(r["importance_rank_corr_mean"], 3), "fit s": _fmt(r["fit_seconds_mean"], 3),
            "seeds ok/failed": f"{_fmt(r['seeds_ok'])}/{_fmt(r['seeds_failed'])}",
        })
    return pd.DataFrame(rows)


def legend(board, metric: str) -> list[str]:
    """Lines saying what every bracket on the board is: kind and level (from the runs' alpha)."""
    from hte_bench.compare.leaderboard import parent_only

    alphas = sorted({float(a) for a in board["alpha"]}) if "alpha" in board else [0.05]
    level = registry.level_text(alphas[0]) if len(alphas) == 1 else \
        "1-alpha of each configuration (" + ", ".join(registry.level_text(a) for a in alphas) + ")"
    if registry.summarised_as(metric) == "share":
        what = f"{metric} [ ] = {level} Wilson interval over each configuration's own seeds (it exists only across seeds)"
    elif parent_only(metric):
        what = f"{metric}: root mean square over the compared seeds, no interval"
    else:
        what = f"{metric} [ ] = {level} t-interval of the mean across the compared seeds"
    same = "context_seeds" in board and (board["context_seeds"] == board["compared_on_seeds"]).all()
    over = "the compared seeds" if same else "the compared seeds where the seed runs are in the store, else over " \
                                             "each configuration's own finished seeds (seeds ok)"
    lines = [f"Intervals: {what}; ATE coverage [ ] = {level} Wilson interval over {over}. ATE bias, CATE "
             f"coverage, calib slope, importance ρ and fit s are means over {over}."]
    lo, hi = f"{metric}_ci_lower", f"{metric}_ci_upper"
    if lo in board and any(leaves_range(metric, a, b) for a, b in zip(board[lo], board[hi])):
        lines.append(OUTSIDE_NOTE)
    if board["overrides"].astype(str).str.contains(r"(?:^|\s)estimator\.").any():
        lines.append("Overrides are printed without their 'estimator.model.'/'estimator.' prefix "
                     "(full keys in leaderboard.csv).")
    return lines


def wilcoxon_floor(n_seeds: int, n_tests: int, level: float, correction: str = "holm") -> Optional[str]:
    """Why 'tied' may only mean 'too few seeds': the smallest p-value the exact two-sided Wilcoxon signed-rank
    test can give on ``n_seeds`` pairs (2 / 2^n, all differences one way), adjusted by ``correction`` over
    ``n_tests`` comparisons at best (all of them at that floor); None when significance is reachable."""
    from hte_bench.compare.leaderboard import adjusted_p

    if n_seeds < 1 or n_tests < 1:
        return None

    def lowest(n: int) -> float:
        return float(min(1.0, adjusted_p([2.0 / 2 ** n] * n_tests, correction, level).min()))

    floor = lowest(n_seeds)
    if floor < level:
        return None
    need = next(k for k in range(n_seeds + 1, 64) if lowest(k) < level)
    return (f"with {n_seeds} common seeds the exact paired Wilcoxon test cannot go below p = {floor:.3g} "
            f"({correction} over {n_tests} comparison{'s' if n_tests > 1 else ''}), so 'tied' here means too few "
            f"seeds to tell, not equal: {need} or more common seeds can show a difference at {level:g}")


def _redrawn_note(group) -> list[str]:
    """The line saying which seeds a condition's ranking left out because their draws differ (or none)."""
    if "redrawn_seeds" not in group or not group["redrawn_seeds"].notna().any():
        return []
    return [f"seeds {group['redrawn_seeds'].dropna().iloc[0]} left out: their data differ between configurations "
            "(tag data_hash: the generator or a library changed between runs); rerun the older configurations to "
            "compare on them"]


def condition_header(group, metric: str, test: str = "wilcoxon", level: float = 0.05,
                     correction: str = "holm") -> tuple[str, list[str]]:
    """A condition's section title, naming the seeds its ranking stands on, and the lines that warn when
    it stands on too few (one common seed) or none."""
    chash = group["condition_hash"].iloc[0]
    title = f"== {group['condition'].iloc[0]} [condition {chash[:6]}] — ranked by {metric}"
    if registry.summarised_as(metric) == "share":
        return title + ", each configuration on its own seeds (a rate across seeds) ==", []
    ranked = group[group["rank"].notna()]
    if ranked.empty and group["vs_best"].eq("unranked: no common seed").any():
        own = "; ".join(f"{r.estimator} {short_overrides(r.overrides)}".strip() + f": {r.selection_seeds}"
                        for r in group.itertuples())
        redrawn = _redrawn_note(group)
        why = ("their shared seeds' data differ (below)" if redrawn else
               "run them with the same n_seeds (e.g. hte-bench -m ... n_seeds=N) to compare them")
        return title.replace("ranked by", "not ranked by") + " ==", [
            f"not ranked: its configurations share no finished seed with the same data ({own}); {why}", *redrawn]
    if ranked.empty:
        return title + " ==", ["not ranked: no configuration has a value of this metric"]
    on = ranked["compared_on_seeds"].iloc[0]
    n = int(ranked["n_compared"].iloc[0])
    k = len(ranked)
    extra = (group["selection_seeds"] != on).any()
    analysis = on_analysis_seeds(metric)
    why = (f" ({metric} exists on the analysis seeds only: analyses.seeds)" if analysis else
           " (seeds only some ran are not used)")
    title += (f" on seed{'s' if n > 1 else ''} {on}, " + (f"common to all {k} ranked configurations" if k > 1
                                                            else "those of its one ranked configuration")
              + (why if extra else "") + " ==")
    more = ("a larger analyses.seeds (this metric exists on the analysis seeds only)" if on_analysis_seeds(metric)
            else "run more seeds (n_seeds=5 or more)" if (group["selection_seeds"] == on).all()
            else "run every configuration on the same seeds")
    notes = [f"1 common seed ({on}): no interval, no test — {more}"] if n == 1 else []
    notes += _redrawn_note(group)
    if "resplits" in group and group["resplits"].astype(bool).any():
        notes.append("data=csv: the seeds are other train/test splits of the same rows, not new samples, so the "
                     "intervals and tests across them understate the uncertainty about new data")
    floor = wilcoxon_floor(n, k - 1, level, correction) if test == "wilcoxon" and n > 1 and k > 1 else None
    if floor:
        # More seeds of an analysis metric come from a larger analyses.seeds, not from more n_seeds alone.
        notes.append(floor + ("; for this metric that means a larger analyses.seeds (e.g. analyses.seeds=10, or "
                              "true for every seed)" if analysis else ""))
    return title, notes



def _label(row) -> str:
    text = f"{row['estimator']} {short_overrides(row['overrides'])}".strip()
    return (text[:48] + "…" if len(text) > 49 else text) + f" [{row['config_hash'][:6]}]"


def _slug(text: str) -> str:
    """A condition label as a file name: ``engagement noise=3.0`` -> ``engagement_noise-3.0``."""
    return "".join(c if c.isalnum() or c in "._-" else ("-" if c == "=" else "_") for c in text)


def write_report(tracker, board, avg, seeds, metric: str, out: Path, plots: bool = True,
                 selectors=None, test: str = "wilcoxon", correction: str = "holm", level: float = 0.05) -> None:
    """leaderboard.csv/.md/.html, average_rank.csv and comparison plots per data condition into ``out``."""
    import numpy as np

    from hte_bench.compare.leaderboard import seeds_of
    from hte_bench.evaluation import metrics as M
    from hte_bench import plots as P

    out.mkdir(parents=True, exist_ok=True)
    board.to_csv(out / "leaderboard.csv", index=False)
    if selectors is not None and len(selectors):
        selectors.to_csv(out / "selector_validation.csv", index=False)
    table = readable(board, metric)
    notes = "\n\n".join([vs_best_note(test, correction, level, metric), *legend(board, metric)])
    (out / "leaderboard.md").write_text(f"# Leaderboard by {metric}\n\n{notes}\n\n"
                                        + table.to_markdown(index=False) + "\n")
    (out / "leaderboard.html").write_text(table.to_html(index=False, border=0))
    if avg is not None:
        avg.to_csv(out / "average_rank.csv")
    if not plots:
        return
    per_seed_col = registry.per_seed_source(metric)
    ok = seeds[seeds["status"] == "FINISHED"] if not seeds.empty else seeds
    for _, group in board.groupby("condition_hash", sort=False):
        name = _slug(group["condition"].iloc[0])
        values, ates, calib, calib_seeds = {}, {}, {}, set()
        for _, row in group.iterrows():
            kids = ok[ok["parent_id"] == row["parent_run_id"]].sort_values("tags.seed")
            # The plots show the seeds the board compared, as the table does (extra seeds are not used).
            compared = {str(s) for s in seeds_of(row.get("compared_on_seeds", ""))}
            if compared:
                kids = kids[kids["tags.seed"].astype(str).isin(compared)]
            label = _label(row)
            values[label] = kids.get(f"metrics.{per_seed_col}", np.array([])).to_numpy(float)
            # Data without a true effect (a CSV of real outcomes): no ATE error, no calibration against tau.
            if "metrics.ate_true" not in kids or not kids["metrics.ate_true"].notna().any():
                continue
            ates[label] = kids.rename(columns=lambda c: c.replace("metrics.", ""))[
                ["ate_true", "ate_hat", "ate_ci_lower", "ate_ci_upper"]]
            if len(kids):
                with tempfile.TemporaryDirectory() as tmp:
                    import pandas as pd

                    preds = pd.read_parquet(tracker.download(kids.iloc[0]["run_id"], "predictions.parquet", tmp))
                test = preds[preds["split"] == "test"]
                calib[label] = M.calibration_table(test["tau_true"].to_numpy(), test["tau_hat"].to_numpy())
                calib_seeds.add(str(kids.iloc[0]["tags.seed"]))
        condition = f"{group['condition'].iloc[0]} (seeds {group['compared_on_seeds'].iloc[0]})"
        level = registry.levels_text(group["alpha"])
        kinds = ", ".join(sorted(set(group["ate_interval_kind"]) - {"none"})) or "none"
        first = f"seed {', '.join(sorted(calib_seeds))}" if calib_seeds else "no seed"
        figures = [(f"{name}_{metric}_by_config.png",
                    P.metric_by_config_plot(values, per_seed_col, title=f"{condition}: {per_seed_col} per seed"))]
        if ates:
            figures.append((f"{name}_ate_error_by_config.png",
                            P.ate_error_by_config_plot(ates, title=f"{condition}: ATE error per seed, with its "
                                                                   f"{level} interval (kinds: {kinds})")))
        if calib:
            figures.append((f"{name}_calibration_by_config.png",
                            P.calibration_overlay_plot(calib, title=f"{group['condition'].iloc[0]}: calibration on "
                                                                    f"the test split of {first}")))
        for file, fig in figures:
            (out / "plots").mkdir(exist_ok=True)
            fig.savefig(out / "plots" / file, dpi=100, bbox_inches="tight")


# scipy's method="auto" (scipy 1.17): exact only up to 50 pairs with no tied or zero differences; otherwise a
# permutation test on few pairs or the normal approximation, so many boards' p-values are approximate.
TESTS = {"wilcoxon": "Wilcoxon signed-rank test as scipy chooses it: exact up to 50 common seeds without tied or "
                     "zero differences, else a permutation test or the normal approximation",
         "ttest": "paired t-test"}


def vs_best_note(test: str = "wilcoxon", correction: str = "holm", level: float = 0.05,
                 metric: Optional[str] = None) -> str:
    """What 'vs best' says: which test, which correction, at which level, on which seeds."""
    if metric is not None and registry.summarised_as(metric) == "share":
        return ("'vs best': a rate across seeds has no per-seed values to pair, so no paired test is made: equal "
                "rates share a rank (the configuration hash orders a tie) and the others read 'untested'. "
                "hte-bench-promote confirms the winner on fresh seeds.")
    return (f"'vs best' is a paired test against the best configuration of the same data condition ({TESTS[test]}, "
            f"p-values adjusted by {correction} over the condition's comparisons; worse = adjusted p < {level:g}; "
            "mixed = a difference the other way: lower loss on most seeds although its mean ranks it below the best, "
            "e.g. one bad seed), "
            "on the seeds the condition is compared on (named in its header) — the seeds the best was chosen on: "
            "a selection, optimistic for the winner. hte-bench-promote confirms the winner on fresh seeds.")


def _print_board(board, avg, metric: str, selectors=None, confirmations=None, test: str = "wilcoxon",
                 level: float = 0.05, correction: str = "holm") -> None:
    from hte_bench.compare.study import KIND_NOTES

    table = readable(board, metric)
    for _, group in board.groupby("condition_hash", sort=False):
        title, notes = condition_header(group, metric, test, level, correction)
        print("\n" + title)
        for note in notes:
            print(note)
        print(table.loc[group.index].drop(columns="condition").to_string(index=False))
    print()
    for line in legend(board, metric):
        print(line)
    print(vs_best_note(test, correction, level, metric))
    kinds = sorted(set(board["interval_kind"]) | set(board["ate_interval_kind"]))
    notes = [f"{k}: {KIND_NOTES[k]}" for k in kinds if k in KIND_NOTES]
    if notes:
        print("Interval kinds: per_unit/bootstrap/ate intervals claim what they say; " + "; ".join(notes) + ".")
    if avg is not None:
        print("\n== mean rank across data conditions (ranks within each condition) ==")
        print(avg.to_string())
        counted = avg.drop(columns=["mean_rank", "n_conditions"]).apply(
            lambda row: frozenset(c for c, v in row.items() if v != "–" and not v.endswith("(alone)")), axis=1)
        print("mean_rank counts the conditions where two or more configurations were ranked (n_conditions; "
              "'(alone)' is not counted)" + ("; configurations ranked in different conditions are not compared by "
                                             "it: read their ranks within each condition above"
                                             if counted.nunique() > 1 else ""))
    if selectors is not None and len(selectors):
        print("\n== truth-free selectors vs the truth, within each condition (what each score would pick, "
              "ties listed, regret averaged over tied picks) ==")
        print(selectors.to_string(index=False, float_format=lambda v: f"{v:.4g}"))
    if confirmations is not None and len(confirmations):
        confirmations = confirmations[confirmations["condition"].isin(board["condition"])]
    if confirmations is not None and len(confirmations):
        print("\n== confirmation runs of promoted configurations (fresh seeds; never used for ranking) ==")
        print(confirmations.to_string(index=False))
        if confirmations.astype(str).apply(lambda c: c.str.endswith(OUTSIDE_MARK)).any().any():
            print(OUTSIDE_NOTE)


def _report_params(args) -> dict:
    return {k: v for k, v in {"metric": args.metric, "test": args.test, "level": args.level,
                              "correction": args.correction, "filter.data": args.data,
                              "filter.condition": args.condition, "filter.estimator": args.estimator,
                              "filter.tags": ",".join(args.tag) or None, "filter.run_name": args.run_name,
                              "by": getattr(args, "by", None)}.items() if v is not None}


def _fail(err: Exception) -> None:
    print(f"{Path(sys.argv[0]).name}: error: {err}", file=sys.stderr)
    sys.exit(2)


def _study(parents, seeds, metric: str, by: str, out: Optional[Path]) -> None:
    """Print (and with ``out`` save as csv and figure) ``metric`` against the data knob ``by``."""
    from hte_bench.compare import study

    level = study.runs_level(parents)  # the runs' own level; mixed levels fall back to 95%
    alpha = 1 - level
    table = study.study_table(parents, seeds, metric, by, level=level)
    print(f"\n== {metric} by {by}: mean, {registry.level_text(alpha)} t-interval and seeds; each cell one data condition ({by} "
          f"of its column, any other varying knob named in its row), on the seeds that condition's configurations "
          f"share; one row per configuration; not a ranking ==")
    grid = study.study_grid(table, by, metric)
    print(grid.to_string())
    if grid.apply(lambda col: col.str.contains(OUTSIDE_MARK, regex=False)).any().any():
        print(OUTSIDE_NOTE)
    if out is not None:
        from hte_bench.compare.study import save_study_figures

        table.to_csv(out / f"study_{_slug(by)}.csv", index=False)
        save_study_figures(table, by, metric, out, level=level)


def leaderboard_main(argv: Optional[list[str]] = None) -> None:
    """Rank the configurations of an experiment within each data condition and log the leaderboard as a run."""
    p = _common("hte-bench-leaderboard", leaderboard_main.__doc__)
    p.add_argument("--by", default=None, metavar="data.KNOB",
                   help="also print the metric against this data knob (a study: one row per configuration, "
                        "one column per value, mean and 1-alpha t-interval over seeds; 95%% when the runs' alphas differ)")
    p.add_argument("--no-log", action="store_true", help="print only; do not log a leaderboard run")
    args = p.parse_args(argv)
    try:
        from hte_bench.compare.leaderboard import average_rank, build, selector_validation

        tracker, parents, seeds = load(args)
        if args.by:  # a bad knob must fail before the board is printed, not after
            from hte_bench.compare.study import check_study

            check_study(parents, args.metric, args.by)
        board = build(parents, seeds, args.metric, args.test, args.level, args.correction)
        avg = average_rank(board)
        selectors = selector_validation(board, parents, seeds)
        from hte_bench.cli.promote import confirmations

        _print_board(board, avg, args.metric, selectors, confirmations(tracker, args.metric), args.test, args.level,
                     args.correction)
        with tempfile.TemporaryDirectory() as tmp:
            if args.by:
                _study(parents, seeds, args.metric, args.by, None if args.no_log else Path(tmp))
            if not args.no_log:
                write_report(tracker, board, avg, seeds, args.metric, Path(tmp), selectors=selectors,
                             test=args.test, correction=args.correction, level=args.level)
                run_id = tracker.log_report(f"leaderboard/{args.metric}", "leaderboard", _report_params(args),
                                            {}, {"n_configs": len(board)}, tmp,
                                            how=vs_best_note(args.test, args.correction, args.level))
                print(f"\nlogged as run {run_id} in experiment {args.experiment!r}")
    except ConfigError as err:
        _fail(err)
    except (KeyboardInterrupt, Exception) as err:
        if not interrupted(err):
            raise
        # A leaderboard run stopped half-way was closed KILLED (Tracker.log_report): one line, as hte-bench says it.
        print("hte-bench-leaderboard: interrupted (Ctrl-C); the board was not logged", file=sys.stderr, flush=True)
        sys.exit(130)


def promote_main(argv: Optional[list[str]] = None) -> None:
    """Promote the best configuration that passes the gates, confirmed on fresh seeds, to the MLflow model
    registry (alias champion)."""
    from hte_bench.cli.promote import add_arguments, promote

    p = _common("hte-bench-promote", promote_main.__doc__)
    add_arguments(p)
    args = p.parse_args(argv)
    try:
        promote(args)
    except ConfigError as err:
        _fail(err)
    except (KeyboardInterrupt, Exception) as err:
        if not interrupted(err):  # Ctrl-C, or a library's own error raised by its clean-up after one
            raise
        # The confirmation run ends KILLED and a registration stopped half-way is undone (Registry): one line.
        done = getattr(args, "promoted", None)
        print("hte-bench-promote: interrupted (Ctrl-C); " + (
            f"version {done['version']} is the champion, its config may not be written" if done else
            "nothing was promoted"), file=sys.stderr, flush=True)
        sys.exit(130)
