"""``hte-bench-promote``: pick the best configuration on its seeds, confirm it on fresh seeds, register it."""
from __future__ import annotations

import json
import math
import sys
import tempfile
from pathlib import Path

from hte_bench.cli import current_folder_importable
from hte_bench.errors import ConfigError


def add_arguments(p) -> None:
    """Promotion's own options (gates, confirmation, refit, output) on top of the leaderboard's filters."""
    p.add_argument("--name", required=True, help="registered model name")
    p.add_argument("--min-ate-coverage", type=float, default=None, help="gate: minimum ATE coverage rate")
    p.add_argument("--min-cate-coverage", type=float, default=None,
                   help="gate: minimum per-unit coverage (test split), counted only for intervals whose kind "
                        "claims per-unit validity (per_unit, bootstrap)")
    p.add_argument("--max-failed-seeds", type=int, default=None, help="gate: at most this many failed seeds")
    p.add_argument("--min-seeds", type=int, default=None, help="gate: at least this many seeds compared on (finished by every "
                        "ranked configuration of the condition)")
    p.add_argument("--require-significance", action="store_true",
                   help="gate: the best must be significantly better than every other configuration")
    p.add_argument("--confirm-seeds", type=int, default=None, metavar="N",
                   help="confirm the winner on N fresh seeds above every seed used in the experiment "
                        "(default: as many as it was selected on; 0 skips the confirmation)")
    p.add_argument("--refit-seed", type=int, default=0, help="refit on this seed's training data (default 0)")
    p.add_argument("--csv", default=None, help="refit on this CSV instead (with --outcome, --treatment)")
    p.add_argument("--outcome", default=None)
    p.add_argument("--treatment", default=None)
    p.add_argument("--features", default=None, help="comma-separated (default: all other columns)")
    p.add_argument("--config-out", default="conf/experiment",
                   help="where promoted_<name>.yaml is written (default: conf/experiment, on the search path)")


# Said wherever a confirmation figure of data read from a file is shown (terminal, tags, model version).
RESPLIT = "data=csv: fresh seeds are other splits of the same rows, so this is no independent confirmation"


def summary_text(metric: str, values: dict, seeds: list[int], alpha: float) -> str:
    """``metric`` of one configuration with its interval and what the interval is, e.g.
    ``0.41 [0.39, 0.43] (mean over seeds 0-7, 95% t-interval, n=8)``."""
    from hte_bench.compare.leaderboard import parent_only
    from hte_bench.config import seed_list
    from hte_bench.evaluation import registry

    def f(key):
        v = values.get(key)
        return "–" if v is None or not math.isfinite(float(v)) else f"{float(v):.4g}"

    if not seeds:
        return "– (no seed finished)"
    where = f"seeds {seed_list(seeds)}, n={len(seeds)}"
    if registry.summarised_as(metric) == "share":
        return (f"{f(metric)} [{f(metric + '_ci_lower')}, {f(metric + '_ci_upper')}] (share of {where}; "
                f"{registry.level_text(alpha)} Wilson interval)")
    if parent_only(metric):
        return f"{f(metric)} (across {where}; no interval)"
    if len(seeds) < 2:
        return f"{f(metric + '_mean')} (on {where}: one seed, no interval)"
    wide = "; a bound outside the metric's possible range is shown as computed (few seeds)" \
        if registry.leaves_range(metric, values.get(metric + "_ci_lower"), values.get(metric + "_ci_upper")) else ""
    return (f"{f(metric + '_mean')} [{f(metric + '_ci_lower')}, {f(metric + '_ci_upper')}] "
            f"(mean over {where}, {registry.level_text(alpha)} t-interval{wide})")


