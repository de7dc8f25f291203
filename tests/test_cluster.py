"""Beyond one machine on existing engines: submitit (SLURM's local twin) and an MLflow server on PostgreSQL —
real processes on loopback, small fits (Ray's are in test_ray.py)."""
import glob
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

from conftest import LEAN, all_runs, free_port, start_mlflow_server, stop_mlflow_server
from in_process import run_here

TWO_BY_TWO = ["estimator=interaction_ols,constant_effect", "n_seeds=2", *LEAN]
pytestmark = pytest.mark.usefixtures("no_ray_telemetry")


def check_nested(uri: str, n_configs: int, n_seeds: int) -> None:
    """One FINISHED sweep run holding the configuration runs, each holding exactly one FINISHED run per
    seed with the usual metrics: nothing lost, nothing doubled."""
    runs = all_runs(uri, "hte-bench")
    by_kind = {k: [r for r in runs if r.data.tags.get("hte_bench.kind") == k] for k in ("sweep", "config", "seed")}
    assert len(by_kind["sweep"]) == 1 and len(by_kind["config"]) == n_configs, [r.info.run_name for r in runs]
    sweep_id = by_kind["sweep"][0].info.run_id
    assert all(r.info.status == "FINISHED" for r in runs), [(r.info.run_name, r.info.status) for r in runs]
    for parent in by_kind["config"]:
        assert parent.data.tags["mlflow.parentRunId"] == sweep_id  # the sweep id reached the worker
        seeds = [r for r in by_kind["seed"] if r.data.tags["mlflow.parentRunId"] == parent.info.run_id]
        assert sorted(r.data.tags["seed"] for r in seeds) == [str(s) for s in range(n_seeds)]  # one run each
        assert all("cate_rmse_test" in r.data.metrics and "ate_bias" in r.data.metrics for r in seeds)
    assert len(by_kind["seed"]) == n_configs * n_seeds


# --------------------------------------------------------------------------- SLURM's local twin


def test_submitit_local_runs_configurations_nested_under_the_sweep(tmp_path, migrated_mlruns):
    uri = migrated_mlruns(tmp_path)  # the folder's default store, already migrated (creation is test_claims')
    # The sweep in this process (tests/in_process.py): submitit's job processes are the subject.
    proc = run_here(["-m", "hydra/launcher=submitit_local", *TWO_BY_TWO], cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    check_nested(uri, n_configs=2, n_seeds=2)
    assert list(tmp_path.glob("mlruns/hydra/multirun_*/.submitit/*/*_result.pkl"))  # really submitit's jobs


@pytest.mark.parametrize("args", [
    ["hydra/launcher=slurm"],                                                # sqlite file in ./mlruns
    ["hydra/launcher=submitit_slurm", "tracking.uri=http://127.0.0.1:5000"],  # a server on loopback
    ["hydra/launcher=ray", "hydra.launcher.address=auto"],
])
def test_jobs_on_other_machines_refuse_a_local_tracking_uri(tmp_path, args):
    t0 = time.time()
    proc = run_here(["-m", *args, "estimator=interaction_ols"], cwd=tmp_path)  # refused before any launch
    assert proc.returncode == 2
    lines = [ln for ln in proc.stderr.splitlines() if ln.startswith("hte-bench: error:")]
    assert len(lines) == 1 and "runs jobs on other machines" in lines[0] and "mlflow server" in lines[0]
    assert time.time() - t0 < 30
    assert not (tmp_path / "mlruns").exists()  # nothing submitted, no store, no output folder


def test_which_tracking_uris_and_ray_addresses_count_as_other_machines():
    from omegaconf import OmegaConf

    from hte_bench.tracking.remote import reachable_from_elsewhere, remote_launcher

    for uri in ("http://mlflow.lab.example:5000", "https://mlflow.example.org",
                "postgresql+psycopg://hte@db.example:5432/mlflow", "mysql://u@db.example/mlflow"):
        assert reachable_from_elsewhere(uri), uri
    for uri in ("sqlite:///mlruns/mlflow.db", "file:///tmp/mlruns", "http://localhost:5000", "http://[::1]:5000",
                "http://127.0.0.1:5000", "postgresql://hte@127.0.0.1/mlflow", "postgresql:///mlflow"):
        assert not reachable_from_elsewhere(uri), uri

    def ray_at(address):
        target = "hydra_plugins.hte_bench_ray_launcher.launcher.HteRayLauncher"
        return remote_launcher(OmegaConf.create({"hydra": {"launcher": {"_target_": target, "address": address}}}))

    assert ray_at(None) is None and ray_at("local") is None and ray_at("127.0.0.1:6379") is None
    assert ray_at("ray://localhost:10001") is None
    assert ray_at("auto") and ray_at("ray://head.example:10001") and ray_at("head.example:6379")


# --------------------------------------------------------------------------- a server on PostgreSQL


def _pg_bin(name: str):
    found = shutil.which(name)
    return found or next(iter(sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"), reverse=True)), None)


@pytest.fixture
def postgres():
    """A throwaway PostgreSQL cluster on a loopback port (as the ``postgres`` user when run as root,
    since PostgreSQL refuses to run as root); yields a SQLAlchemy URI of an empty database."""
    initdb, pg_ctl = _pg_bin("initdb"), _pg_bin("pg_ctl")
    if not initdb or not pg_ctl:
        pytest.skip("PostgreSQL binaries (initdb, pg_ctl) absent: apt-get install postgresql (.ci/run does)")
    as_owner = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
    root = Path(tempfile.mkdtemp(prefix="hte-pg-"))
    if as_owner:
        shutil.chown(root, "postgres")
    data, port = root / "data", free_port()

    def pg(*cmd: str) -> None:
        done = subprocess.run([*as_owner, *cmd], capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, f"{' '.join(cmd)}: {done.stderr[-2000:]}"

    pg(initdb, "-D", str(data), "-U", "hte", "--auth=trust", "--no-sync")
    pg(pg_ctl, "-D", str(data), "-l", str(root / "log"), "-w", "-t", "60", "start",
       "-o", f"-h 127.0.0.1 -p {port} -k {root} -c fsync=off")
    try:
        pg(str(Path(initdb).resolve().with_name("createdb")), "-h", "127.0.0.1", "-p", str(port), "-U", "hte", "mlflow")
        yield f"postgresql+psycopg://hte@127.0.0.1:{port}/mlflow"  # psycopg 3, as README says
    finally:
        pg(pg_ctl, "-D", str(data), "-m", "immediate", "-w", "stop")
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def server_on_postgres(tmp_path, postgres):
    """``mlflow server`` on loopback with the PostgreSQL backend store and a local artifact folder."""
    server, url = start_mlflow_server(tmp_path, postgres)
    yield url
    stop_mlflow_server(server)


def test_two_writers_through_a_server_on_postgresql(tmp_path, server_on_postgres):
    # Two concurrent writers show what four did: each is a process paying ~8 s of CPU in imports. The sweep
    # runs in this process (tests/in_process.py); its jobs, in the joblib launcher's worker processes.
    proc = run_here(["-m", "hydra/launcher=joblib", "hydra.launcher.n_jobs=2", "estimator=interaction_ols",
                     "data.noise=0.5,2.0", "n_seeds=2", *LEAN, f"tracking.uri={server_on_postgres}"], cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    check_nested(server_on_postgres, n_configs=2, n_seeds=2)
    assert not (tmp_path / "mlruns" / "mlflow.db").exists()
