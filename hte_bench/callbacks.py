"""Hydra callbacks: one MLflow run per multirun sweep, above the configuration runs it launched."""
from __future__ import annotations

import atexit
import logging
import math
import os
import sys
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

log = logging.getLogger(__name__)

# The sweep run's id reaches every job (in-process or in launcher worker processes) through the
# environment, set before any job starts.
SWEEP_ENV = "HTE_BENCH_SWEEP_RUN_ID"
_BAR: dict[str, Any] = {}
SUMMARY_FAILED: list[str] = []  # the sweep summary's error, if it raised (cli.run then exits 1)


class SweepRun(Callback):
    """Creates the store once and a sweep run before any job; at the end tags it with the best configuration."""

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        from hte_bench.errors import ConfigError
        from hte_bench.tracking import Tracker, resolve_uri
        from hte_bench.tracking.claims import claims_tag, coordination, creating_store, open_leases
        from hte_bench.tracking.remote import check_remote_tracking
        from hte_bench.tracking.shared import close_expired_sweeps

        try:
            check_sweep_groups(config)  # before the store or any folder is touched
            check_remote_tracking(config)  # SLURM or a Ray cluster: no local SQLite file
            _check_objective(config)  # a per-seed or context metric: refused before Hydra launches a job
            _check_search(config)  # an Optuna search's direction and searched keys: before the store is made
        except ConfigError as err:
            # Hydra turns a callback's exception into a warning and sweeps on: stop here, in one line.
            print(f"hte-bench: error: {err}", file=sys.stderr, flush=True)
            raise SystemExit(2)
        try:
            # Store creation (SQLite migrations) happens here, once, not racing in parallel jobs.
            where = coordination(config, resolve_uri(config.tracking.get("uri")))
            with creating_store(where, resolve_uri(config.tracking.get("uri"))):
                tracker = Tracker.from_config(config.tracking)
            leases = open_leases(where)
        except ConfigError as err:
            if any(o.split("=", 1)[0].lstrip("+~").startswith("tracking.") and "," in o
                   for o in config.hydra.overrides.task):
                return  # the store itself is swept: each job reports its own, in one line
            # Hydra turns a callback's exception into a warning and sweeps on: stop here, in one line
            # (not once per job, each waiting for the same dead server).
            print(f"hte-bench: error: {err}", file=sys.stderr, flush=True)
            raise SystemExit(2)
        # The sweep run holds a lease while the sweep lives; one whose lease expired was killed.
        close_expired_sweeps(tracker, leases)
        overrides = list(config.hydra.overrides.task)
        run_id = tracker.start_sweep(overrides, sweeper=str(config.hydra.sweeper._target_),
                                     metric=str(config.optimized_metric), claims=claims_tag(leases))
        if leases is not None:
            leases.take(run_id, "sweep")
        os.environ[SWEEP_ENV] = run_id
        _OPEN_SWEEP[:] = [(tracker, run_id, str(config.hydra.sweep.dir))]
        # Hydra skips on_multirun_end when the sweeper itself raises: close the run as FAILED at exit.
        atexit.register(_close_if_open, tracker, run_id)
        from tqdm import tqdm

        # Counts jobs finished in this process (the default launcher); worker launchers log per job.
        # On stdout, beside Hydra's job lines: stderr keeps one-line errors readable. Kept outside the
        # callback object, which launchers pickle to their workers.
        # disable=None: no bar when stdout is not a terminal (a log file, CI), where its redraws mix with the lines.
        _BAR[run_id] = tqdm(desc="sweep", unit="config", leave=False, file=sys.stdout, total=sweep_size(config),
                            disable=None)

    def on_job_start(self, config: DictConfig, **kwargs: Any) -> None:
        from tqdm.contrib.logging import logging_redirect_tqdm

        # Hydra has just set up this job's console handler: route it through tqdm.write so log lines
        # clear the progress bars instead of sharing their line. Not exited: the next job's logging
        # setup replaces the handler, and lines Hydra logs between jobs still pass through tqdm.
        logging_redirect_tqdm().__enter__()

    def on_job_end(self, config: DictConfig, job_return: Any, **kwargs: Any) -> None:
        bar = _BAR.get(os.environ.get(SWEEP_ENV, ""))
        if bar is not None:
            bar.update()

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        run_id = os.environ.pop(SWEEP_ENV, None)
        if not run_id:
            return
        try:
            self._end_sweep(config, run_id)
        except Exception as err:  # noqa: BLE001 — Hydra would only warn and exit 0
            # The sweep's summary is the study's answer: its failure must fail the command (cli.run exits 1),
            # and the sweep run must not stay RUNNING. The configuration runs are kept.
            log.exception("sweep %s: its summary failed", run_id)
            SUMMARY_FAILED.append(f"{type(err).__name__}: {err}")
            try:
                from hte_bench.tracking import Tracker

                tracker = Tracker.from_config(config.tracking)
                tracker.end(run_id, "FAILED")
                _end_lease(config, tracker, run_id)  # else the sweep's lease stays until it expires
            except Exception:  # noqa: BLE001 — the store may be what failed; the first error is the one to say
                pass

    def _end_sweep(self, config: DictConfig, run_id: str) -> None:
        """Rank the sweep's configurations, tag and describe its run with the best, print the summary."""
        from hte_bench.errors import ConfigError
        from hte_bench.evaluation import registry
        from hte_bench.tracking import Tracker

        bar = _BAR.pop(run_id, None)
        if bar is not None:
            bar.close()
        import tempfile

        metric = str(config.optimized_metric)
        try:
            how = registry.objective(metric)[1]
        except ConfigError as err:  # every job already said so in one line
            how, metric = str(err), ""

        def loss(value: float, run_alpha: float) -> float:  # lower is better, whatever direction or target
            # Each run at its own alpha: a sweep over alpha has a coverage target per configuration.
            return registry.aggregate_loss(metric, value, run_alpha) if metric else float("nan")

        tracker = Tracker.from_config(config.tracking)
        if not tracker.sweep_parents(run_id):
            # Every job was refused before opening a run, each in one line: bad input leaves nothing in the
            # store, so the empty sweep run goes too (MLflow's delete: hidden everywhere, `mlflow gc` purges).
            tracker.discard(run_id)
            return
        with tempfile.TemporaryDirectory() as tmp:
            bests = _sweep_report(tracker, run_id, metric, tmp)
            tags = _best_tags(bests, metric)
            # Several data conditions: a best per condition (tags best_config/<condition_hash>), never one
            # pooled across them, so no configuration-wide best is picked below.
            pooled = len(bests) <= 1
            best = tracker.finish_sweep(run_id, metric, loss if pooled else (lambda v, a: float("nan")), how,
                                        artifact_dir=tmp, tags=tags)
        _end_lease(config, tracker, run_id)
        from hte_bench.tracking.notes import sweep_rows, tied_with

        top = sweep_rows(tracker.sweep_parents(run_id), metric) if metric else []
        if best:
            tied = tied_with(top, best["parent_run_id"])
            log.info("sweep %s: best %s among this command's configurations = %s (%s, parent run %s)%s", run_id, metric,
                     _value_on_seeds(top, best["parent_run_id"], best["value"], metric), best["label"],
                     best["parent_run_id"], f"; tied with {', '.join(tied)}" if tied else "")
        elif not pooled:
            for _, row in bests.iterrows():
                log.info("sweep %s: best %s in condition %r = %s (%s)", run_id, metric, row["condition"],
                         _value_on_seeds(top, row["parent_run_id"], row[metric], metric), row["best_config"])
        if metric:
            print_summary(top, metric, how)
        log.info("browse: %s", tracker.ui_hint())