def confirm(tracker, config_text: str, choices: dict, win, selection: list[int], n: int, name: str,
            metric: str) -> dict:
    """Run the winner's configuration on ``n`` fresh seeds as its own run (``hte_bench.kind=confirmation``).

    Fresh means above every seed of any seed run in the experiment, so no ranking (leaderboard, sweep,
    Optuna) and no earlier confirmation has seen them. Returns the run's summary, the seeds its figures are
    over (those that finished) and the seeds asked for.
    """
    from omegaconf import OmegaConf

    from hte_bench.compare.study import fresh_seeds
    from hte_bench.config import seed_list
    from hte_bench.runner import run
    from hte_bench.tracking import KIND

    used = tracker.frame(tracker.search(f"tags.`{KIND}` = 'seed'"))
    fresh = fresh_seeds(list(used["tags.seed"]) if len(used) else [], n)
    cfg = OmegaConf.create(config_text)
    cfg.seeds, cfg.resume = fresh, False  # never joins the selection run, whatever its seeds
    cfg.tracking.uri, cfg.tracking.experiment = tracker.uri, tracker.experiment
    print(f"confirming on fresh seeds {seed_list(fresh)} (selected on seeds {seed_list(selection)}) …", flush=True)
    summary = run(cfg, choices=choices, kind="confirmation",
                  tags={"confirmation_of": win["parent_run_id"], "promoted_as": name,
                        "selection_seeds": ",".join(map(str, selection)),
                        "confirmation_seeds": ",".join(map(str, fresh))})
    from hte_bench.compare.leaderboard import seeds_of

    from hte_bench.evaluation import registry

    # The figures are over the seeds that finished (the run's seeds tag), which a failing seed makes fewer; an
    # analysis metric's over the seeds the analyses ran on (its analyses_seeds tag).
    tags = tracker.tags(summary["_parent_run_id"])
    finished = seeds_of(tags.get("seeds") or "none")
    measured = finished
    if registry.on_analysis_seeds(metric) and "analyses_seeds" in tags:
        measured = [s for s in seeds_of(tags["analyses_seeds"]) if s in finished]
    return {"summary": summary, "seeds": measured, "finished": finished, "asked": fresh,
            "run_id": summary["_parent_run_id"]}


def confirmations(tracker, metric: str):
    """Promotion's confirmation runs in the experiment, as a small table (empty when there are none)."""
    import pandas as pd

    from hte_bench.cli.compare import _interval
    from hte_bench.evaluation import registry
    from hte_bench.evaluation.registry import OUTSIDE_MARK, leaves_range
    from hte_bench.tracking import KIND

    runs = tracker.frame(tracker.search(f"tags.`{KIND}` = 'confirmation' and attributes.status = 'FINISHED'"))
    if runs.empty:
        return pd.DataFrame()
    mid = f"metrics.{metric}_mean" if f"metrics.{metric}_mean" in runs else f"metrics.{metric}"
    alphas = sorted({float(a) for a in runs["params.alpha"].dropna()}) if "params.alpha" in runs else [0.05]
    kind = {"share": "Wilson", "rms": ""}.get(registry.summarised_as(metric), "t-interval")
    label = f"{metric} [{'/'.join(registry.level_text(a) for a in alphas) or '95%'} {kind}]" if kind else \
        f"{metric} (root mean square, no interval)"
    return pd.DataFrame({
        "condition": runs.get("tags.condition"), "estimator": runs["tags.estimator"],
        "config_hash": runs["tags.config_hash"], "selection seeds": _readable(runs.get("tags.selection_seeds")),
        # The seeds its figures are over (its seeds tag: those that finished; an analysis metric's: its
        # analyses_seeds tag), not every fresh seed asked for.
        "confirmation seeds": _readable(runs["tags.analyses_seeds"].fillna(runs["tags.seeds"])
                                        if registry.on_analysis_seeds(metric) and "tags.analyses_seeds" in runs
                                        else runs.get("tags.seeds")),
        label: [_interval(r, mid, f"metrics.{metric}_ci_lower", f"metrics.{metric}_ci_upper")
                + (OUTSIDE_MARK if leaves_range(metric, r.get(f"metrics.{metric}_ci_lower"),
                                            r.get(f"metrics.{metric}_ci_upper")) else "")
                for _, r in runs.iterrows()],
        "run": runs["run_id"]})


def _check_gates(args) -> None:
    """Refuse a gate no run could meet or every run meets by definition, in one line (a coverage given in
    percent, a negative count), before anything is read or written."""
    for flag, value in (("--min-ate-coverage", args.min_ate_coverage), ("--min-cate-coverage", args.min_cate_coverage)):
        if value is not None and not 0 <= value <= 1:
            hint = f" (a share: {value / 100:g} for {value:g}%)" if 1 < value <= 100 else ""
            raise ConfigError(f"{flag}={value:g} is not allowed; a coverage gate is a share between 0 and 1{hint}")
    for flag, value, low in (("--max-failed-seeds", args.max_failed_seeds, 0), ("--min-seeds", args.min_seeds, 1)):
        if value is not None and value < low:
            raise ConfigError(f"{flag}={value} is not allowed; give {low} or more")


