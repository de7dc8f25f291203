"""What the MLflow UI shows, read through the REST API its pages call: descriptions, metric counts, tables."""
import json
import urllib.parse
import urllib.request

from conftest import LEAN, run_composed

EXPERIMENT = "ui"  # the session's server (conftest.mlflow_server): this test's runs are this experiment's


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


def test_the_ui_shows_descriptions_curated_metrics_and_tables(tmp_path, mlflow_server, monkeypatch):
    url = mlflow_server
    monkeypatch.chdir(tmp_path)
    run_composed([*LEAN, "estimator=interaction_ols", "n_seeds=2", f"tracking.uri={url}",
                  f"tracking.experiment={EXPERIMENT}"])
    from hte_bench.cli.compare import leaderboard_main

    leaderboard_main(["--tracking-uri", url, "--experiment", EXPERIMENT])

    exp = _get(url, "/api/2.0/mlflow/experiments/get-by-name", experiment_name=EXPERIMENT)["experiment"]
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
    # A seed's description gives its ATE interval with level and kind, and the per-unit intervals' level.
    seed_note = _tags(seeds[0])["mlflow.note.content"]
    assert "(95% interval [" in seed_note and "kind ate: " in seed_note and "the truth)" in seed_note
    assert "by 95% intervals" in seed_note

    (board,) = _runs(url, exp["experiment_id"], "leaderboard")
    assert parent["info"]["run_id"] in _tags(board)["mlflow.note.content"]  # a link to the configuration run
    table = _table(url, board["info"]["run_id"], "leaderboard.json")
    assert table["data"] and "rank" in table["columns"]
