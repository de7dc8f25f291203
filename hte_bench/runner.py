"""One configuration over its seeds: plan → preflight → evaluate seeds → record. Reads top-down.

``run(cfg)`` is the one owner of failures: bad input (``ConfigError``, raised while planning or by the
first seed's input stages) leaves nothing in the store; a seed that fails later becomes a FAILED seed run
whose error names its stage; an interrupted job closes its configuration run as KILLED.
"""
from __future__ import annotations

import logging
import os
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import numpy as np
import pandas as pd
from omegaconf import DictConfig

from hte_bench import config as C
from hte_bench.callbacks import SWEEP_ENV
from hte_bench.seed import SeedResult, evaluate_seed, preflight_inputs
from hte_bench.tracking import KIND

# Config groups whose chosen option is recorded on the parent run (tag choice.<group>), so a promoted
# configuration can select the same options again.
CHOICE = "choice."
REPLAYED_GROUPS = ("data", "estimator", "outcome_model", "treatment_model")

log = logging.getLogger(__name__)


# --------------------------------------------------------------------------- the job


def run(cfg: DictConfig, choices: Optional[dict[str, str]] = None, job_log: Optional[str] = None,
        kind: str = "config", tags: Optional[dict[str, str]] = None) -> dict:
    """Fit one configuration over its seeds, log parent and seed runs, return the aggregate metrics.

    With ``resume`` (default) a configuration already in the experiment continues in its parent run:
    seeds with a FINISHED seed run are not refitted; seed runs left RUNNING by a killed process become
    KILLED and their seeds are redone. ``kind`` other than ``config`` (promotion's ``confirmation``) keeps
    the run out of resume and rankings; ``tags`` go on the configuration and seed runs.
    """
    plan = make_plan(cfg, choices or {})
    plan.kind, plan.extra_tags = kind, dict(tags or {})
    # Its summary is this command's only if it also counted no failed seed: a seed list that left out a seed
    # an earlier command failed on is summarised again (its failed count would rank it as losing seeds).
    if (plan.previous is not None and not plan.todo and plan.previous.info.status == "FINISHED"
            and plan.previous.data.tags.get("seeds") == C.seed_list(plan.seeds)
            and not plan.previous.data.metrics.get("n_seeds_failed")):
        return _already_done(plan)
    # Otherwise the seeds still missing are fitted, and the configuration run is summarised again over exactly
    # the seeds asked for (those finished ones are reused): its aggregate always says which seeds it is about.
    with tempfile.TemporaryDirectory(prefix="hte-bench-") as workdir, plan.claims:
        seeds = evaluate_seeds(plan, workdir)
        first = preflight(seeds)                 # the first seed, fitted before any run is opened
        # The first seed's claim may have looked the run up already: open_parent says again which run is ours.
        parent, plan.parent_id = None, None
        try:
            parent = open_parent(plan, first)
            results = record_seeds(plan, parent, first, seeds)
            summary = record_configuration(plan, parent, results, workdir, job_log)
        except BaseException:
            # Stopped inside open_parent once the run was ours (plan.parent_id set): it is closed too.
            parent = parent or plan.parent_id
            # A finished run stopped while seeds were being added still holds its summary of the seeds it
            # names (the new seed runs stay, for the next command): it stays FINISHED, so boards keep it.
            kept = (plan.previous is not None and plan.previous.info.status == "FINISHED"
                    and not plan.summarising and plan.previous.info.run_id == parent)
            if parent is not None:
                plan.tracker.end(parent, "FINISHED" if kept else "KILLED")
            if kept:
                log.warning("%s: stopped while adding seeds; run %s keeps its summary of seeds %s", plan.label,
                            parent, plan.previous.data.tags.get("seeds", "?"))
            raise
    if not plan.sweep_id:  # a sweep prints this once, at its end
        log.info("browse: %s", plan.tracker.ui_hint())
    return summary


# --------------------------------------------------------------------------- stage 1: plan


