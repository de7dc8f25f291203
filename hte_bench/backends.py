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
        # All seeds go to the pool at once; results stream back in order as they finish.
        blob = pickle.dumps(cfg)
        key = hashlib.sha256(blob).hexdigest()
        yield from Parallel(n_jobs=n_jobs, return_as="generator")(
            delayed(evaluate_seed_once_configured)(key, blob, seed, workdir, strict and i == 0, title)
            for i, seed in enumerate(seeds))
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
    seeds = list(seeds)  # claimed as they are handed over; Ray's pool takes them batch by batch
    step = 4 * n_jobs if n_jobs > 0 else 64
    with parallel_config(backend="ray"), Parallel(n_jobs=n_jobs) as parallel:
        for start in range(0, len(seeds), step):
            batch = seeds[start:start + step]
            yield from map(receive, parallel(
                delayed(evaluate_seed_shipped)(cfg, seed, workdir, strict and start + i == 0, title)
                for i, seed in enumerate(batch)))


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
