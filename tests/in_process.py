"""A console script run in the test process, as a fresh process would run it: ~6 s of CPU less per call.

A ``hte-bench`` subprocess spends about 6.5 s of CPU importing scikit-learn, MLflow, SQLAlchemy and Hydra
before it reads its first argument; where the process boundary is not what a test is about, ``run_here``
calls the same console entry point (``[project.scripts]``) with the argv, working folder, environment and
output streams of that process, and returns what the subprocess would have: (returncode, stdout, stderr).
Keep real processes where the process is the subject: start-up, kills, concurrent writers, launchers.
"""
from __future__ import annotations

import contextlib
import io
import logging
import os
import subprocess
import sys
import time
import traceback
import warnings
from importlib.metadata import entry_points
from pathlib import Path


def _entry_point(script: str):
    """The function ``[project.scripts]`` names for ``script``, as the installed package's metadata has it."""
    found = entry_points(group="console_scripts", name=script)
    assert found, f"{script} is not installed (pip install -e .)"
    return next(iter(found)).load()


def _fresh_process_state() -> None:
    """Forget what earlier runs in this process left in hte-bench's per-process state, as a new process would."""
    import hte_bench.cli.run as cli_run
    from hte_bench import callbacks, seed
    from hte_bench.estimators import econml_adapter
    from hte_bench.tracking import claims, store

    cli_run._errors.clear()
    cli_run._jobs[0] = 0
    cli_run._failed_outputs.clear()
    cli_run._all_failed.clear()
    # A user's module of the same name in another folder must not be served from this process's data cache.
    seed._DATA_CACHE.clear()
    econml_adapter.clear_nuisance_cache()
    store._UNREACHABLE.clear()
    claims._WARNED.clear()
    callbacks._BAR.clear()
    callbacks.SUMMARY_FAILED.clear()
    callbacks._OPEN_AT_EXIT[:] = ["FAILED"]
    callbacks._OPEN_SWEEP.clear()


def _end_worker_pool() -> None:
    """Shut down joblib's reusable pool of loky worker processes, if this process has one: a new process starts
    without one (else its parallel jobs would run in workers spawned with another environment and folder), and
    its exit ends its workers (else they idle on for minutes, holding memory)."""
    from joblib.externals.loky import reusable_executor

    with reusable_executor._executor_lock:  # joblib has no public "the pool, if any"; asking for one makes one
        pool, reusable_executor._executor = reusable_executor._executor, None
    if pool is not None:
        pool.shutdown(wait=True)


def _exit_like_a_process() -> None:
    """What the end of a process does for hte-bench: release this holder's claims (its atexit hook), stop
    their heartbeat thread, close the databases."""
    from hte_bench.tracking.claims import Leases

    for leases in list(Leases._open.values()):
        leases.release_all()  # also ends the heartbeat thread and closes the connections
    Leases._open.clear()
    _end_worker_pool()
    if "mlflow" in sys.modules:
        import mlflow
        from mlflow.store.model_registry.sqlalchemy_store import SqlAlchemyStore as RegistryStore
        from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

        while mlflow.active_run() is not None:  # MLflow's own atexit hook ends a run left open
            mlflow.end_run()
        # Connections closed, as at exit: a store in WAL mode then loses its -wal and -shm files (which a test
        # of "nothing left behind" would see). The engines stay usable and reconnect when next asked.
        for engine in [*SqlAlchemyStore._engine_map.values(), *RegistryStore._engine_map.values()]:
            engine.dispose()


def _mlflow_uris():
    """MLflow's process-wide tracking and registry URIs (``mlflow.set_tracking_uri`` sets them)."""
    from mlflow.tracking._model_registry import utils as registry_utils
    from mlflow.tracking._tracking_service import utils as tracking_utils

    return tracking_utils, registry_utils, tracking_utils._tracking_uri, registry_utils._registry_uri


def _interpreter_warning_filters() -> None:
    """Python's default warning filters, printing on stderr: a fresh process shows warnings there (where a test
    may count lines), while pytest's own filters would show DeprecationWarnings and record them instead."""
    warnings.resetwarnings()  # also empties the "once" registries, as in a new process
    for category in (ResourceWarning, ImportWarning, PendingDeprecationWarning, DeprecationWarning):
        warnings.filterwarnings("ignore", category=category)  # each goes first: the reverse of Python's order
    warnings.filterwarnings("default", category=DeprecationWarning, module="__main__")
    # pytest's catch_warnings(record=True) replaced both (private names): print as the interpreter does.
    warnings.showwarning = warnings._showwarning_orig
    warnings._showwarnmsg_impl = lambda msg: (msg.file or sys.stderr).write(warnings._formatwarnmsg(msg))