@dataclass
class Plan:
    """What one job will do, decided before anything is fitted: names, hash, seeds, store, resume state."""

    cfg: DictConfig
    choices: dict[str, str]
    tracker: Any
    data_name: str
    estimator_name: str
    config_hash: str
    seeds: list[int]
    previous: Any = None                      # the parent run being resumed, if any
    done: dict = field(default_factory=dict)  # seed -> metrics of seeds already FINISHED there
    todo: list[int] = field(default_factory=list)
    sweep_id: Optional[str] = None
    kind: str = "config"                      # hte_bench.kind of the configuration run
    extra_tags: dict = field(default_factory=dict)
    claims: Any = None                        # this job's claims on the configuration (tracking/claims.py)
    started_ms: int = 0
    parent_id: Optional[str] = None
    summarising: bool = False                 # the configuration run's summary is being rewritten

    @property
    def label(self) -> str:
        return f"{self.data_name}/{self.estimator_name} [{self.config_hash}]"

    @property
    def run_tags(self) -> dict[str, str]:
        from hte_bench.data.conditions import condition_tags

        # The data condition (generator + every data knob): runs are compared only within one.
        return {"data": self.data_name, "estimator": self.estimator_name, "config_hash": self.config_hash,
                **condition_tags(self.cfg, self.data_name), **self.extra_tags}


def make_plan(cfg: DictConfig, choices: dict[str, str]) -> Plan:
    """Check the config, name the configuration, reach the store and find what is already done."""
    from hte_bench.evaluation import registry
    from hte_bench.tracking import Tracker, resolve_uri
    from hte_bench.tracking.claims import coordination, creating_store, open_leases
    from hte_bench.tracking.shared import ConfigClaims, finished_seeds

    C.validate(cfg)
    C.check_packages(cfg, choices)
    registry.load_modules(cfg.get("metric_modules"))  # the user's metrics, known to this process as to workers
    preflight_inputs(cfg, C.seeds_of(cfg)[0])  # bad data or estimator: refused before the store is reached
    resume = cfg.get("resume", True)
    uri = resolve_uri(cfg.tracking.get("uri"))
    where = coordination(cfg, uri)  # where claims live (None: off, or a server without coordination_uri)
    with creating_store(where, uri):
        tracker = Tracker.from_config(cfg.tracking)
    plan = Plan(cfg=cfg, choices=choices, tracker=tracker, data_name=data_name(cfg, choices),
                estimator_name=choices.get("estimator") or str(cfg.estimator._target_).rsplit(".", 1)[-1],
                config_hash=C.config_hash(cfg), seeds=C.seeds_of(cfg), sweep_id=os.environ.get(SWEEP_ENV))
    # resume=false makes a parent of its own: nothing to share, nothing to claim.
    plan.claims = ConfigClaims(open_leases(where) if resume else None, plan.config_hash, plan.label)
    plan.started_ms = int(time.time() * 1000)
    if resume:
        plan.previous, note = _find_parent(plan)
        if note:
            log.warning("resume: %s; starting a new parent (resume=force joins it anyway)", note)
    if plan.previous is not None:
        plan.done = finished_seeds(tracker, plan.previous.info.run_id, plan.seeds, plan.claims)
    plan.todo = [s for s in plan.seeds if s not in plan.done]
    return plan


def data_name(cfg: DictConfig, choices: dict[str, str]) -> str:
    """The data generator's name: the chosen group option, or the generator's own name for a user's
    ``data._target_`` (so its runs are never labelled or ranked as a built-in generator's)."""
    target = str(cfg.data._target_)
    chosen = choices.get("data")
    if chosen and target.startswith("hte_bench.data."):
        return chosen
    module, _, func = target.rpartition(".")
    return module.rsplit(".", 1)[-1] if func == "generate" else target.rsplit(".", 1)[-1]


def _already_done(plan: Plan) -> dict:
    """A configuration whose seeds all finished: nothing refitted, its summary returned."""
    previous = plan.previous
    if plan.sweep_id:
        plan.tracker.attach_to_sweep(previous.info.run_id, plan.sweep_id)
    log.info("%s: all %d seeds already finished in run %s (resume=false to refit)", plan.label,
             len(plan.seeds), previous.info.run_id)
    # The run logs the headline aggregates only; a sweeper may optimise any of aggregate.json's.
    return {**plan.tracker.aggregates(previous.info.run_id), **previous.data.metrics,
            "_parent_run_id": previous.info.run_id, "_label": plan.label}


# --------------------------------------------------------------------------- stage 2: preflight


def preflight(seeds) -> Optional[SeedResult]:
    """The first seed's result, computed before any run exists; its input errors were raised as ConfigError."""
    return next(seeds, None)


