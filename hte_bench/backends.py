"""Where the seeds of one configuration run when ``n_jobs`` > 1: joblib's ``loky`` processes on this
machine, or Ray tasks (``joblib_backend=ray``, Ray's own joblib backend) anywhere in a Ray cluster.

Ray joins the cluster in ``$RAY_ADDRESS`` (or one started on this machine with ``ray start``), else
starts one here. Seeds only compute on the workers; their runs are logged by the job itself, so the
tracking URI needs no server for this, but each seed's files travel back with its result.
"""
from __future__ import annotations

import hashlib
import pickle
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from omegaconf import DictConfig

from hte_bench.errors import ConfigError
from hte_bench.seed import SeedResult, evaluate_seed


@dataclass
class Shipped:
    """A seed's result with its files, from a worker whose disk may not be this machine's."""

    result: SeedResult
    files: dict[str, bytes]
    workdir: str


def evaluate_in_parallel(cfg: DictConfig, seeds: list[int], workdir: str, n_jobs: int,
                         strict: bool = True, title: str = "") -> Iterator[SeedResult]:
    """SeedResults in seed order from ``n_jobs`` workers of the configured backend; with ``strict`` the first seed is."""
    from joblib import Parallel, delayed

    if str(cfg.joblib_backend) == "loky":  # the only other value config.validate lets through is ray
        yield from _on_loky(cfg, seeds, workdir, n_jobs, strict, title)
        return
    try:
        from ray.util.joblib import register_ray
    except ImportError:
        raise ConfigError("joblib_backend=ray needs Ray: pip install 'hte-bench[cluster]'") from None
    import logging

    from joblib import parallel_config

    register_ray()
    # joblib passes a multiprocessing context, which Ray's pool ignores with a warning on every run.
    logging.getLogger("ray.util.multiprocessing.pool").setLevel(logging.ERROR)
    # Ray's backend cannot stream results (no return_as="generator"): batches of a few seeds per worker
    # keep memory bounded and let seed runs appear batch by batch. One pool serves every batch.
    from itertools import islice

    seeds = iter(seeds)  # lazy: each batch claims its seeds when it is taken, so a concurrent run gets the rest
    step = 4 * n_jobs if n_jobs > 0 else 64
    first = True
    with parallel_config(backend="ray"), Parallel(n_jobs=n_jobs) as parallel:
        while batch := list(islice(seeds, step)):
            yield from map(receive, parallel(
                delayed(evaluate_seed_shipped)(cfg, seed, workdir, strict and first and i == 0, title)
                for i, seed in enumerate(batch)))
            first = False


def _on_loky(cfg: DictConfig, seeds, workdir: str, n_jobs: int, strict: bool, title: str) -> Iterator[SeedResult]:
    """Seeds to a pool of loky processes as they are claimed (``seeds`` is lazy: a concurrent run takes the ones
    not yet handed over); results stream back in seed order as they finish.

    A worker process that dies (killed for memory, a crash in native code) breaks the whole pool: the next
    seed is then fitted alone in a fresh worker — a FAILED seed run if its worker dies again, else its result —
    and the seeds after it go to a fresh pool, so one bad seed costs one seed, not the configuration."""
    from itertools import chain

    from joblib import delayed
    from joblib.externals.loky.process_executor import TerminatedWorkerError

    blob = pickle.dumps(cfg)
    key = hashlib.sha256(blob).hexdigest()
    seeds = iter(seeds)
    while True:
        handed: list[int] = []  # handed to the pool, in order: the results come back in this order

        def hand_over(first_strict: bool):
            for i, seed in enumerate(seeds):
                handed.append(seed)
                yield delayed(evaluate_seed_once_configured)(key, blob, seed, workdir, first_strict and i == 0, title)

        done = 0
        try:
            for result in _pool(n_jobs)(hand_over(strict)):
                done += 1
                yield result
            return
        except TerminatedWorkerError as err:
            died = err
        strict = strict and done == 0
        if done >= len(handed):  # the pool broke before the next seed was handed over: a fresh pool takes it
            continue
        seed, rest = handed[done], handed[done + 1:]
        try:  # alone: a worker that dies now died of this seed
            yield next(_pool(2)(
                [delayed(evaluate_seed_once_configured)(key, blob, seed, workdir, strict, title)]))
        except TerminatedWorkerError as again:
            yield _worker_died(seed, workdir, died, again)
        strict = False
        seeds = chain(rest, seeds)  # handed over but lost with the pool, then the ones not yet claimed


def _pool(n_jobs: int):
    """A loky Parallel whose workers fit on one BLAS/OpenMP thread, as serial seeds do (runner._one_thread):
    joblib's default is cpu_count() // n_jobs threads, so on a machine with more cores than n_jobs a seed fitted
    in parallel could differ in the last digit from the same seed fitted serially."""
    from joblib import Parallel, parallel_config

    with parallel_config(backend="loky", inner_max_num_threads=1):
        return Parallel(n_jobs=n_jobs, return_as="generator")


def _worker_died(seed: int, workdir: str, first: BaseException, alone: BaseException) -> SeedResult:
    """A FAILED seed whose worker process died twice, the second time fitting this seed alone."""
    import time

    out = Path(workdir) / f"seed_{seed}"
    out.mkdir(parents=True, exist_ok=True)
    (out / "traceback.txt").write_text(f"stage: worker process\n\nin the pool: {first}\n\nalone: {alone}\n")
    now = int(time.time() * 1000)
    return SeedResult(seed=seed, status="FAILED", artifact_dir=str(out), start_ms=now, end_ms=now, tags={
        "error": "worker process: its process died while fitting this seed, also alone (killed for memory, or a "
                 "crash in native code); see traceback.txt", "failed_stage": "worker process"})


_CONFIG: dict = {}


def evaluate_seed_once_configured(key: str, blob: bytes, seed: int, workdir: str, strict: bool = False,
                                  title: str = "") -> SeedResult:
    """``evaluate_seed`` with the configuration unpickled once per worker process, not once per seed: the
    process's caches keyed by the config (config.seeded, ~10 ms a seed) then stay warm."""
    if key not in _CONFIG:
        _CONFIG.clear()
        _CONFIG[key] = pickle.loads(blob)
    return evaluate_seed(_CONFIG[key], seed, workdir, strict, title)


def evaluate_seed_shipped(cfg: DictConfig, seed: int, workdir: str, strict: bool = False,
                          title: str = "") -> Shipped:
    """``evaluate_seed`` in the worker's own temporary folder; its files come back as bytes."""
    with tempfile.TemporaryDirectory(prefix="hte-bench-seed-") as tmp:
        result = evaluate_seed(cfg, seed, tmp, strict, title)
        files = {str(p.relative_to(tmp)): p.read_bytes() for p in Path(tmp).rglob("*") if p.is_file()}
        if result.artifact_dir:
            result.artifact_dir = str(Path(result.artifact_dir).relative_to(tmp))
    return Shipped(result, files, workdir)


def receive(shipped: Shipped) -> SeedResult:
    """Write a shipped seed's files into the job's folder and point its result there."""
    root = Path(shipped.workdir)
    for name, data in shipped.files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(data)
    result = shipped.result
    if result.artifact_dir:
        result.artifact_dir = str(root / result.artifact_dir)
    return result
