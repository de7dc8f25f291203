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
import warnings
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


# What the analyses that fit models of their own import lazily (analyses.FITTING), for warm_up.
ANALYSIS_IMPORTS = {
    "insights": ("hte_bench.evaluation.dr_scores", "econml.validate", "sklearn.ensemble", "statsmodels.api"),
    "truth_free": ("hte_bench.evaluation.validation", "econml.score", "statsmodels.stats.weightstats"),
    "subgroups": ("hte_bench.evaluation.subgroups",),
    "interpretation": ("hte_bench.evaluation.interpretation", "econml.cate_interpreter"),
}


_WARMED = False


def warm_up(cfg: DictConfig, seeds: list[int]):
    """Start the seed worker processes now, each importing what its first seeds will need, while this
    process opens the store (a worker spends seconds importing pandas, scikit-learn, statsmodels, econml
    and matplotlib before its first seed). Returns the warm-up's joblib generator, for
    ``evaluate_in_parallel`` (which waits for it, then reuses the processes) or ``stop_warm_up``; None when
    seeds will not run in loky processes here, and after the first job of a process: when every seed is
    already done the warm-up is wasted (seconds of CPU), so a sweep of finished configurations pays it once."""
    global _WARMED
    if _WARMED or str(cfg.joblib_backend) != "loky" or int(cfg.n_jobs) == 1 or len(seeds) < 2:
        return None
    _WARMED = True  # later jobs of this process (a sweep's) find joblib's processes running, or start them
    from joblib import Parallel, delayed, effective_n_jobs

    modules = first_seed_imports(cfg, seeds[0])
    n_jobs = int(cfg.n_jobs)
    # Same n_jobs as evaluate_in_parallel's Parallel, so joblib hands that one the same (reusable) processes.
    return Parallel(n_jobs=n_jobs, return_as="generator_unordered", batch_size=1)(
        delayed(import_modules)(modules) for _ in range(effective_n_jobs(n_jobs)))


def stop_warm_up(warm) -> None:
    """Stop warmed-up workers that will not be used (nothing to fit, or seeds run here): closing joblib's
    generator early cancels its tasks and ends the processes, instead of leaving the exit to wait for them."""
    if warm is not None:
        with warnings.catch_warnings():  # joblib's "tasks ... have been cancelled": that is the point
            warnings.simplefilter("ignore")
            warm.close()


def first_seed_imports(cfg: DictConfig, seed: int) -> list[str]:
    """Modules a worker's first seeds import: those of the config's ``_target_``s, what the adapter's fit
    imports lazily (``fit_imports``), and the libraries of the analyses and figures switched on for them."""
    from hydra.utils import get_object

    from hte_bench import config as C
    from hte_bench.evaluation.analyses import selected

    targets = [str(cfg.data._target_)] + _targets(C.seeded(cfg, "estimator", seed))
    modules = ["hte_bench.seed", "hte_bench.evaluation.importance", "pyarrow.parquet"]
    modules += [t.rsplit(".", 1)[0] for t in targets]
    modules += [m for t in targets for m in getattr(get_object(t), "fit_imports", ())]
    if C.on_first_seeds(cfg, "analyses.seeds", seed):
        modules += [m for name in selected(cfg.get("analyses")) for m in ANALYSIS_IMPORTS.get(name, ())]
    if C.on_first_seeds(cfg, "tracking.plots", seed):
        modules += ["hte_bench.plots", "matplotlib.pyplot"]
    return list(dict.fromkeys(modules))


def _targets(node) -> list[str]:
    """Every ``_target_`` in a resolved config container."""
    if isinstance(node, dict):
        own = [str(node["_target_"])] if "_target_" in node else []
        return own + [t for v in node.values() for t in _targets(v)]
    if isinstance(node, list):
        return [t for v in node for t in _targets(v)]
    return []


def import_modules(modules: list[str]) -> None:
    """A worker's warm-up task: import what it can of ``modules`` (a missing one is the seed's to report)."""
    import importlib

    for name in modules:
        try:
            importlib.import_module(name)
        except Exception:  # noqa: BLE001 - warm-up only; the seed that needs the module says what is wrong
            pass


def evaluate_in_parallel(cfg: DictConfig, seeds: list[int], workdir: str, n_jobs: int,
                         strict: bool = True, title: str = "", warm=None) -> Iterator[SeedResult]:
    """SeedResults in seed order from ``n_jobs`` workers of the configured backend; with ``strict`` the first
    seed is. ``warm``: warm_up's generator, waited for so its processes are reused."""
    from joblib import Parallel, delayed

    if str(cfg.joblib_backend) == "loky":  # the only other value config.validate lets through is ray
        for _ in warm or ():  # already done in most runs: the store took longer to open
            pass
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