def open_parent(plan: Plan, first: Optional[SeedResult]) -> str:
    """Reopen the resumed configuration run or create it (after preflight, so bad input writes nothing)."""
    tracker = plan.tracker
    # plan.parent_id as soon as the run is ours: a Ctrl-C from there on closes it (run).
    if plan.previous is not None:
        parent = plan.parent_id = plan.previous.info.run_id
        if first is not None:  # with nothing to add, a parent another process is finishing is left alone
            tracker.reopen(parent)
    else:
        # One parent per configuration: whoever holds the "parent" claim looks again, then creates it.
        with plan.claims.exclusive("parent"):
            found = _find_parent(plan)[0] if plan.cfg.get("resume", True) else None
            parent = plan.parent_id = found.info.run_id if found is not None else _new_parent(plan, first)
    if plan.sweep_id:
        tracker.attach_to_sweep(parent, plan.sweep_id)
    return parent


def _find_parent(plan: Plan):
    """(the configuration's parent run or None, a note when one exists under other code or library versions)."""
    force = plan.cfg.get("resume", True) == "force"
    return plan.tracker.find_parent(plan.config_hash, None if force else {**plan.tracker.resume_versions(),
                                                                          **_user_code_tags(plan.cfg)})


def _user_code_tags(cfg: DictConfig) -> dict[str, str]:
    """Source hashes of the user's own code that shapes the numbers, and versions of the estimator's libraries
    beyond econml/scikit-learn/statsmodels/numpy, as resume keys and parent tags (none: no tag): their metric
    modules, and their modules the estimator is built from (the generator's file is part of the data condition
    instead, since it makes the truth)."""
    from hte_bench.evaluation import registry

    tags = {"metric_modules_hash": registry.modules_hash(cfg.get("metric_modules")),
            "user_code_hash": C.user_code_hash(cfg), "library_versions": C.library_versions(cfg)}
    return {k: v for k, v in tags.items() if v}


def _new_parent(plan: Plan, first: Optional[SeedResult]) -> str:
    """Create the configuration run (under the "parent" claim, so only once)."""
    tracker = plan.tracker
    truth = {"truth": first.tags["truth"]} if first is not None and "truth" in first.tags else {}
    # Params are immutable and a resume may add seeds: the seed count is a tag set when seeds finish.
    params = {k: v for k, v in C.flatten(plan.cfg).items() if k not in ("n_seeds", "seeds")}
    # A confirmation run (promotion's fresh seeds) must not look like the configuration run it confirms.
    prefix = "" if plan.kind == "config" else f"{plan.kind}/"
    return tracker.start_parent(
        run_name=f"{prefix}{plan.data_name}/{plan.estimator_name}/{plan.config_hash[:6]}", params=params,
        tags={**plan.run_tags, KIND: plan.kind, **tracker.provenance(), **_user_code_tags(plan.cfg), **truth,
              **{f"{CHOICE}{g}": v for g, v in plan.choices.items() if g in REPLAYED_GROUPS}})


# --------------------------------------------------------------------------- stage 3: evaluate seeds


def evaluate_seeds(plan: Plan, workdir: str):
    """Yield SeedResults, serially or in ``n_jobs`` processes; the job's first seed is strict.

    Each seed is claimed just before it is fitted; seeds other processes hold are waited for and reused.
    """
    cfg, pending, strict, title = plan.cfg, list(plan.todo), True, plot_title(plan)
    n_jobs = _seed_jobs(int(cfg.n_jobs))
    while pending:
        seeds = plan.claims.free(pending, lambda seed: _outcome(plan, seed))
        if n_jobs == 1 or len(plan.todo) < 2:
            for seed in seeds:
                # One thread per fit, as in the parallel workers (loky and Ray limit theirs): OpenMP models
                # (HistGradientBoosting) in two processes at once on all cores each, e.g. two terminals or a
                # launcher's parallel jobs, spin-wait for each other and fitted 3-50x slower. Per seed, not
                # around the loop: what runs between the yields (logging, another job) keeps its threads.
                with _one_thread():
                    result = evaluate_seed(cfg, seed, workdir, strict=strict, title=title)
                yield result
                strict = False
        else:
            from hte_bench.backends import evaluate_in_parallel

            # Seeds go to the pool as they are claimed; results come back in order, so a strict failure
            # of the first seed still surfaces before the parent run is opened. Processes here (loky) or
            # Ray tasks: joblib_backend, see hte_bench/backends.py.
            for result in evaluate_in_parallel(cfg, seeds, workdir, n_jobs, strict, title):
                strict = False
                yield result
        if pending:
            plan.claims.wait()


