"""Command lines ``hte-bench-leaderboard`` and ``hte-bench-promote``: read an experiment, rank, promote."""
from __future__ import annotations

import argparse
import json
import math
import sys
import tempfile
from pathlib import Path
from typing import Optional

from hte_bench.errors import ConfigError


def _common(prog: str, description: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=prog, description=description)
    p.add_argument("--experiment", default="hte-bench", help="MLflow experiment name (default: hte-bench)")
    p.add_argument("--tracking-uri", default=None,
                   help="default: $MLFLOW_TRACKING_URI, else sqlite:///mlruns/mlflow.db here")
    p.add_argument("--metric", default="cate_rmse_test",
                   help="child metric to rank by (default: cate_rmse_test = √PEHE out of sample); "
                        "also ate_rmse, ate_coverage_rate")
    p.add_argument("--data", default=None, help="only these data generators (comma-separated)")
    p.add_argument("--estimator", default=None, help="only these estimators (comma-separated)")
    p.add_argument("--tag", action="append", default=[], metavar="KEY=VALUE", help="only runs with this tag")
    p.add_argument("--run-name", default=None, metavar="PATTERN", help="only runs whose name is LIKE this (%% = any)")
    p.add_argument("--test", choices=["wilcoxon", "ttest"], default="wilcoxon",
                   help="paired test against the best on shared seeds (default: wilcoxon signed-rank)")
    p.add_argument("--level", type=float, default=0.05, help="significance level (default: 0.05)")
    p.add_argument("--correction", default="holm", help="statsmodels multipletests method (default: holm)")
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


def load(args):
    """The tracker and the (parents, seeds) run tables after the command line's filters."""
    from hte_bench.compare.leaderboard import PARENT_ONLY, RANKABLE, direction
    from hte_bench.tracking import Tracker, resolve_uri

    if not 0 < args.level < 1:
        raise ConfigError(f"--level={args.level} is not allowed; it must be in (0, 1)")
    direction(args.metric)
    uri = resolve_uri(args.tracking_uri)
    if uri.startswith("sqlite:///") and not Path(uri[len("sqlite:///"):].split("?")[0]).is_file():
        # Reading must not create a store: an empty one would only hide that this is the wrong folder.
        raise ConfigError(f"no MLflow store at {uri}: run hte-bench in this folder first, or point "
                          "--tracking-uri at your store")
    tracker = Tracker.from_config({"uri": args.tracking_uri, "experiment": args.experiment})
    tracker.existing_experiment_id()
    parents = tracker.frame(tracker.config_runs(_filter_string(args)))
    for column, wanted in (("tags.data", args.data), ("tags.estimator", args.estimator)):
        if wanted and not parents.empty:
            keep = [w.strip() for w in wanted.split(",")]
            unknown = sorted(set(keep) - set(parents[column]))
            if unknown:
                raise ConfigError(f"--{column.split('.')[1]}: no finished runs for {unknown}; "
                                  f"available: {', '.join(sorted(parents[column].unique()))}")
            parents = parents[parents[column].isin(keep)]
    if parents.empty:
        raise ConfigError(f"no finished configuration runs in experiment {args.experiment!r} match the filters")
    needed = f"metrics.{args.metric}" if args.metric in PARENT_ONLY else f"metrics.{args.metric}_mean"
    if needed not in parents.columns or parents[needed].isna().all():
        present = [m for m in RANKABLE if f"metrics.{m}_mean" in parents.columns or f"metrics.{m}" in parents.columns]
        raise ConfigError(f"--metric={args.metric} was not logged by these runs; available: {', '.join(present)}")
    seeds = tracker.frame(tracker.seed_runs(parents["run_id"].tolist()))
    return tracker, parents, seeds


def _fmt(value, digits: int = 4) -> str:
    try:
        v = float(value)
    except (TypeError, ValueError):
        return str(value)
    return "–" if not math.isfinite(v) else f"{v:.{digits}g}"


def _interval(row, mid: str, lo: str, hi: str) -> str:
    if mid not in row or not math.isfinite(float(row[mid])):
        return "–"
    return f"{_fmt(row[mid])} [{_fmt(row.get(lo))}, {_fmt(row.get(hi))}]"