def sweep_size(config: DictConfig) -> Any:
    """How many jobs the sweeper will launch: Optuna's n_trials, the basic sweeper's product of its
    sweeps (task overrides and ``hydra.sweeper.params``); None when it cannot be known beforehand."""
    sweeper = config.hydra.sweeper
    if sweeper.get("n_trials") is not None:
        return int(sweeper.n_trials)
    if not str(sweeper.get("_target_", "")).endswith("BasicSweeper"):
        return None
    try:
        from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
        from hydra.core.global_hydra import GlobalHydra
        from hydra.core.override_parser.overrides_parser import OverridesParser

        loader = GlobalHydra.instance().config_loader() if GlobalHydra.instance().is_initialized() else None
        params = [f"{k}={v}" for k, v in (sweeper.get("params") or {}).items()]
        overrides = OverridesParser.create(config_loader=loader).parse_overrides(
            params + list(config.hydra.overrides.task))
        return sum(len(batch) for batch in BasicSweeper.split_arguments(overrides, None))
    except Exception:  # an override only the sweeper itself can expand: a bar without total
        return None


def _interval_kind(metric: str) -> str:
    """What the interval of a sweep's aggregate ``metric`` is."""
    from hte_bench.evaluation import registry

    return {"share": "Wilson interval of the share of seeds",
            "rms": "no interval: a root mean square over the seeds"}.get(
        registry.summarised_as(metric), "t-interval across each configuration's seeds")