def _check_config_out(folder: str) -> None:
    """Refuse a --config-out the promoted config could not be written to, before anything is fitted or registered
    (the config is written last, once the champion is registered)."""
    import os

    path = Path(folder)
    if path.suffix.lower() in (".yaml", ".yml"):
        raise ConfigError(f"--config-out={folder} is a file name; give the folder promoted_<name>.yaml goes into "
                          "(default conf/experiment, where hte-bench +experiment=… finds it)")
    existing = next(p for p in (path, *path.parents) if p.exists() or p == Path(p.anchor or "."))
    if not existing.is_dir():
        raise ConfigError(f"--config-out={folder}: {existing} is a file, not a folder")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise ConfigError(f"--config-out={folder}: {existing} is not writable; give a folder you can write to")


def _winner_line(board, win, test: str = "wilcoxon", correction: str = "holm") -> str:
    """Where the winner stands on the board: its rank, and whom it cannot be told from (or that it is worse
    than the best, which a gate removed)."""
    import pandas as pd

    from hte_bench.compare.leaderboard import MIXED

    def name(row) -> str:
        return f"{row['estimator']} {row['overrides']}".strip()

    def p_adj(row) -> str:
        return f"adjusted p = {row['p_vs_best_adj']:.2g}" if pd.notna(row["p_vs_best_adj"]) else "untested"

    text = f"winner: {name(win)} [{win['config_hash']}], rank {win['rank']} of {int(board['rank'].notna().sum())}"
    if win["vs_best"] != "best":
        return (f"{text}, {win['vs_best']} against the best ({p_adj(win)}): every better-ranked configuration "
                "failed a gate above")
    others = board[board["parent_run_id"] != win["parent_run_id"]] if "parent_run_id" in board else board
    # Equal scores share the winner's rank: the tie is said as one (the winner is the first of them in the
    # board's order), not as an untested comparison.
    equal = others[others["rank"].notna() & (others["rank"] == win["rank"])]
    tied = others[others["vs_best"].isin(["tied", "untested"]) & others["rank"].notna() & ~others.index.isin(equal.index)]
    worse = others[others["vs_best"].eq("worse")]
    mixed = others[others["vs_best"].eq(MIXED)]
    if len(equal):
        text += ("; tied with " + ", ".join(name(r) for _, r in equal.iterrows())
                 + " (the same score; the first in the board's order was taken)")
    if len(worse):
        text += "; better than " + ", ".join(f"{name(r)} ({p_adj(r)})" for _, r in worse.iterrows())
    if len(mixed):
        text += ("; better in the mean but worse on most seeds than "
                 + ", ".join(f"{name(r)} ({p_adj(r)})" for _, r in mixed.iterrows()))
    if len(tied):
        text += "; not distinguishable from " + ", ".join(f"{name(r)} ({p_adj(r)})" for _, r in tied.iterrows())
    if others["p_vs_best_adj"].notna().any() or pd.notna(win["p_vs_best_adj"]):
        text += (f" (p: paired {'Wilcoxon signed-rank test' if test == 'wilcoxon' else 't-test'} on seeds "
                 f"{win['compared_on_seeds']}, adjusted by {correction})")
    return text


def _readable(tags):
    """A column of seed tags (``0,1,2,3``) as the boards write seeds (``0-3``)."""
    from hte_bench.compare.leaderboard import readable_seeds

    return None if tags is None else tags.map(lambda t: readable_seeds(t) if isinstance(t, str) else t)