def readable(board, metric: str):
    """The leaderboard as people read it: one formatted string column per quantity."""
    import pandas as pd

    from hte_bench.compare.leaderboard import PARENT_ONLY, direction

    mid = metric if metric in PARENT_ONLY else f"{metric}_mean"
    rows = []
    for _, r in board.iterrows():
        rows.append({
            "data": r["data"], "rank": r["rank"], "estimator": r["estimator"], "overrides": r["overrides"][:60],
            "vs best": r["vs_best"] + ("" if not math.isfinite(r["p_vs_best_adj"]) else f" (p={r['p_vs_best_adj']:.2g})"),
            f"{metric} ({direction(metric)})": _interval(r, mid, f"{metric}_ci_lower", f"{metric}_ci_upper"),
            "ATE bias": _fmt(r["ate_bias_mean"]),
            "ATE coverage": _interval(r, "ate_coverage_rate", "ate_coverage_rate_ci_lower", "ate_coverage_rate_ci_upper"),
            "CATE coverage": _fmt(r["cate_coverage_test_mean"], 3), "calib slope": _fmt(r["calib_slope_test_mean"], 3),
            "importance ρ": _fmt(r["importance_rank_corr_mean"], 3), "fit s": _fmt(r["fit_seconds_mean"], 3),
            "seeds ok/failed": f"{_fmt(r['seeds_ok'])}/{_fmt(r['seeds_failed'])}",
        })
    return pd.DataFrame(rows)


def _label(row) -> str:
    text = f"{row['estimator']} {row['overrides']}".strip()
    return (text[:48] + "…" if len(text) > 49 else text) + f" [{row['config_hash'][:6]}]"


def write_report(tracker, board, avg, seeds, metric: str, out: Path, plots: bool = True,
                 selectors=None) -> None:
    """leaderboard.csv/.md/.html, average_rank.csv and comparison plots per data generator into ``out``."""
    import numpy as np

    from hte_bench.evaluation import metrics as M
    from hte_bench import plots as P

    out.mkdir(parents=True, exist_ok=True)
    board.to_csv(out / "leaderboard.csv", index=False)
    if selectors is not None and len(selectors):
        selectors.to_csv(out / "selector_validation.csv", index=False)
    table = readable(board, metric)
    (out / "leaderboard.md").write_text(f"# Leaderboard by {metric}\n\n" + table.to_markdown(index=False) + "\n")
    (out / "leaderboard.html").write_text(table.to_html(index=False, border=0))
    if avg is not None:
        avg.to_csv(out / "average_rank.csv")
    if not plots:
        return
    per_seed_col = {"ate_rmse": "ate_bias", "ate_coverage_rate": "ate_covered"}.get(metric, metric)
    ok = seeds[seeds["status"] == "FINISHED"] if not seeds.empty else seeds
    for data, group in board.groupby("data"):
        values, ates, calib = {}, {}, {}
        for _, row in group.iterrows():
            kids = ok[ok["parent_id"] == row["parent_run_id"]].sort_values("tags.seed")
            label = _label(row)
            values[label] = kids.get(f"metrics.{per_seed_col}", np.array([])).to_numpy(float)
            ates[label] = kids.rename(columns=lambda c: c.replace("metrics.", ""))[
                ["ate_true", "ate_hat", "ate_ci_lower", "ate_ci_upper"]]
            if len(kids):
                with tempfile.TemporaryDirectory() as tmp:
                    import pandas as pd

                    preds = pd.read_parquet(tracker.download(kids.iloc[0]["run_id"], "predictions.parquet", tmp))
                test = preds[preds["split"] == "test"]
                calib[label] = M.calibration_table(test["tau_true"].to_numpy(), test["tau_hat"].to_numpy())
        for name, fig in ((f"{data}_{metric}_by_config.png",
                           P.metric_by_config_plot(values, per_seed_col, title=f"{data}: {per_seed_col} per seed")),
                          (f"{data}_ate_error_by_config.png",
                           P.ate_error_by_config_plot(ates, title=f"{data}: ATE error and interval per seed")),
                          (f"{data}_calibration_by_config.png",
                           P.calibration_overlay_plot(calib, title=f"{data}: calibration (test split, first seed)"))):
            (out / "plots").mkdir(exist_ok=True)
            fig.savefig(out / "plots" / name, dpi=100, bbox_inches="tight")