def _value_on_seeds(top: list[dict], parent_id: str, value: float, metric: str) -> str:
    """A best configuration's value as the log line gives it: ``0.41 [0.39, 0.43] (95% t-interval …, seeds
    0-7)``, from its row of the sweep summary (the value alone if the run has no row)."""
    from hte_bench.evaluation.registry import level_text
    from hte_bench.tracking.notes import fmt, marked_interval

    row = next((r for r in top if r["run_id"] == parent_id), None)
    if row is None:
        return fmt(value, 4)
    span = marked_interval(metric, row["lo"], row["hi"])
    where = f"seeds {row['seed_list']}" if row.get("seed_list") else f"{row['seeds']} seeds"
    if span == "–":
        return f"{fmt(value, 4)} (no interval; {where})"
    return f"{fmt(value, 4)} {span} ({level_text(row['alpha'])} {_interval_kind(metric)}, {where})"


def print_summary(top: list[dict], metric: str, how: str) -> None:
    """The sweep's leading configurations per data condition, best first, as a table on stdout."""
    import pandas as pd

    if not top:
        return
    from hte_bench.evaluation.registry import OUTSIDE_MARK, OUTSIDE_NOTE, level_text
    from hte_bench.tracking.notes import fmt, marked_interval

    table = pd.DataFrame([{"condition": r["condition"], "rank": r["rank"], "configuration": r["run_name"],
                           "settings": r.get("settings") or "",
                           metric: fmt(r["value"], 4), "interval": marked_interval(metric, r["lo"], r["hi"]),
                           "seeds": r.get("seed_list") or ("none finished" if not r["seeds"] else "?"),
                           "ok/failed": f"{r['seeds']}/{r['failed']}", "alpha": r["alpha"]} for r in top])
    levels = sorted({r["alpha"] for r in top}, reverse=True)
    # Configurations at several alphas (alpha swept): each row's interval at its own level, said per row.
    level = level_text(levels[0]) if len(levels) == 1 else "each row's own (level column)"
    print(f"\nsweep summary: {how} (interval: {level} {_interval_kind(metric)}; ranks among this "
          f"sweep's configurations, within a data condition)", flush=True)
    if len(levels) == 1:
        table = table.drop(columns="alpha")
    else:
        table = table.assign(level=table.pop("alpha").map(level_text))
    if not table["settings"].astype(bool).any():  # not a grid or search: the configuration names say it
        table = table.drop(columns="settings")
    for condition, rows in table.groupby("condition", sort=True):
        print(f"\n{condition}\n" + rows.drop(columns="condition").to_string(index=False), flush=True)
    from hte_bench.evaluation import registry

    valued = [r for r in top if math.isfinite(r["value"])]
    notes = []
    if any(marked_interval(metric, r["lo"], r["hi"]) == "–" for r in valued):
        notes.append("–: no interval (a root mean square)" if registry.summarised_as(metric) == "rms" else
                     "–: one seed, no interval (and no comparison can be tested on it)")
    if len(valued) < len(top):
        notes.append("a rank of –: no value (every seed failed, the metric needs a true effect these data lack, or "
                     "the estimator gives no intervals for a coverage metric: its description says why)")
    if any(r["failed"] and r["seeds"] for r in valued):
        notes.append("a configuration with failed seeds ranks after every one that fitted all of its seeds: its "
                     "value leaves out the seeds it failed on (and a sweeper got none from it)")
    if notes:
        print("\n" + "; ".join(notes), flush=True)
    finished_rows = [r for r in top if r["seeds"]]
    if finished_rows and all(not math.isfinite(r["value"]) for r in finished_rows):
        if registry.is_registered(metric) and registry.spec(metric).needs_truth:
            print(f"No configuration has {metric}: it needs the true effect, which these data do not give "
                  "(e.g. a CSV without data.tau). Rank them by a truth-free score: hte-bench-leaderboard --metric "
                  "rscore, or optimized_metric=rscore_mean in the sweep.", flush=True)
    if table["interval"].str.endswith(OUTSIDE_MARK).any():
        print(OUTSIDE_NOTE, flush=True)
    finished = table[table["seeds"] != "none finished"]  # a configuration whose every seed failed summarises none
    if finished.groupby("condition")["seeds"].nunique().gt(1).any():
        print("Configurations of one condition summarise different seeds here (failed seeds, or resumed with other "
              "n_seeds/seeds), so their means are not on the same draws: "
              "hte-bench-leaderboard compares them on their common seeds.", flush=True)
    print(flush=True)