def promote(args) -> None:
    """Choose the winner of one data condition, confirm it on fresh seeds, refit it, register it."""
    from omegaconf import OmegaConf

    from hte_bench.cli.compare import load
    from hte_bench.compare import promote as P
    from hte_bench.compare.leaderboard import build, seeds_of
    from hte_bench.config import seed_list
    from hte_bench.data.base import DataError
    from hte_bench.data.conditions import reads_file_rows
    from hte_bench.runner import CHOICE
    from hte_bench.estimators.base import AdapterError
    from hte_bench.seed import fitted_adapter, seeded_data

    P.check_model_name(args.name)
    current_folder_importable()  # a user's generator, for the confirmation and the refit, as for hte-bench
    if args.csv and not (args.outcome and args.treatment):
        raise ConfigError("--csv needs --outcome and --treatment")
    if args.confirm_seeds is not None and args.confirm_seeds < 0:
        raise ConfigError(f"--confirm-seeds={args.confirm_seeds} is not allowed; give 0 (skip) or more")
    _check_gates(args)
    _check_config_out(args.config_out)
    gates = P.Gates(args.min_ate_coverage, args.max_failed_seeds, args.min_seeds, args.require_significance,
                    args.min_cate_coverage)
    tracker, parents, seeds = load(args)
    board = build(parents, seeds, args.metric, args.test, args.level, args.correction)
    decision = P.choose(board, gates)
    from hte_bench.cli.compare import condition_header

    title, notes = condition_header(board, args.metric, args.test, args.level, args.correction)
    print(f"Candidates in condition '{board['condition'].iloc[0]}' {title.split(' — ', 1)[1].rstrip(' =')}:")
    for note in notes:
        print(f"  {note}")
    for label, why in decision.reasons.items():
        print(f"  {label}: {'; '.join(why)}")
    if decision.winner is None:
        print("nothing qualified for promotion", file=sys.stderr)
        sys.exit(1)
    win = decision.winner
    verdict = _winner_line(board, win, args.test, args.correction)
    print(verdict, flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        config_text = Path(tracker.download(win["parent_run_id"], "config.yaml", tmp)).read_text()
    cfg = OmegaConf.create(config_text)
    alpha = float(cfg.get("alpha", 0.05))
    row = parents.set_index("run_id").loc[win["parent_run_id"]]
    choices = {c[len("tags." + CHOICE):]: row[c] for c in parents.columns
               if c.startswith("tags." + CHOICE) and isinstance(row[c], str)}
    # The seeds it was ranked on (common to the condition's configurations), not every seed it ran.
    selection = seeds_of(win["compared_on_seeds"])
    n_confirm = len(selection) if args.confirm_seeds is None else args.confirm_seeds
    selected = summary_text(args.metric, {k: win.get(k) for k in win.index}, selection, alpha)
    print(f"selection    {args.metric}: {selected} — the seeds it was picked on (optimistic)", flush=True)
    confirmed = confirm(tracker, config_text, choices, win, selection, n_confirm, args.name,
                        args.metric) if n_confirm else None
    if confirmed:
        confirmed["text"] = summary_text(args.metric, confirmed["summary"], confirmed["seeds"], alpha)
        if not confirmed["finished"]:  # nothing confirms it: no alias moves on the selection's figures alone
            raise ConfigError(f"confirmation: every fresh seed ({seed_list(confirmed['asked'])}) failed in run "
                              f"{confirmed['run_id']}; not promoted (see the error tag and traceback.txt of its seed "
                              "runs), or skip the check with --confirm-seeds 0")
        lost = sorted(set(confirmed["asked"]) - set(confirmed["finished"]))
        resplit = reads_file_rows(cfg.data)
        print(f"confirmation {args.metric}: {confirmed['text']} — fresh seeds (run {confirmed['run_id']})"
              + (f"; seeds {seed_list(lost)} failed and are not in it" if lost else "")
              + (f"; {RESPLIT}" if resplit else ""))
        # The gates it passed on the seeds it was chosen on must hold where nothing was chosen.
        failures, passes = P.confirmation_gates(confirmed["summary"], tracker.tags(confirmed["run_id"]), gates, alpha)
        for line in passes:
            print(f"confirmation gate: {line}")
        if failures:
            for line in failures:
                print(f"confirmation gate failed: {line}", file=sys.stderr)
            print(f"not promoted: it passed the gates on the seeds it was selected on ({seed_list(selection)}), not "
                  f"on the fresh seeds {seed_list(confirmed['finished'])} (run {confirmed['run_id']})", file=sys.stderr)
            sys.exit(1)
    else:
        print("confirmation skipped (--confirm-seeds 0): the figures above are the selection's, optimistic")
    try:
        if args.csv:
            from hte_bench.data.csv import read_observed

            X, T, Y = read_observed(args.csv, args.outcome, args.treatment,
                                    args.features.split(",") if args.features else None)
            # The model must take the features its figures were computed with, not whatever the file has.
            try:
                ranked = [str(c) for c in seeded_data(cfg, args.refit_seed)[0].X_train.columns]
            except DataError as err:  # the ranked runs' own data file moved: say so, do not block the refit
                print(f"note: the features the winner was ranked on cannot be read ({err}); the model takes "
                      f"--csv {args.csv}'s features as given")
                ranked = list(X.columns)
            if set(X.columns) != set(ranked):
                raise ConfigError(f"--csv {args.csv}: its features {list(X.columns)} are not the {ranked} the winner "
                                  f"was ranked on; pass --features {','.join(ranked)} (with those columns in the file)")
            X = X[ranked]
            refit_on = f"csv {args.csv}"
        else:
            dataset, _ = seeded_data(cfg, args.refit_seed)
            X, T, Y = dataset.X_train, dataset.T_train, dataset.Y_train
            refit_on = f"{win['condition']} seed {args.refit_seed} (train split)"
        adapter = fitted_adapter(cfg, args.refit_seed, X, T, Y)
    except (DataError, AdapterError) as err:
        raise ConfigError(str(err)) from err
    same = parents[parents["tags.config_hash"] == win["config_hash"]]["run_id"].tolist()
    header = [f"Promoted by hte-bench-promote as model {args.name!r} on {P.stamp()}",
              f"from experiment {args.experiment!r}, config_hash {win['config_hash']}, parent run {win['parent_run_id']}",
              f"Re-run: hte-bench +experiment=promoted_{args.name}  (the seeds it was selected on: "
              f"{','.join(map(str, selection))})",
              "resume: false below: a re-run refits every seed (the reproducibility check) instead of reporting",
              "'already finished'; add resume=true to the command line to reuse finished seeds instead"]
    text = P.experiment_config(config_text, choices or {"data": win["data"], "estimator": win["estimator"]}, header,
                               seeds=selection)
    summary = {k: (None if isinstance(v, float) and not math.isfinite(v) else v)
               for k, v in win.items() if isinstance(v, (int, float, str))}
    seeds_tags = {"selection_seeds": ",".join(map(str, selection)), f"selection_{args.metric}": selected,
                  "confirmation_seeds": ",".join(map(str, confirmed["seeds"])) if confirmed else "none (skipped)",
                  **({f"confirmation_{args.metric}": confirmed["text"], "confirmation_run_id": confirmed["run_id"]}
                     if confirmed else {}),
                  **({"confirmation_caveat": RESPLIT} if confirmed and reads_file_rows(cfg.data) else {})}
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / P.experiment_file(args.name)).write_text(text)
        (Path(tmp) / "decision.json").write_text(json.dumps(
            {"metric": args.metric, "winner": summary, "reasons": decision.reasons, "refit_on": refit_on,
             **seeds_tags}, indent=2))
        board.to_csv(Path(tmp) / "leaderboard.csv", index=False)
        from hte_bench.config import model_dependencies

        packages, code_paths = model_dependencies(cfg)
        res = tracker.register_model(
            args.name, adapter, X, alpha, run_name=f"promote/{args.name}",
            params={"metric": args.metric, "refit_on": refit_on, **{f"gate.{k}": v for k, v in vars(gates).items()}},
            tags={"config_hash": win["config_hash"], "data": win["data"], "condition": win["condition"],
                  "estimator": win["estimator"], **seeds_tags},
            version_tags={"config_hash": win["config_hash"], "source_parent_run_ids": ",".join(same),
                          "condition": win["condition"], "metric": args.metric,
                          "metric_summary": json.dumps(summary), "refit_on": refit_on, "board_verdict": verdict,
                          **seeds_tags},
            artifact_dir=tmp, packages=packages, code_paths=code_paths)
    args.promoted = res  # for the Ctrl-C line: from here the champion has moved
    print(f"promoted {(win['estimator'] + ' ' + win['overrides']).strip()} [{win['config_hash']}] as {res['model_uri']} "
          f"(version {res['version']}; previous champion: {res['previous'] or 'none'})", flush=True)
    try:  # only once the champion is registered: a failed promotion writes no config
        path = P.write_experiment(text, Path(args.config_out), args.name)
    except OSError as err:
        raise ConfigError(f"version {res['version']} of {args.name!r} is the champion, but its config was not "
                          f"written ({err}); {P.experiment_file(args.name)} is an artifact of the promotion run {res['run_id']}") from err
    if path.parent.resolve() == (Path.cwd() / "conf" / "experiment").resolve():
        rerun = f"hte-bench +experiment=promoted_{args.name}"
    elif path.parent.name == "experiment":  # another conf/ tree: put it on Hydra's search path
        rerun = f"hte-bench 'hydra.searchpath=[file://{path.parent.parent.resolve()}]' +experiment=promoted_{args.name}"
    else:  # +experiment= looks in a folder named experiment of a config tree
        rerun = f"copy it into conf/experiment/, then hte-bench +experiment=promoted_{args.name}"
    print(f"config written to {path}; re-run with: {rerun}")
