"""Ray: hte-bench's Ray launcher and seeds as Ray tasks on a local Ray started by the test (loopback).

Apart from test_cluster.py because of its module-scoped Ray: the tests of a module with one go to one
pytest-xdist worker (conftest.py), and the SLURM and PostgreSQL tests need not wait behind Ray's."""
import os

import pytest

from conftest import LEAN, all_runs, client, run_cli
from test_cluster import TWO_BY_TWO, check_nested

pytestmark = pytest.mark.usefixtures("no_ray_telemetry")


@pytest.fixture(scope="module")
def local_ray():
    """A Ray on loopback, started by the test (as a cluster's head would be); its address."""
    ray = pytest.importorskip("ray")
    os.environ["RAY_USAGE_STATS_ENABLED"] = "0"
    context = ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    # Ray names its head by this machine's network address but listens on every interface: loopback it is.
    yield "127.0.0.1:" + context.address_info["gcs_address"].rsplit(":", 1)[1]
    ray.shutdown()


def test_ray_launcher_runs_configurations_as_ray_tasks(tmp_path, local_ray, migrated_mlruns):
    # The jobs run in workers of the test's Ray, whose environment and folder are not the CLI's: the
    # sweep run id, the store and the outputs must still be the CLI's.
    uri = migrated_mlruns(tmp_path)
    proc = run_cli(["-m", "hydra/launcher=ray", f"hydra.launcher.address={local_ray}", *TWO_BY_TWO], cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    check_nested(uri, n_configs=2, n_seeds=2)
    assert len(list(tmp_path.glob("mlruns/hydra/multirun_*/*/hte-bench.log"))) == 2


def test_seeds_as_ray_tasks_match_serial_seeds(tmp_path, local_ray, migrated_mlruns):
    # joblib_backend=ray joins the Ray this process already runs (a cluster would be $RAY_ADDRESS).
    from conftest import run_composed

    config = ["estimator=interaction_ols", "n_seeds=2", *LEAN]
    uri, serial_uri = migrated_mlruns(tmp_path / "ray"), migrated_mlruns(tmp_path / "serial")
    on_ray = run_composed([*config, "n_jobs=2", "joblib_backend=ray", f"tracking.uri={uri}"])
    serial = run_composed([*config, f"tracking.uri={serial_uri}"])
    assert on_ray["n_seeds_ok"] == 2
    def estimates(summary: dict) -> dict:  # everything but timings and run ids
        return {k: v for k, v in summary.items() if not k.startswith("_") and "seconds" not in k}

    assert len(estimates(serial)) > 20 and estimates(on_ray) == pytest.approx(estimates(serial), rel=1e-12,
                                                                               nan_ok=True)
    seed_run = next(r for r in all_runs(uri, "hte-bench") if r.data.tags.get("hte_bench.kind") == "seed")
    files = {f.path for f in client(uri).list_artifacts(seed_run.info.run_id)}
    assert "predictions.parquet" in files  # a seed's files travel back from its Ray worker