def _seed_jobs(n_jobs: int) -> int:
    """Processes for this job's seeds: ``n_jobs``, except that -1 (all cores, the default) is 1 when a sweep's
    configurations run side by side in Hydra's joblib launcher (its pool times ours overloaded the cores: 8
    processes on 2): launcher n_jobs ≠ 1 and, for an Optuna search, more than one trial per batch. The numbers
    are the same either way; another n_jobs (2, …) is kept."""
    if n_jobs != -1:
        return n_jobs
    from hydra.core.hydra_config import HydraConfig

    if not HydraConfig.initialized():
        return n_jobs
    hydra = HydraConfig.get()
    launcher, sweeper = hydra.launcher, hydra.sweeper
    side_by_side = (str(hydra.get("mode")).endswith("MULTIRUN")
                    and str(launcher.get("_target_", "")).endswith("JoblibLauncher")
                    and launcher.get("n_jobs", -1) not in (1, None) and sweeper.get("n_jobs", 2) != 1)
    return 1 if side_by_side else n_jobs


_THREADPOOLS: list = []


def _one_thread():
    """threadpoolctl's limit to one BLAS/OpenMP thread, from a controller made once per process (finding the
    libraries costs ~5 ms, a limit from the controller ~0.02 ms; they are loaded by the time seeds are fitted:
    numpy's BLAS, scikit-learn's OpenMP)."""
    if not _THREADPOOLS:
        from threadpoolctl import ThreadpoolController

        _THREADPOOLS.append(ThreadpoolController())
    return _THREADPOOLS[0].limit(limits=1)


def _outcome(plan: Plan, seed: int) -> Optional[str]:
    """FINISHED/FAILED if another process already did the seed (checked after claiming it), else None."""
    from hte_bench.tracking.shared import seed_outcome

    if plan.parent_id is None:
        found = plan.previous or _find_parent(plan)[0]
        plan.parent_id = found.info.run_id if found is not None else None
    return seed_outcome(plan.tracker, plan.parent_id, seed, plan.started_ms)


# --------------------------------------------------------------------------- stage 4: record


def record_seeds(plan: Plan, parent: str, first: Optional[SeedResult], rest) -> list[SeedResult]:
    """Log each seed as a complete seed run under the parent as it arrives, with a progress bar."""
    from itertools import chain

    from tqdm import tqdm

    results: list[SeedResult] = []
    if first is None:
        return results
    tags = {**plan.run_tags, KIND: "seed"}
    for result in tqdm(chain([first], rest), total=len(plan.todo), desc=plan.label, unit="seed", leave=False,
                       disable=True if len(plan.todo) < 2 else None):  # None: no bar in a log file (not a tty)
        if not plan.claims.still_mine(result.seed):  # paused past its lease: the new holder writes it
            log.warning("%s: seed %d: lease lost to another run; result discarded", plan.label, result.seed)
            continue
        results.append(result)
        if result.status == "FAILED":  # here, not in the worker: in seed order, and never for a refused job
            log.warning("%s: seed %d failed: %s", plan.label, result.seed, result.tags.get("error", "?"))
        plan.tracker.log_seed(parent, result, tags=tags, alpha=float(plan.cfg.get("alpha", 0.05)))
        plan.claims.done(result.seed)
    return results