def _print_board(board, avg, metric: str, selectors=None) -> None:
    table = readable(board, metric)
    for data, group in table.groupby("data", sort=True):
        print(f"\n== {data} — ranked by {metric} ==")
        print(group.drop(columns="data").to_string(index=False))
    if avg is not None:
        print("\n== mean rank across data generators (ranks within each generator) ==")
        print(avg.to_string())
    if selectors is not None and len(selectors):
        print("\n== truth-free selectors vs the truth (what each score would pick, and its regret) ==")
        print(selectors.to_string(index=False, float_format=lambda v: f"{v:.4g}"))


def _report_params(args) -> dict:
    return {k: v for k, v in {"metric": args.metric, "test": args.test, "level": args.level,
                              "correction": args.correction, "filter.data": args.data,
                              "filter.estimator": args.estimator, "filter.tags": ",".join(args.tag) or None,
                              "filter.run_name": args.run_name}.items() if v is not None}


def _fail(err: Exception) -> None:
    print(f"{Path(sys.argv[0]).name}: error: {err}", file=sys.stderr)
    sys.exit(2)


def leaderboard_main(argv: Optional[list[str]] = None) -> None:
    """Rank the configurations of an experiment and log the leaderboard as a run beside them."""
    p = _common("hte-bench-leaderboard", __doc__.splitlines()[0] if __doc__ else None)
    p.add_argument("--no-log", action="store_true", help="print only; do not log a leaderboard run")
    args = p.parse_args(argv)
    try:
        from hte_bench.compare.leaderboard import average_rank, build, selector_validation

        tracker, parents, seeds = load(args)
        board = build(parents, seeds, args.metric, args.test, args.level, args.correction)
        avg = average_rank(board)
        selectors = selector_validation(board, parents)
        _print_board(board, avg, args.metric, selectors)
        if not args.no_log:
            with tempfile.TemporaryDirectory() as tmp:
                write_report(tracker, board, avg, seeds, args.metric, Path(tmp), selectors=selectors)
                run_id = tracker.log_report(f"leaderboard/{args.metric}", "leaderboard", _report_params(args),
                                            {}, {"n_configs": len(board)}, tmp)
            print(f"\nlogged as run {run_id} in experiment {args.experiment!r}")
    except ConfigError as err:
        _fail(err)


def promote_main(argv: Optional[list[str]] = None) -> None:
    """Promote the best configuration that passes the gates to the MLflow model registry (alias champion)."""
    from hte_bench.compare.promote import Gates

    p = _common("hte-bench-promote", promote_main.__doc__)
    p.add_argument("--name", required=True, help="registered model name")
    p.add_argument("--min-ate-coverage", type=float, default=None, help="gate: minimum ATE coverage rate")
    p.add_argument("--max-failed-seeds", type=int, default=None, help="gate: at most this many failed seeds")
    p.add_argument("--min-seeds", type=int, default=None, help="gate: at least this many finished seeds")
    p.add_argument("--require-significance", action="store_true",
                   help="gate: the best must be significantly better than every other configuration")
    p.add_argument("--refit-seed", type=int, default=0, help="refit on this seed's training data (default 0)")
    p.add_argument("--csv", default=None, help="refit on this CSV instead (with --outcome, --treatment)")
    p.add_argument("--outcome", default=None)
    p.add_argument("--treatment", default=None)
    p.add_argument("--features", default=None, help="comma-separated (default: all other columns)")
    p.add_argument("--config-out", default="conf/experiment",
                   help="where promoted_<name>.yaml is written (default: conf/experiment, on the search path)")
    args = p.parse_args(argv)
    try:
        _promote(args, Gates(args.min_ate_coverage, args.max_failed_seeds, args.min_seeds,
                             args.require_significance))
    except ConfigError as err:
        _fail(err)