def _check_objective(config: DictConfig) -> None:
    """The sweep's optimized_metric must be an aggregate a sweeper can optimise (registry.objective), with the
    user's metric modules known; every job would refuse it anyway, after Hydra's launch lines."""
    from hte_bench.evaluation import registry

    metric = str(config.get("optimized_metric", ""))
    if metric and "," not in metric:  # a swept objective is each job's to check
        registry.load_modules(config.get("metric_modules"))
        registry.objective(metric)


def _check_search(config: DictConfig) -> None:
    """An Optuna search (hydra/sweeper=hte_optuna) that contradicts its objective's direction or searches a data
    knob, the seeds or alpha: refused now, in the sweeper's words, so a fresh folder is left without a store."""
    if not str(config.hydra.sweeper.get("_target_", "")).endswith("HteOptunaSweeper"):
        return
    from hydra_plugins.hte_bench_optuna_sweeper._impl import (SweeperConfigError, params_to_overrides,
                                                              parse_search_space, refuse_condition_knobs,
                                                              resolve_direction)

    from hte_bench.errors import ConfigError

    try:
        from hydra.core.global_hydra import GlobalHydra

        loader = GlobalHydra.instance().config_loader() if GlobalHydra.instance().is_initialized() else None
        space = parse_search_space(params_to_overrides(config.hydra.sweeper.get("params"))
                                   + list(config.hydra.overrides.task), config_loader=loader)
    except Exception:  # a search space only the sweeper can read, or cannot: its own message, later
        return
    try:
        refuse_condition_knobs(space)
        resolve_direction(config.hydra.sweeper.get("direction"), config)
    except SweeperConfigError as err:
        raise ConfigError(str(err)) from None
    from hte_bench.data.conditions import reads_file_rows
    from hte_bench.evaluation import registry

    metric = str(config.get("optimized_metric"))
    data = config.get("data") or {}
    if (reads_file_rows(data) and not data.get("tau")
            and registry.is_registered(metric) and registry.spec(metric).needs_truth):
        # Every trial would fit and then return NaN (FAILED), the search ending with no trial completed.
        raise ConfigError(f"optimized_metric={metric} needs the true effect, which this CSV does not give "
                          f"(no data.tau): search on a truth-free score, e.g. optimized_metric=rscore_mean")


