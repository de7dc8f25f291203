"""One configuration over its seeds: plan → preflight → evaluate seeds → record. Reads top-down.

``run(cfg)`` is the one owner of failures: bad input (``ConfigError``, raised while planning or by the
first seed's input stages) leaves nothing in the store; a seed that fails later becomes a FAILED seed run
whose error names its stage; an interrupted job closes its configuration run as KILLED.
"""
from __future__ import annotations

import logging
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import numpy as np
import pandas as pd
from omegaconf import DictConfig

from hte_bench import config as C
from hte_bench.callbacks import SWEEP_ENV
from hte_bench.seed import SeedResult, evaluate_seed
from hte_bench.tracking import KIND

# Config groups whose chosen option is recorded on the parent run (tag choice.<group>), so a promoted
# configuration can select the same options again.
CHOICE = "choice."
REPLAYED_GROUPS = ("data", "estimator", "outcome_model", "treatment_model")

log = logging.getLogger(__name__)


# --------------------------------------------------------------------------- the job


def run(cfg: DictConfig, choices: Optional[dict[str, str]] = None, job_log: Optional[str] = None) -> dict:
    """Fit one configuration over its seeds, log parent and seed runs, return the aggregate metrics.

    With ``resume`` (default) a configuration already in the experiment continues in its parent run:
    seeds with a FINISHED seed run are not refitted; seed runs left RUNNING by a killed process become
    KILLED and their seeds are redone.
    """
    plan = make_plan(cfg, choices or {})
    if plan.previous is not None and not plan.todo and plan.previous.info.status == "FINISHED":
        return _already_done(plan)
    with tempfile.TemporaryDirectory(prefix="hte-bench-") as workdir:
        seeds = evaluate_seeds(plan, workdir)
        first = preflight(seeds)                 # the first seed, fitted before any run is opened
        parent = open_parent(plan, first)
        try:
            results = record_seeds(plan, parent, first, seeds)
            summary = record_configuration(plan, parent, results, workdir, job_log)
        except BaseException:
            plan.tracker.end(parent, "KILLED")
            raise
    resumed = f" (resumed: {len(plan.done)} seeds reused)" if plan.done else ""
    log.info("%s: %s%s%s", plan.label, _one_line_summary(summary), resumed, _nuisance_count(results))
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

    @property
    def label(self) -> str:
        return f"{self.data_name}/{self.estimator_name} [{self.config_hash}]"

    @property
    def run_tags(self) -> dict[str, str]:
        return {"data": self.data_name, "estimator": self.estimator_name, "config_hash": self.config_hash}


def make_plan(cfg: DictConfig, choices: dict[str, str]) -> Plan:
    """Check the config, name the configuration, reach the store and find what is already done."""
    from hte_bench.tracking import Tracker

    C.validate(cfg)
    tracker = Tracker.from_config(cfg.tracking)
    plan = Plan(cfg=cfg, choices=choices, tracker=tracker, data_name=data_name(cfg, choices),
                estimator_name=choices.get("estimator") or str(cfg.estimator._target_).rsplit(".", 1)[-1],
                config_hash=C.config_hash(cfg), seeds=C.seeds_of(cfg), sweep_id=os.environ.get(SWEEP_ENV))
    resume = cfg.get("resume", True)
    if resume:
        # A parent fitted by other code or library versions is not joined unless resume=force.
        plan.previous, note = tracker.find_parent(
            plan.config_hash, None if resume == "force" else tracker.resume_versions())
        if note:
            log.warning("resume: %s; starting a new parent (resume=force joins it anyway)", note)
    if plan.previous is not None:
        plan.done = tracker.resume_state(plan.previous.info.run_id, plan.seeds)
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
    return {**previous.data.metrics, "_parent_run_id": previous.info.run_id}


# --------------------------------------------------------------------------- stage 2: preflight


def preflight(seeds) -> Optional[SeedResult]:
    """The first seed's result, computed before any run exists; its input errors were raised as ConfigError."""
    return next(seeds, None)


