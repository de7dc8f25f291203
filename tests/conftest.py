"""Shared fixtures: a real temporary SQLite MLflow store, composed configs, and the CLI as a subprocess.

Cheap stores for new tests (a fresh SQLite store costs 5-15 s of MLflow migrations; a copy costs ~0.1 s):

- ``store``: a URI to a fresh, already migrated SQLite store of this test only (a copy of a template
  migrated once per session). Use it for tests that count every run of an experiment or need an empty store.
- ``shared_store``: one migrated store for the whole session; give each test its own experiment name
  (``tracking.experiment=<test name>``) and count runs of that experiment only.
- ``migrated_mlruns(folder)``: puts a migrated ``mlruns/mlflow.db`` in ``folder``, for CLI subprocesses that
  use the default store of their working directory (not for tests about creating a store).
- ``mlflow_server``: one ``mlflow server`` on loopback for the session (per xdist worker), for tests that
  need *a* server; give each test its own experiment name, as with ``shared_store``.
- ``SMALL`` (small n, serial seeds: ``n_jobs=1`` spares a pool of worker processes per run) and ``LEAN``
  (SMALL with truth-free scores, subgroup tables, insights.md, interpretation trees and plots off): use LEAN
  unless the test is about those (insights.md alone fits DR nuisances, ~3 s per seed).
"""
from __future__ import annotations

import functools
import os
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parent
TEST_CONF = TESTS / "conf"
# Small data and few trees so the suite runs in minutes on 2 cores.
SMALL = ["data.n=300", "data.n_test=200", "importance_repeats=2", "importance_max_rows=200", "n_jobs=1"]
LEAN = [*SMALL, "analyses.truth_free=false", "analyses.subgroups=false", "++analyses.insights=false",
        "analyses.interpretation=false", "tracking.plots=false"]


# Modules collected first, heaviest first: under pytest-xdist the work goes out in this order, so the many
# short in-process tests of the other modules fill the end and the workers finish together.
# Measured 2026-11-25 (wall, one worker): test_compare's and test_ray's modules ~2 min each, test_new_user's
# ~1.5 min, then single tests of about a minute (PostgreSQL, two sweeps at once, submitit, SIGKILL). test_scale's
# server test goes early because the session server's other tests (USES_SERVER) go with it.
RUN_FIRST = ("test_compare.py", "test_ray.py", "test_new_user.py", "test_scale.py", "test_claims.py",
             "test_cluster.py", "test_resume.py", "test_end_to_end.py", "test_analyses.py", "test_estimators.py",
             "test_optuna_sweeper.py", "test_runner.py", "test_tracking.py", "test_subgroups.py", "test_cli.py",
             "test_ui.py")
MODULE_FIXTURE = re.compile(r"@pytest\.fixture\(scope=\"module\"")
# Tests of the session's mlflow server (conftest.mlflow_server): one worker's, so one server starts, not two.
USES_SERVER = re.compile(r"^def (test_\w+)\([^)]*\bmlflow_server\b", re.M)


def pytest_collection_modifyitems(config, items):
    """Process-heavy modules first (RUN_FIRST)."""
    rank = {name: i for i, name in enumerate(RUN_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))  # stable: keeps the order within a module