def check_sweep_groups(config: DictConfig) -> None:
    """Refuse a swept group option that does not exist, in one line, before any job or run starts.

    Asks Hydra's own config loader (its search path, the user's ./conf and ``hydra.searchpath`` included).
    """
    import difflib

    from hydra.core.global_hydra import GlobalHydra
    from hydra.core.override_parser.overrides_parser import OverridesParser

    from hte_bench.errors import ConfigError

    if not GlobalHydra.instance().is_initialized():
        return
    loader = GlobalHydra.instance().config_loader()
    hydra_overrides = list(config.hydra.overrides.hydra)
    for ov in OverridesParser.create().parse_overrides(list(config.hydra.overrides.task)):
        if ov.is_delete():
            continue
        if "." in ov.key_or_group:
            _check_swept_numbers(config, ov)
            continue
        try:
            options = loader.get_group_options(ov.key_or_group, config_name="config", overrides=hydra_overrides)
            values = list(ov.sweep_string_iterator()) if ov.is_sweep_override() else [ov.get_value_element_as_str()]
        except Exception:  # glob()/interval() sweeps and non-group keys: Hydra checks those itself
            continue
        bad = [v for v in values if options and v not in options and v != "null"]
        if bad:
            close = difflib.get_close_matches(bad[0], options, n=1)
            hint = f" (did you mean {ov.key_or_group}={close[0]}?)" if close else ""
            raise ConfigError(f"{ov.key_or_group}={bad[0]} is not an option{hint}; allowed {ov.key_or_group} "
                              f"options: {', '.join(options)}")


def _check_swept_numbers(config: DictConfig, ov) -> None:
    """A swept value that is text where the key holds a number (``data.noise=0.5,2.O``) would fail its job only
    after the others had run and written: refuse it before the sweep starts."""
    from omegaconf import OmegaConf

    from hte_bench.errors import ConfigError

    default = OmegaConf.select(config, ov.key_or_group, default=None)
    if not ov.is_sweep_override() or isinstance(default, bool) or not isinstance(default, (int, float)):
        return
    try:
        values = list(ov.sweep_iterator())
    except Exception:  # a sweep only the sweeper can expand (interval(), a custom sweeper's syntax)
        return
    text = [v for v in values if isinstance(v, str)]
    if text:
        raise ConfigError(f"{ov.key_or_group}={text[0]} is not a number ({ov.key_or_group} is {default!r} by "
                          f"default); give numbers, e.g. {ov.key_or_group}={default},{default * 2}")


def _sweep_report(tracker, sweep_id: str, metric: str, out: str):
    """Files of the sweep run: the best per data condition, the study figure of each swept data knob, the
    configurations ranked by true √PEHE within each condition and how each truth-free score would have
    chosen. Returns the best per condition."""
    from pathlib import Path

    import pandas as pd

    from hte_bench.compare import study
    from hte_bench.compare.leaderboard import build, selector_validation, summarised_seeds

    parents = tracker.frame(tracker.sweep_parents(sweep_id))
    if parents.empty:
        return pd.DataFrame()
    bests = study.best_per_condition(parents, metric) if metric else pd.DataFrame()
    if len(bests):
        bests.to_csv(Path(out) / "best_per_condition.csv", index=False)
    # The seeds each configuration run summarises, as the leaderboard command reads them.
    seeds = summarised_seeds(parents, tracker.frame(tracker.seed_runs(parents["run_id"].tolist())))
    try:
        _study_figures(parents, seeds, metric, Path(out))
    except Exception:  # a figure must not leave the sweep run open; the runs themselves are complete
        log.warning("sweep %s: the study figure could not be drawn", sweep_id, exc_info=True)
    if "metrics.cate_rmse_test_mean" in parents:  # without truth (user data) nothing judges the selectors
        board = build(parents, seeds, "cate_rmse_test")
        board.to_csv(Path(out) / "leaderboard.csv", index=False)
        selectors = selector_validation(board, parents, seeds)
        if len(selectors):
            selectors.to_csv(Path(out) / "selector_validation.csv", index=False)
    return bests


