"""A real tracking server: nothing lost, one best per data condition.

Parallel writers are elsewhere, each riding on processes another subject needs anyway: parallel jobs
(joblib launcher) on a new SQLite store in test_claims.py's two sweeps at once, through a server on
PostgreSQL in test_cluster.py."""
from conftest import LEAN, all_runs, client
from in_process import run_here

# Two cheap configurations of two data conditions.
SWEEP = ["estimator=interaction_ols", "data.noise=0.5,2.0"]
N_CONFIGS = 2


def _check_sweep(uri: str, experiment: str = "hte-bench", n_seeds: int = 2) -> None:
    runs = all_runs(uri, experiment)
    kinds = [r.data.tags.get("hte_bench.kind") for r in runs]
    assert kinds.count("config") == N_CONFIGS and kinds.count("seed") == N_CONFIGS * n_seeds
    assert kinds.count("sweep") == 1
    assert all(r.info.status == "FINISHED" for r in runs), [(r.info.run_name, r.info.status) for r in runs]
    sweep = next(r for r in runs if r.data.tags.get("hte_bench.kind") == "sweep")
    # Two noise levels are two data conditions: a best per condition, never one pooled across them.
    assert sweep.data.tags["n_conditions"] == str(N_CONFIGS)
    assert sum(k.startswith("best_config/") for k in sweep.data.tags) == N_CONFIGS


def test_a_sweep_against_a_tracking_server(tmp_path, mlflow_server):
    experiment = "scale_server"  # the server is the session's: this test's runs are this experiment's
    # In this process (tests/in_process.py): the server, not the process, is the subject.
    proc = run_here(["-m", *SWEEP, "n_seeds=2", *LEAN, f"tracking.uri={mlflow_server}",
                     f"tracking.experiment={experiment}",
                     f"tracking.coordination_uri=sqlite:///{tmp_path / 'coordination.db'}"], cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    _check_sweep(mlflow_server, experiment, n_seeds=2)
    kid = next(r for r in all_runs(mlflow_server, experiment) if r.data.tags.get("hte_bench.kind") == "seed")
    files = {f.path for f in client(mlflow_server).list_artifacts(kid.info.run_id)}
    assert "predictions.parquet" in files  # artifacts travel through the server
    assert not (tmp_path / "mlruns" / "mlflow.db").exists()  # nothing went to the local default store