@pytest.hookimpl(tryfirst=True)
def pytest_xdist_make_scheduler(config, log):
    """``--dist loadgroup`` (pyproject.toml): xdist's load scheduling, except that the tests of a module with a
    module-scoped fixture go to one worker as one unit — else each worker that gets one of them builds the
    fixture again (a minute for test_new_user's table) — and so do the tests of the session's mlflow server
    (USES_SERVER). xdist_group marks cannot say this: pytest 9's structured node ids defeat them (pytest-xdist
    issue 1386)."""
    if config.getvalue("dist") != "loadgroup":
        return None
    from xdist.scheduler import LoadScopeScheduling

    @functools.cache
    def source(path: str) -> str:
        file = config.rootpath / path
        return file.read_text() if file.suffix == ".py" and file.is_file() else ""

    class ModuleFixtureScheduling(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            path, _, name = nodeid.partition("::")
            if MODULE_FIXTURE.search(source(path)):
                return path
            return "mlflow_server" if name.split("[")[0] in USES_SERVER.findall(source(path)) else nodeid

    config.option.loadscopereorder = False  # in collection order (RUN_FIRST), not by the number of tests
    return ModuleFixtureScheduling(config, log)


@pytest.fixture(scope="session")
def _template_db(tmp_path_factory) -> Path:
    """An empty SQLite MLflow store, migrated once per session (not once per xdist worker: ~5 s of CPU each),
    to be copied by the store fixtures."""
    import fcntl

    from mlflow import MlflowClient

    folder = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        folder = folder.parent  # this session's, shared by its workers
    db = folder / "template" / "mlflow.db"
    with open(folder / "template.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # the first worker migrates; the others wait, then copy
        ready = db.with_name("migrated")
        if not ready.exists():
            db.parent.mkdir(exist_ok=True)
            MlflowClient(tracking_uri=f"sqlite:///{db}").search_experiments(max_results=1)  # creates the tables
            ready.touch()
    return db


def _copy_template(template: Path, folder: Path) -> str:
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copy(template, folder / "mlflow.db")
    return f"sqlite:///{folder / 'mlflow.db'}"


@pytest.fixture
def store(tmp_path, _template_db) -> str:
    """A fresh, already migrated SQLite tracking URI in the test's temporary folder."""
    return _copy_template(_template_db, tmp_path / "store")


@pytest.fixture(scope="session")
def shared_store(tmp_path_factory, _template_db) -> str:
    """One migrated SQLite store for the session: tests using it must use their own experiment names."""
    return _copy_template(_template_db, tmp_path_factory.mktemp("shared") / "store")


@pytest.fixture(scope="session")
def migrated_mlruns(_template_db):
    """``migrated_mlruns(folder)`` puts a migrated ``mlruns/mlflow.db`` in folder (the CLI's default store)."""
    return lambda folder: _copy_template(_template_db, Path(folder) / "mlruns")


def free_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def answers(url: str) -> bool:
    """Whether an HTTP GET of url gets an answer within 2 s."""
    try:
        urllib.request.urlopen(url, timeout=2)
        return True
    except OSError:
        return False


def start_mlflow_server(folder: Path, backend_uri: str, seconds: float = 180):
    """``mlflow server`` on a free loopback port with one worker and no job runner (MLflow's GenAI jobs);
    (process, URL) once /health answers. Stop it with ``stop_mlflow_server``."""
    port = free_port()
    with open(folder / "server.log", "w") as log:
        server = subprocess.Popen(
            [sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
             "--backend-store-uri", backend_uri, "--artifacts-destination", str(folder / "server_artifacts")],
            env={**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}, stdout=subprocess.DEVNULL,
            stderr=log, start_new_session=True)
    url, deadline = f"http://127.0.0.1:{port}", time.time() + seconds  # a loaded 2-core machine has needed 150 s
    while not answers(f"{url}/health"):
        if time.time() > deadline or server.poll() is not None:
            stop_mlflow_server(server)
            log_tail = (folder / "server.log").read_text()[-2000:]
            pytest.fail(f"mlflow server did not start in {seconds:.0f} s: {log_tail}")
        time.sleep(0.25)
    return server, url


def stop_mlflow_server(server: subprocess.Popen) -> None:
    """SIGTERM the server's process group; SIGKILL if a loaded machine shuts uvicorn down slowly."""
    try:
        os.killpg(server.pid, 15)
        server.wait(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(server.pid, 9)
        server.wait()
    except ProcessLookupError:
        pass


@pytest.fixture(scope="session")
def mlflow_server(tmp_path_factory, _template_db):
    """One ``mlflow server`` on loopback with a pre-migrated SQLite store, shared by the session's tests (each
    with its own experiment name): a server start costs seconds of CPU."""
    folder = tmp_path_factory.mktemp("server")
    shutil.copy(_template_db, folder / "server.db")
    server, url = start_mlflow_server(folder, f"sqlite:///{folder / 'server.db'}")
    yield url
    stop_mlflow_server(server)


@pytest.fixture
def no_ray_telemetry(monkeypatch):
    """Ray's usage statistics would try to reach the internet, and a $RAY_ADDRESS of the machine would take
    the test's jobs: Ray tests stay on loopback (``pytestmark = pytest.mark.usefixtures("no_ray_telemetry")``)."""
    monkeypatch.setenv("RAY_USAGE_STATS_ENABLED", "0")
    monkeypatch.delenv("RAY_ADDRESS", raising=False)


def compose(overrides: list[str], with_choices: bool = False):
    """The config the CLI would build, with tests/conf on the search path (for cf_small, fail_on_seed).

    With ``with_choices`` also the selected group options, as the CLI passes them to ``run``.
    """
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from omegaconf import open_dict

    from hte_bench.cli.run import conf_dir

    GlobalHydra.instance().clear()
    with initialize_config_dir(str(conf_dir()), version_base="1.3"):
        cfg = hydra_compose("config", overrides=[f"hydra.searchpath=[file://{TEST_CONF}]", *overrides],
                            return_hydra_config=True)
    choices = {k: v for k, v in cfg.hydra.runtime.choices.items() if v is not None and not k.startswith("hydra")}
    with open_dict(cfg):
        del cfg["hydra"]
    return (cfg, choices) if with_choices else cfg


def run_composed(overrides: list[str]) -> dict:
    """``hte_bench.runner.run`` on a composed config, in this process (faster than the CLI)."""
    from hte_bench.runner import run

    cfg, choices = compose(overrides, with_choices=True)
    return run(cfg, choices=choices)


@pytest.fixture
def user_module(tmp_path, monkeypatch):
    """Write a module of the user's (``name``, ``source``) into an importable folder, as a user's file beside
    their command; the module is forgotten after the test. Returns its path."""
    names = []
    monkeypatch.syspath_prepend(str(tmp_path))

    def write(name: str, source: str) -> Path:
        names.append(name)
        path = tmp_path / f"{name}.py"
        path.write_text(source)
        return path

    yield write
    for name in names:
        sys.modules.pop(name, None)


@pytest.fixture(autouse=True)
def _no_mlflow_environment(monkeypatch):
    """Each test starts without MLflow's URI variables: mlflow.set_tracking_uri() (promotion, model
    loading) exports MLFLOW_TRACKING_URI, which would send later CLI subprocesses to another store."""
    for name in ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI", "MLFLOW_RUN_ID"):
        monkeypatch.delenv(name, raising=False)


def cli_env() -> dict[str, str]:
    """The environment of a CLI subprocess: tests/ importable, no MLflow URI or run id inherited."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")])}
    for name in ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI", "MLFLOW_RUN_ID"):
        env.pop(name, None)
    return env


def run_cli(args: list[str], cwd: Path, timeout: int = 600) -> subprocess.CompletedProcess:
    """Run ``hte-bench`` as a user would, from ``cwd``; tests/ is importable for the test estimators."""
    exe = shutil.which("hte-bench")
    cmd = [exe] if exe else [sys.executable, "-m", "hte_bench.cli.run"]
    return subprocess.run(cmd + args, cwd=cwd, env=cli_env(), capture_output=True, text=True, timeout=timeout)


def client(uri: str):
    from mlflow import MlflowClient

    # The registry too: a promotion sets the process's default registry URI to its own store.
    return MlflowClient(tracking_uri=uri, registry_uri=uri)


def all_runs(uri: str, experiment: str):
    """Every run of the experiment ([] when it does not exist)."""
    c = client(uri)
    exp = c.get_experiment_by_name(experiment)
    return [] if exp is None else c.search_runs([exp.experiment_id], max_results=1000)