def record_configuration(plan: Plan, parent: str, results: list[SeedResult], workdir: str,
                         job_log: Optional[str]) -> dict:
    """Aggregate reused and new seeds, write the parent's files and close it."""
    from hte_bench import artifacts
    from hte_bench.evaluation.aggregate import aggregate

    from hte_bench.tracking import shared

    cfg, tracker = plan.cfg, plan.tracker
    # From the store, not from this job's results: other processes may have fitted some of the seeds.
    # Under the "aggregate" claim, so the parent is written once per set of seed results.
    with plan.claims.exclusive("aggregate"):
        done = shared.finished_seeds(tracker, parent, plan.seeds, plan.claims)
        failed = shared.failed_seeds(tracker, parent, plan.seeds)
        rows = [{"seed": s, **m} for s, m in done.items()]
        per_seed = pd.DataFrame(rows).sort_values("seed").reset_index(drop=True) if rows else pd.DataFrame()
        summary = aggregate(per_seed.drop(columns="seed", errors="ignore"), n_failed=len(failed),
                            alpha=float(cfg.alpha))
        fingerprint = shared.digest(rows, failed)
        resumed = f" (resumed: {len(plan.done)} seeds reused)" if plan.done else ""
        if plan.claims.reused:
            resumed += f" (fitted by another process: seeds {', '.join(map(str, sorted(plan.claims.reused)))})"
        log.info("%s: %s%s%s", plan.label, _one_line_summary(summary, _kinds(plan, results, "interval_kind"),
                                                        float(cfg.alpha)), resumed,
                 _nuisance_count(results))  # before the job log is copied
        if not shared.aggregate_is_current(tracker, parent, fingerprint):
            parent_dir = Path(workdir) / "parent"
            artifacts.write_parent(parent_dir, cfg, per_seed, summary, failed=failed, job_log=job_log,
                                   plots=bool(cfg.tracking.plots), title=plot_title(plan),
                                   interval=_ate_interval(plan, results))
            plan.summarising = True  # from here an interruption leaves a half-written summary: KILLED
            shared.mark_aggregate(tracker, parent, fingerprint)
            ok = [r for r in results if r.status == "FINISHED"]
            tracker.finish_parent(parent, summary, str(parent_dir), "FINISHED" if rows else "FAILED",
                                  tags=_parent_tags(plan, ok, per_seed, summary, failed),
                                  keep=(str(cfg.optimized_metric),), per_seed=per_seed)
            plan.summarising = False  # written and closed: nothing after this makes it half-written
    summary["_parent_run_id"], summary["_label"] = parent, plan.label  # the run's id, and its name in log lines
    return summary


def plot_title(plan: Plan) -> str:
    """What every figure of this configuration names: estimator, configuration (the hash its run name ends
    with: a grid's configurations share the estimator) and data condition."""
    return f"{plan.estimator_name} {plan.config_hash[:6]} on {plan.run_tags['condition']}"


def _kinds(plan: Plan, results: list[SeedResult], tag: str) -> str:
    """The interval kinds (estimators/base.py) of the seeds fitted now, else as the resumed run recorded them."""
    kinds = sorted({r.tags[tag] for r in results if tag in r.tags})
    return ", ".join(kinds) or (plan.previous.data.tags.get(tag, "") if plan.previous is not None else "")


def _ate_interval(plan: Plan, results: list[SeedResult]) -> str:
    """The seeds' ATE interval as the parent's figure names it: level and kind."""
    kind = _kinds(plan, results, "ate_interval_kind")
    return f"{100 * (1 - float(plan.cfg.alpha)):g}% ATE interval" + (f" (kind {kind})" if kind else "")


def _parent_tags(plan: Plan, ok: list[SeedResult], per_seed: pd.DataFrame, summary: dict, failed: list) -> dict:
    """Tags true after any resume: seeds finished, interval kinds of the seeds, the description."""
    from hte_bench.tracking.notes import NOTE, config_note

    before = plan.previous.data.tags if plan.previous is not None else {}
    kinds = {k: ", ".join(sorted({r.tags[k] for r in ok if k in r.tags})) or before.get(k, "")
             for k in ("interval_kind", "ate_interval_kind")}
    finished = per_seed["seed"].tolist() if len(per_seed) else []
    seeds = C.seed_list(finished)
    # The analyses that fit models of their own (analyses.FITTING) run on the first analyses.seeds seeds: their
    # means are over these seeds only, which the description and a tag say.
    from hte_bench.data.conditions import reads_file_rows
    from hte_bench.evaluation import registry
    from hte_bench.evaluation.analyses import FITTING, selected

    fitting_on = set(FITTING) & set(selected(plan.cfg.get("analyses")))
    analysed = [s for s in finished if C.on_first_seeds(plan.cfg, "analyses.seeds", s)]
    measured = [c for c in per_seed.columns if registry.on_analysis_seeds(c)]
    if measured or fitting_on & {"truth_free", "subgroups"}:  # analyses that always log metrics where they ran
        # The seeds that have them: one fitted by an earlier command past its analyses.seeds has none, though it
        # may be among the first seeds of this command's list.
        analysed = per_seed.loc[per_seed[measured].notna().any(axis=1), "seed"].tolist() if measured else []
    analyses_tag = {"analyses_seeds": C.seed_list(analysed) or "none"} if fitting_on else {}
    subset = analyses_tag if len(analysed) < len(finished) else {}  # the description says so when fewer
    what = {"estimator": plan.estimator_name, "seeds": seeds, "code_version": plan.tracker.provenance().get(
        "code_version", "?"), "condition": plan.run_tags["condition"], "kind": plan.kind, "settings": _settings(),
        "resplits": reads_file_rows(plan.cfg.data),
        **kinds, **subset}
    # The tag is written whenever the analyses fit (a tag once set stays: a rerun on fewer seeds must replace it).
    return {"n_seeds": str(len(per_seed)), "seeds": seeds, **{k: v for k, v in kinds.items() if v}, **analyses_tag,
            NOTE: config_note(what, summary, float(plan.cfg.alpha), failed)}