def _promote(args, gates) -> None:
    from omegaconf import OmegaConf

    from hte_bench.compare import promote
    from hte_bench.data.base import DataError
    from hte_bench.compare.leaderboard import build
    from hte_bench.runner import CHOICE
    from hte_bench.seed import make_data, make_estimator

    promote.check_model_name(args.name)
    if args.csv and not (args.outcome and args.treatment):
        raise ConfigError("--csv needs --outcome and --treatment")
    tracker, parents, seeds = load(args)
    board = build(parents, seeds, args.metric, args.test, args.level, args.correction)
    decision = promote.choose(board, gates)
    print(f"Candidates ranked by {args.metric}:")
    for label, why in decision.reasons.items():
        print(f"  {label}: {'; '.join(why)}")
    if decision.winner is None:
        print("nothing qualified for promotion", file=sys.stderr)
        sys.exit(1)
    win = decision.winner
    with tempfile.TemporaryDirectory() as tmp:
        config_text = Path(tracker.download(win["parent_run_id"], "config.yaml", tmp)).read_text()
    cfg = OmegaConf.create(config_text)
    try:
        if args.csv:
            from hte_bench.data.csv import read_observed

            X, T, Y = read_observed(args.csv, args.outcome, args.treatment,
                                    args.features.split(",") if args.features else None)
            refit_on = f"csv {args.csv}"
        else:
            dataset, _ = make_data(cfg, args.refit_seed)
            X, T, Y = dataset.X_train, dataset.T_train, dataset.Y_train
            refit_on = f"{win['data']} seed {args.refit_seed} (train split)"
    except DataError as err:
        raise ConfigError(str(err)) from err
    adapter = make_estimator(cfg, args.refit_seed).fit(X, T, Y)
    same = parents[parents["tags.config_hash"] == win["config_hash"]]["run_id"].tolist()
    header = [f"Promoted by hte-bench-promote as model {args.name!r} on {promote.stamp()}",
              f"from experiment {args.experiment!r}, config_hash {win['config_hash']}, parent run {win['parent_run_id']}",
              f"Re-run: hte-bench +experiment=promoted_{args.name}"]
    row = parents.set_index("run_id").loc[win["parent_run_id"]]
    choices = {c[len("tags." + CHOICE):]: row[c] for c in parents.columns
               if c.startswith("tags." + CHOICE) and isinstance(row[c], str)}
    text = promote.experiment_config(config_text, choices or {"data": win["data"], "estimator": win["estimator"]},
                                     header)
    path = promote.write_experiment(text, Path(args.config_out), args.name)
    summary = {k: (None if isinstance(v, float) and not math.isfinite(v) else v)
               for k, v in win.items() if isinstance(v, (int, float, str))}
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / path.name).write_text(text)
        (Path(tmp) / "decision.json").write_text(json.dumps(
            {"metric": args.metric, "winner": summary, "reasons": decision.reasons, "refit_on": refit_on}, indent=2))
        board.to_csv(Path(tmp) / "leaderboard.csv", index=False)
        res = tracker.register_model(
            args.name, adapter, X, float(cfg.get("alpha", 0.05)), run_name=f"promote/{args.name}",
            params={"metric": args.metric, "refit_on": refit_on, **{f"gate.{k}": v for k, v in vars(gates).items()}},
            tags={"config_hash": win["config_hash"], "data": win["data"], "estimator": win["estimator"]},
            version_tags={"config_hash": win["config_hash"], "source_parent_run_ids": ",".join(same),
                          "metric": args.metric, "metric_summary": json.dumps(summary), "refit_on": refit_on},
            artifact_dir=tmp)
    print(f"promoted {win['estimator']} {win['overrides']} [{win['config_hash']}] as {res['model_uri']} "
          f"(version {res['version']}; previous champion: {res['previous'] or 'none'})")
    print(f"config written to {path}; re-run with: hte-bench +experiment=promoted_{args.name}")
