"""Each Hydra job as one Ray task, modelled on Hydra's own launchers (joblib, ray): the worker rebuilds
Hydra's state and calls ``hydra.core.utils.run_job``; results come back in job order, gathered as they
finish."""

import logging
import os
import sys
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

import ray
from hydra.core.hydra_config import HydraConfig
from hydra.core.singleton import Singleton
from hydra.core.utils import JobReturn, JobStatus, configure_log, filter_overrides, run_job, setup_globals
from omegaconf import DictConfig, open_dict

log = logging.getLogger(__name__)

# The job's view of tracking (MLFLOW_TRACKING_URI, ...) and of its sweep (HTE_BENCH_SWEEP_RUN_ID, set by
# the sweep callback just before launch): a Ray worker's environment is its raylet's, not this driver's.
FORWARDED = ("HTE_BENCH_", "MLFLOW_")


def launch(launcher: Any, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> List[JobReturn]:
    """Submit every job at once (Ray schedules them on free CPUs) and wait for all of them."""
    setup_globals()
    config = launcher.config
    configure_log(config.hydra.hydra_logging, config.hydra.verbose)
    sweep_dir = Path(str(config.hydra.sweep.dir))
    sweep_dir.mkdir(parents=True, exist_ok=True)
    connect(launcher.address, launcher.num_cpus, launcher.init)
    log.info("Ray launcher: %d jobs on %s, sweep output dir: %s", len(job_overrides),
             describe_cluster(), sweep_dir)

    task = ray.remote(_run_job).options(**launcher.remote) if launcher.remote else ray.remote(_run_job)
    env = {k: v for k, v in os.environ.items() if k.startswith(FORWARDED)}
    # Shared by every job: put once into the object store rather than serialised per task.
    shared = ray.put((launcher.hydra_context, launcher.task_function, Singleton.get_state(), env, os.getcwd()))
    refs = []
    for idx, overrides in enumerate(job_overrides, start=initial_job_idx):
        log.info("\t#%d : %s", idx, " ".join(filter_overrides(overrides)))
        sweep_config = launcher.hydra_context.config_loader.load_sweep_config(config, list(overrides))
        with open_dict(sweep_config):
            sweep_config.hydra.job.num = idx
            sweep_config.hydra.job.id = f"{sweep_config.hydra.job.name}_{idx}"
        refs.append(task.remote(shared, sweep_config))
    return gather(refs, [list(o) for o in job_overrides])


def connect(address: Optional[str], num_cpus: Optional[int], init: Dict[str, Any]) -> None:
    """Join the cluster at ``address`` or start a Ray here (once per process)."""
    if ray.is_initialized():
        return
    kwargs = dict(init)
    if address is not None:
        kwargs["address"] = address
    if (address if address is not None else os.environ.get("RAY_ADDRESS")) in (None, "", "local"):
        # Starting a new local Ray: these options only apply then.
        kwargs.setdefault("include_dashboard", False)
        if num_cpus is not None:
            kwargs.setdefault("num_cpus", num_cpus)
    ray.init(**kwargs)


def describe_cluster() -> str:
    """The Ray cluster the jobs go to, in words (nodes and CPUs), for the launch log line."""
    resources = ray.cluster_resources()
    return f"{len(ray.nodes())} Ray node(s) with {resources.get('CPU', 0):g} CPUs"


CANCEL_GRACE_SECONDS = 15.0  # how long cancelled jobs get to close their runs before their workers are killed


def gather(refs: list, overrides: List[List[str]]) -> List[JobReturn]:
    """Results in job order; a job whose task could not run (its worker died) fails alone, the rest go on."""
    pending = {ref: i for i, ref in enumerate(refs)}
    results: List[Optional[JobReturn]] = [None] * len(refs)
    try:
        while pending:
            done, _ = ray.wait(list(pending), num_returns=1)
            for ref in done:
                i = pending.pop(ref)
                try:
                    results[i] = ray.get(ref)
                except Exception as err:  # RayTaskError, WorkerCrashedError, OutOfMemoryError, ...
                    log.error("job %s failed in Ray: %s", " ".join(overrides[i]), str(err).splitlines()[0])
                    results[i] = JobReturn(overrides=overrides[i], status=JobStatus.FAILED, _return_value=err)
    except BaseException:  # Ctrl-C: do not leave jobs running on the cluster
        # First as Ctrl-C (KeyboardInterrupt in the task): a job closes its runs KILLED and releases its claims,
        # so the same command again resumes at once; a job still running after the grace period is killed.
        for ref in pending:
            ray.cancel(ref)
        stuck = list(pending)
        try:
            _, stuck = ray.wait(stuck, num_returns=len(stuck), timeout=CANCEL_GRACE_SECONDS)
        finally:  # also after a second Ctrl-C during the wait: nothing is left running on the cluster
            for ref in stuck:
                ray.cancel(ref, force=True)
        raise
    return results  # type: ignore[return-value]


def _run_job(shared: tuple, sweep_config: DictConfig) -> JobReturn:
    """In the Ray worker: take the driver's environment and folder, restore Hydra's state, run the job."""
    hydra_context, task_function, singleton_state, env, cwd = shared
    for name in [k for k in os.environ if k.startswith(FORWARDED) and k not in env]:
        del os.environ[name]
    os.environ.update(env)
    if Path(cwd).is_dir():  # this machine or a shared file system: relative paths mean the same
        os.chdir(cwd)
        if cwd not in sys.path:  # a user's generator module beside the config, as for the CLI
            sys.path.insert(0, cwd)
    setup_globals()
    Singleton.set_state(singleton_state)
    HydraConfig.instance().set_config(sweep_config)
    return run_job(hydra_context=hydra_context, task_function=task_function, config=sweep_config,
                   job_dir_key="hydra.sweep.dir", job_subdir_key="hydra.sweep.subdir")