def _settings() -> str:
    """This job's overrides of the estimator and its nuisance models as typed (a grid's or a search's point, e.g.
    ``outcome_model=lasso ++estimator.model.cv=3``): the description names them beside the estimator."""
    from hydra.core.hydra_config import HydraConfig

    if not HydraConfig.initialized():
        return ""
    return " ".join(o for o in HydraConfig.get().overrides.task
                    if "=" in o and not o.startswith("~") and o.lstrip("+").split("=")[0] != "estimator"
                    and o.lstrip("+").split("=")[0].split(".")[0] in ("estimator", "outcome_model", "treatment_model"))


def _nuisance_count(results: list[SeedResult]) -> str:
    """How many seeds fitted their DR nuisances and how many read them from the cache (tag dr_nuisances_cached)."""
    flags = [r.tags.get("dr_nuisances_cached") for r in results]
    hits, fits = flags.count("true"), flags.count("false")
    return f"; DR nuisances: {fits} fitted, {hits} from the cache" if hits or fits else ""


def _one_line_summary(summary: dict, interval_kind: str = "", alpha: float = 0.05) -> str:
    """The configuration's log line: seeds, means across them, and the coverages with what backs them."""
    from hte_bench.compare.study import PER_UNIT_VALID

    def f(key: str) -> str:
        v = summary.get(key, float("nan"))
        return "nan" if v is None or not np.isfinite(v) else f"{v:.4g}"

    ok = int(summary.get("n_seeds_ok", 0))
    seeds = f"seeds ok {ok}, failed {int(summary.get('n_seeds_failed', 0))}"
    if not ok:
        return f"{seeds}; every seed failed: see the error tag and traceback.txt of each seed run"
    if "ate_true_mean" not in summary:
        return f"{seeds}; no true tau: ATE estimate {f('ate_hat_mean')} (truth metrics absent)"
    from hte_bench.evaluation import registry

    level = registry.level_text(alpha)
    covered = summary.get("ate_coverage_rate")
    if covered is None or not np.isfinite(covered):
        ate_cov = "ATE coverage n/a (no ATE interval)"
    else:  # a share of seeds: its Wilson interval says how little 3 seeds tell
        ate_cov = (f"ATE coverage {f('ate_coverage_rate')} ({level} Wilson "
                   f"[{f('ate_coverage_rate_ci_lower')}, {f('ate_coverage_rate_ci_upper')}])")
    kinds = [k.strip() for k in interval_kind.split(",") if k.strip()]
    if kinds == ["none"]:
        cate_cov = "CATE coverage test n/a (no interval)"
    elif kinds and not set(kinds) <= set(PER_UNIT_VALID):  # a broadcast ATE interval claims nothing per unit
        cate_cov = f"CATE coverage test n/a: {interval_kind} intervals ({f('cate_coverage_test_mean')})"
    else:
        cate_cov = f"CATE coverage test {f('cate_coverage_test_mean')}"
    return (f"{seeds}; means over them: √PEHE test {f('cate_rmse_test_mean')}, ATE bias {f('ate_bias_mean')}, "
            f"{cate_cov}; {ate_cov}")