@contextlib.contextmanager
def _as_a_fresh_process(argv: list[str], cwd: Path, env: dict[str, str]):
    """argv, working folder, environment, warning filters and root logger of a new process, restored after."""
    from hydra.core.global_hydra import GlobalHydra

    saved_argv, saved_path, saved_cwd, saved_env = sys.argv[:], sys.path[:], os.getcwd(), dict(os.environ)
    saved_modules = set(sys.modules)
    from hte_bench.evaluation import registry

    # A process's metric registrations (metric_modules) die with it.
    saved_metrics, saved_loaded = list(registry._ALL), set(registry._LOADED)
    root = logging.getLogger()
    saved_handlers, saved_level = root.handlers[:], root.level
    tracking_utils, registry_utils, tracking_uri, registry_uri = _mlflow_uris()
    GlobalHydra.instance().clear()
    _fresh_process_state()
    _end_worker_pool()
    os.environ.clear()
    os.environ.update(env)
    sys.argv = argv
    # A console script's sys.path starts with its own folder, not the working folder: hte-bench adds that.
    sys.path[:] = [p for p in sys.path if p not in ("", ".", str(cwd))]
    os.chdir(cwd)
    try:
        with warnings.catch_warnings():
            _interpreter_warning_filters()
            yield
    finally:
        _exit_like_a_process()
        GlobalHydra.instance().clear()
        for handler in root.handlers:
            if handler not in saved_handlers:
                handler.close()  # Hydra's job log files
        root.handlers[:], root.level = saved_handlers, saved_level
        os.chdir(saved_cwd)
        sys.argv, sys.path[:] = saved_argv, saved_path
        os.environ.clear()
        os.environ.update(saved_env)
        tracking_utils._tracking_uri, registry_utils._registry_uri = tracking_uri, registry_uri
        registry._ALL[:] = saved_metrics
        registry.METRICS.clear()
        registry.METRICS.update({spec.name: spec for spec in saved_metrics})
        registry._LOADED.clear()
        registry._LOADED.update(saved_loaded)
        # Modules imported from the working folder (a user's generator): another folder may hold its namesake.
        here = str(Path(cwd).resolve())
        for name in set(sys.modules) - saved_modules:
            if str(getattr(sys.modules[name], "__file__", None) or "").startswith(here):
                del sys.modules[name]


def run_here(args: list[str], cwd: Path, script: str = "hte-bench", env: dict[str, str] | None = None
             ) -> subprocess.CompletedProcess:
    """Run a console script (``hte-bench``, ``hte-bench-leaderboard``, ``hte-bench-promote``) in this process
    from ``cwd``; (returncode, stdout, stderr) as its process would give them, and ``cpu``: its CPU seconds."""
    return _run_main(_entry_point(script), [script, *args], cwd, env)


def run_file_here(path: Path, args: list[str], cwd: Path, env: dict[str, str] | None = None
                  ) -> subprocess.CompletedProcess:
    """``python path *args`` in this process, as ``run_here`` runs a console script (a user's Hydra app)."""
    import runpy

    return _run_main(lambda: runpy.run_path(str(path), run_name="__main__"), [str(path), *args], cwd, env)


def _run_main(main, argv: list[str], cwd: Path, env: dict[str, str] | None) -> subprocess.CompletedProcess:
    """``main()`` as a fresh process with ``argv`` would run it: (returncode, stdout, stderr) and ``cpu``."""
    from conftest import cli_env

    out, err = io.StringIO(), io.StringIO()
    cpu = time.process_time()
    # The streams outlast the process state, so what its exit does (claims, open runs) prints there too.
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err), \
            _as_a_fresh_process(argv, Path(cwd), cli_env() if env is None else env):
        try:
            main()
            code = 0
        except SystemExit as exit_:  # sys.exit(n) in the script, or the interpreter's rules for other values
            code = exit_.code if isinstance(exit_.code, int) else 0 if exit_.code is None else 1
            if not isinstance(exit_.code, (int, type(None))):
                print(exit_.code, file=sys.stderr)
        except Exception:  # what the interpreter prints for an uncaught exception, and its exit status
            traceback.print_exc()
            code = 1
    proc = subprocess.CompletedProcess(argv, code, out.getvalue(), err.getvalue())
    proc.cpu = time.process_time() - cpu
    return proc