def _study_figures(parents, seeds, metric: str, out) -> None:
    """For each data knob the sweep varied: ``metric`` (per seed) against the knob, one line per configuration."""
    from hte_bench.compare import study
    from hte_bench.evaluation import registry

    if not metric or registry.spec(metric).level != "seed" or not len(seeds):
        return  # a metric that exists only across seeds has no per-seed interval to draw
    base = registry.split_name(metric)[0]
    for knob in study.knobs_varying(parents):
        level = study.runs_level(parents)
        study.save_study_figures(study.study_table(parents, seeds, base, knob, level=level), knob, base, out, level)


def _best_tags(bests, metric: str) -> dict[str, str]:
    """Sweep-run tags naming the best configuration of each data condition (and which condition it is)."""
    if not len(bests):
        return {}
    if len(bests) == 1:
        row = bests.iloc[0]
        return {"best_condition": row["condition"], "best_condition_hash": row["condition_hash"]}
    tags = {"n_conditions": str(len(bests)),
            "best_config": f"one per data condition ({len(bests)}): tags best_config/<condition_hash>, "
                           f"best_per_condition.csv"}
    for _, row in bests.iterrows():
        tags[f"best_config/{row['condition_hash']}"] = (
            f"{row['best_config']} [{row['config_hash']}]: {metric} = {row[metric]:.4g} in condition "
            f"'{row['condition']}' (parent run {row['parent_run_id']})")
    return tags


def _end_lease(config: DictConfig, tracker, run_id: str) -> None:
    """Give up this sweep's lease; close sweeps whose lease expired while this one ran (a kill -9 rerun)."""
    from hte_bench.tracking.claims import coordination, open_leases
    from hte_bench.tracking.shared import close_expired_sweeps

    leases = open_leases(coordination(config, tracker.uri))
    if leases is not None:
        leases.release(run_id, "sweep")
    close_expired_sweeps(tracker, leases)


_OPEN_AT_EXIT = ["FAILED"]  # how a sweep run still open at exit ends: FAILED, KILLED after Ctrl-C, or REFUSED
_OPEN_SWEEP: list[tuple] = []  # (tracker, run id, Hydra's hydra.sweep.dir) of this process's sweep, once started


def mark_interrupted() -> None:
    """Ctrl-C (cli.run): a sweep run still open at exit is closed KILLED, as its configuration runs are; the
    sweep's progress bar is cleared so that the line saying so starts a line of its own."""
    _OPEN_AT_EXIT[0] = "KILLED"
    for bar in list(_BAR.values()):
        bar.close()


def mark_refused() -> list[str]:
    """Bad input stopped the sweep (cli.run, after its one line): a sweep run still open at exit with no
    configuration run under it is discarded, as when every job was refused. Returns the sweep's output folder."""
    _OPEN_AT_EXIT[0] = "REFUSED"
    for tracker, run_id, _ in _OPEN_SWEEP:  # now, not at exit: the one line is the last thing this run does
        _close_if_open(tracker, run_id)
    return [folder for _, _, folder in _OPEN_SWEEP]


def _close_if_open(tracker, run_id: str) -> None:
    """Close a sweep run that ended without on_multirun_end: FAILED (the sweeper raised), KILLED (Ctrl-C), or
    discarded when bad input stopped it before any configuration run."""
    if os.environ.get(SWEEP_ENV) != run_id:
        return
    os.environ.pop(SWEEP_ENV)
    if _OPEN_AT_EXIT[0] == "REFUSED" and not tracker.sweep_parents(run_id):
        tracker.discard(run_id)
    else:  # a refused sweep that had written configuration runs stays, FAILED
        tracker.end(run_id, "FAILED" if _OPEN_AT_EXIT[0] == "REFUSED" else _OPEN_AT_EXIT[0])
