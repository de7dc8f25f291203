"""What the MLflow UI shows, read through the REST API its pages call: descriptions, metric counts, tables."""
import json
import os
import subprocess
import sys
import time
import urllib.parse
import urllib.request

import pytest
from conftest import SMALL, run_composed
from test_scale import _free_port

FAST = [*SMALL, "estimator=interaction_ols", "n_seeds=2", "analyses.truth_free=false",
        "analyses.subgroups=false", "tracking.plots=false"]


@pytest.fixture
def ui_server(tmp_path):
    """``mlflow server`` on loopback, one worker (starts faster than test_scale's four on a busy machine)."""
    port = _free_port()
    server = subprocess.Popen([sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(port),
                               "--workers", "1", "--backend-store-uri", f"sqlite:///{tmp_path / 'ui.db'}",
                               "--artifacts-destination", str(tmp_path / "ui_artifacts")],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    url, deadline = f"http://127.0.0.1:{port}", time.time() + 180
    while not _up(url):
        if time.time() > deadline or server.poll() is not None:
            os.killpg(server.pid, 9)
            pytest.fail("mlflow server did not start in 180 s")
        time.sleep(0.5)
    yield url
    os.killpg(server.pid, 15)
    server.wait(timeout=30)


def _up(url: str) -> bool:
    try:
        urllib.request.urlopen(f"{url}/health", timeout=2)
        return True
    except OSError:
        return False


def _get(url: str, path: str, **query) -> dict:
    with urllib.request.urlopen(f"{url}{path}?{urllib.parse.urlencode(query)}", timeout=30) as resp:
        return json.loads(resp.read())


def _post(url: str, path: str, body: dict) -> dict:
    req = urllib.request.Request(f"{url}{path}", data=json.dumps(body).encode(),
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=30) as resp:
        return json.loads(resp.read())


def _runs(url: str, experiment_id: str, kind: str) -> list[dict]:
    # The runs table of the 'Model training' view asks the ajax twin of runs/search.
    body = {"experiment_ids": [experiment_id], "filter": f"tags.`hte_bench.kind` = '{kind}'", "max_results": 100}
    return _post(url, "/ajax-api/2.0/mlflow/runs/search", body).get("runs", [])


def _tags(run: dict) -> dict:
    return {t["key"]: t["value"] for t in run["data"].get("tags", [])}


def _table(url: str, run_id: str, path: str) -> dict:
    """A logged table as the UI fetches it (mlflow.log_table writes pandas 'split' JSON)."""
    with urllib.request.urlopen(f"{url}/get-artifact?{urllib.parse.urlencode({'path': path, 'run_uuid': run_id})}",
                                timeout=30) as resp:
        return json.loads(resp.read())


def test_the_ui_shows_descriptions_curated_metrics_and_tables(tmp_path, ui_server, monkeypatch):
    url = ui_server
    monkeypatch.chdir(tmp_path)
    run_composed([*FAST, f"tracking.uri={url}"])
    from hte_bench.cli.compare import leaderboard_main

    leaderboard_main(["--tracking-uri", url])

    exp = _get(url, "/api/2.0/mlflow/experiments/get-by-name", experiment_name="hte-bench")["experiment"]
    exp_note = {t["key"]: t["value"] for t in exp.get("tags", [])}["mlflow.note.content"]
    assert "Configuration runs" in exp_note and "aggregate.json" in exp_note

    (parent,) = _runs(url, exp["experiment_id"], "config")
    metrics = {m["key"] for m in parent["data"]["metrics"]}
    assert len(metrics) <= 40, sorted(metrics)
    assert {"cate_rmse_test_mean", "cate_rmse_test_ci_lower", "cate_rmse_test_ci_upper",
            "n_seeds_ok", "ate_coverage_rate"} <= metrics
    assert "cate_mse_train_std" not in metrics  # in aggregate.json only
    tags = _tags(parent)
    note = tags["mlflow.note.content"]
    assert "**interaction_ols** fitted on **engagement" in note and "n_test=200" in note and "`cate_rmse_test`" in note
    assert "t 95 % across seeds" in note and f"intervals: **{tags['interval_kind']}**" in note
    assert tags["n_seeds"] == "2" and "n_seeds" not in {p["key"] for p in parent["data"].get("params", [])}
    # log_table registers the table for the Evaluation view.
    assert {"path": "per_seed.json", "type": "table"} in json.loads(tags["mlflow.loggedArtifacts"])
    per_seed = _table(url, parent["info"]["run_id"], "per_seed.json")
    assert len(per_seed["data"]) == 2 and "cate_rmse_test" in per_seed["columns"]

    seeds = _runs(url, exp["experiment_id"], "seed")
    assert sorted(r["info"]["run_name"] for r in seeds) == ["interaction_ols/seed=0", "interaction_ols/seed=1"]
    assert all(len(r["data"]["metrics"]) > 20 for r in seeds)  # seed runs keep every per-seed metric

    (board,) = _runs(url, exp["experiment_id"], "leaderboard")
    assert parent["info"]["run_id"] in _tags(board)["mlflow.note.content"]  # a link to the configuration run
    table = _table(url, board["info"]["run_id"], "leaderboard.json")
    assert table["data"] and "rank" in table["columns"]