def open_parent(plan: Plan, first: Optional[SeedResult]) -> str:
    """Reopen the resumed configuration run or create it (after preflight, so bad input writes nothing)."""
    tracker = plan.tracker
    if plan.previous is not None:
        parent = plan.previous.info.run_id
        tracker.reopen(parent)
    else:
        truth = {"truth": first.tags["truth"]} if first is not None and "truth" in first.tags else {}
        parent = tracker.start_parent(
            run_name=f"{plan.data_name}/{plan.estimator_name}/{plan.config_hash[:6]}",
            params=C.flatten(plan.cfg),
            tags={**plan.run_tags, KIND: "config", "n_seeds": str(len(plan.seeds)),
                  **tracker.provenance(), **truth,
                  **{f"{CHOICE}{g}": v for g, v in plan.choices.items() if g in REPLAYED_GROUPS}})
    if plan.sweep_id:
        tracker.attach_to_sweep(parent, plan.sweep_id)
    return parent


# --------------------------------------------------------------------------- stage 3: evaluate seeds


def evaluate_seeds(plan: Plan, workdir: str):
    """Yield SeedResults in seed order, serially or in ``n_jobs`` processes; the first seed is strict."""
    cfg, seeds = plan.cfg, plan.todo
    n_jobs = int(cfg.n_jobs)
    if n_jobs == 1 or len(seeds) < 2:
        for i, seed in enumerate(seeds):
            yield evaluate_seed(cfg, seed, workdir, strict=i == 0)
        return
    from joblib import Parallel, delayed

    # All seeds go to the pool at once; results come back in order, so a strict failure of the first
    # seed still surfaces before the parent run is opened.
    yield from Parallel(n_jobs=n_jobs, return_as="generator")(
        delayed(evaluate_seed)(cfg, seed, workdir, i == 0) for i, seed in enumerate(seeds))


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
                       disable=len(plan.todo) < 2):
        results.append(result)
        plan.tracker.log_seed(parent, result, tags=tags)
    return results


def record_configuration(plan: Plan, parent: str, results: list[SeedResult], workdir: str,
                         job_log: Optional[str]) -> dict:
    """Aggregate reused and new seeds, write the parent's files and close it."""
    from hte_bench import artifacts
    from hte_bench.evaluation.metrics import aggregate

    cfg = plan.cfg
    ok = [r for r in results if r.status == "FINISHED"]
    rows = [{"seed": s, **m} for s, m in plan.done.items()] + [{"seed": r.seed, **r.metrics} for r in ok]
    per_seed = pd.DataFrame(rows).sort_values("seed").reset_index(drop=True) if rows else pd.DataFrame()
    summary = aggregate(per_seed.drop(columns="seed", errors="ignore"), n_failed=len(results) - len(ok),
                        alpha=float(cfg.alpha))
    parent_dir = Path(workdir) / "parent"
    failed = [r.seed for r in results if r.status != "FINISHED"]
    artifacts.write_parent(parent_dir, cfg, per_seed, summary, failed=failed, job_log=job_log,
                           plots=bool(cfg.tracking.plots))
    plan.tracker.finish_parent(parent, summary, str(parent_dir), "FINISHED" if rows else "FAILED")
    summary["_parent_run_id"] = parent
    return summary


def _nuisance_count(results: list[SeedResult]) -> str:
    """How many seeds fitted their DR nuisances and how many read them from the cache (tag dr_nuisances_cached)."""
    flags = [r.tags.get("dr_nuisances_cached") for r in results]
    hits, fits = flags.count("true"), flags.count("false")
    return f"; DR nuisances: {fits} fitted, {hits} from the cache" if hits or fits else ""


def _one_line_summary(summary: dict) -> str:
    def f(key: str) -> str:
        v = summary.get(key, float("nan"))
        return "nan" if v is None or not np.isfinite(v) else f"{v:.4g}"

    seeds = f"seeds ok {int(summary.get('n_seeds_ok', 0))}, failed {int(summary.get('n_seeds_failed', 0))}"
    if not summary.get("n_seeds_ok"):
        return f"{seeds}; every seed failed: see the error tag and traceback.txt of each seed run"
    if "ate_true_mean" not in summary:
        return f"{seeds}; no true tau: ATE estimate {f('ate_hat_mean')} (truth metrics absent)"
    return (f"{seeds}; √PEHE test {f('cate_rmse_test_mean')}, ATE bias {f('ate_bias_mean')}, "
            f"ATE coverage {f('ate_coverage_rate')}, CATE coverage test {f('cate_coverage_test_mean')}")
