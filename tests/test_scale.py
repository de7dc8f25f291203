"""Parallel writers and a real tracking server: nothing lost, nothing locked."""
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request

import pytest

from conftest import LEAN, all_runs, client, run_cli

# Four cheap configurations: the point is four writers, not the fits.
SWEEP = ["estimator=interaction_ols", "data.noise=0.5,1.0,1.5,2.0"]
N_CONFIGS = 4


def _check_sweep(uri: str, experiment: str = "hte-bench", n_seeds: int = 2) -> None:
    runs = all_runs(uri, experiment)
    kinds = [r.data.tags.get("hte_bench.kind") for r in runs]
    assert kinds.count("config") == N_CONFIGS and kinds.count("seed") == N_CONFIGS * n_seeds
    assert kinds.count("sweep") == 1
    assert all(r.info.status == "FINISHED" for r in runs), [(r.info.run_name, r.info.status) for r in runs]
    sweep = next(r for r in runs if r.data.tags.get("hte_bench.kind") == "sweep")
    # Four noise levels are four data conditions: a best per condition, never one pooled across them.
    assert sweep.data.tags["n_conditions"] == str(N_CONFIGS)
    assert sum(k.startswith("best_config/") for k in sweep.data.tags) == N_CONFIGS


def test_four_parallel_jobs_on_a_fresh_sqlite_store(tmp_path):
    # A fresh store: creation (migrations) must not race between the four processes.
    proc = run_cli(["-m", "hydra/launcher=joblib", "hydra.launcher.n_jobs=4", *SWEEP, "n_seeds=2", *LEAN],
                   cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "database is locked" not in proc.stderr + proc.stdout
    _check_sweep(f"sqlite:///{tmp_path / 'mlruns' / 'mlflow.db'}")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def tracking_server(tmp_path, _template_db):
    """``mlflow server`` on loopback with its own (pre-migrated) SQLite store and artifact folder."""
    port = _free_port()
    shutil.copy(_template_db, tmp_path / "server.db")
    server = subprocess.Popen(
        [sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(port),
         "--backend-store-uri", f"sqlite:///{tmp_path / 'server.db'}",
         "--artifacts-destination", str(tmp_path / "server_artifacts"), "--workers", "1"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 180  # a loaded 2-core machine has needed 150 s
    while time.time() < deadline:
        try:
            urllib.request.urlopen(f"{url}/api/2.0/mlflow/experiments/search?max_results=1", timeout=2)
            break
        except OSError:
            time.sleep(0.5)
    else:
        server.kill()
        pytest.fail("mlflow server did not start in 180 s")
    yield url
    os.killpg(server.pid, 15)
    try:
        server.wait(timeout=30)
    except subprocess.TimeoutExpired:  # a loaded machine shuts uvicorn down slowly: not the test's failure
        os.killpg(server.pid, 9)
        server.wait()


def test_a_sweep_against_a_tracking_server(tmp_path, tracking_server):
    proc = run_cli(["-m", *SWEEP, "n_seeds=2", *LEAN, f"tracking.uri={tracking_server}",
                    f"tracking.coordination_uri=sqlite:///{tmp_path / 'coordination.db'}"], cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    _check_sweep(tracking_server, n_seeds=2)
    kid = next(r for r in all_runs(tracking_server, "hte-bench") if r.data.tags.get("hte_bench.kind") == "seed")
    files = {f.path for f in client(tracking_server).list_artifacts(kid.info.run_id)}
    assert "predictions.parquet" in files  # artifacts travel through the server
    assert not (tmp_path / "mlruns" / "mlflow.db").exists()  # nothing went to the local default store
