"""``hte-bench -m`` as a user runs it: a sweep into a real SQLite store, then every run, metric and file checked."""
import json
from pathlib import Path

import pandas as pd
import pytest

from conftest import SMALL, TEST_CONF, all_runs, client
from hte_bench.evaluation.metrics import CHILD_METRICS
from in_process import run_here

ESTIMATORS = ["cf_small", "interaction_ols", "zero_effect"]


@pytest.fixture(scope="module")
def sweep(tmp_path_factory, migrated_mlruns):
    cwd = tmp_path_factory.mktemp("user_dir")
    store = migrated_mlruns(cwd)  # creating a store is test_claims' subject; here it costs only time
    # The console entry point in this process: the sweep, not start-up, is the subject (tests/in_process.py).
    # Figures and the analyses' models on seed 0 only (their first-k rule is test_analyses'), no interpretation
    # trees (test_interpretation's): a full run's files without refitting what other tests check.
    proc = run_here(["-m", f"estimator={','.join(ESTIMATORS)}", "n_seeds=2", *SMALL, "tracking.plots=1",
                     "analyses.seeds=1", "analyses.interpretation=false", "tracking.experiment=e2e",
                     "--config-dir", str(TEST_CONF)], cwd=cwd)
    return cwd, store, proc


def test_sweep_exits_cleanly_and_keeps_the_working_directory_clean(sweep):
    cwd, _, proc = sweep
    assert proc.returncode == 0, proc.stderr[-3000:]
    # The default store and Hydra's folders live under mlruns/ only.
    assert sorted(p.name for p in cwd.iterdir()) == ["mlruns"]
    assert (cwd / "mlruns" / "mlflow.db").is_file() and (cwd / "mlruns" / "hydra").is_dir()
    assert proc.stdout.count("√PEHE test") == 3  # one summary line per configuration


def test_one_parent_per_configuration_and_one_child_per_seed(sweep):
    _, store, _ = sweep
    runs = all_runs(store, "e2e")
    parents = [r for r in runs if r.data.tags.get("hte_bench.kind") == "config"]
    assert sorted(p.data.tags["estimator"] for p in parents) == sorted(ESTIMATORS)
    for p in parents:
        kids = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == p.info.run_id]
        assert sorted(k.data.tags["seed"] for k in kids) == ["0", "1"]
        assert all(k.info.status == "FINISHED" for k in kids) and p.info.status == "FINISHED"
        assert set(CHILD_METRICS) <= set(kids[0].data.metrics)
        assert p.data.metrics["n_seeds_ok"] == 2 and p.data.metrics["n_seeds_failed"] == 0
        for m in ("cate_rmse_test_mean", "cate_rmse_test_ci_lower", "ate_rmse"):
            assert m in p.data.metrics
        assert "cate_rmse_test_std" not in p.data.metrics and len(p.data.metrics) <= 40  # the rest: aggregate.json
        assert p.data.params["data._target_"] == "hte_bench.data.engagement.generate"
        assert p.data.tags["data"] == "engagement" and len(p.data.tags["config_hash"]) == 12
        assert p.data.tags["version.econml"]


def _by_estimator(store, name):
    runs = all_runs(store, "e2e")
    parent = next(r for r in runs if r.data.tags.get("estimator") == name and r.data.tags.get("hte_bench.kind") == "config")
    kid = next(r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id
               and r.data.tags["seed"] == "0")
    return parent, kid


def test_child_artifacts(sweep):
    _, store, _ = sweep
    c = client(store)
    parent, kid = _by_estimator(store, "interaction_ols")
    files = {f.path for f in c.list_artifacts(kid.info.run_id)} | {
        f.path for f in c.list_artifacts(kid.info.run_id, "plots")}
    assert {"predictions.parquet", "importance.csv", "summary.txt", "insights.md", "plots/calibration_test.png",
            "plots/tau_scatter_test.png", "plots/importance.png"} <= files
    preds = pd.read_parquet(c.download_artifacts(kid.info.run_id, "predictions.parquet"))
    assert list(preds.columns[:5]) == ["split", "tau_true", "tau_hat", "tau_lower", "tau_upper"]
    assert (preds.split == "train").sum() == 300 and (preds.split == "test").sum() == 200
    insights = Path(c.download_artifacts(kid.info.run_id, "insights.md")).read_text()
    assert "As engagement increases, treatment effect increases." in insights
    imp = pd.read_csv(c.download_artifacts(kid.info.run_id, "importance.csv"), index_col="feature")
    assert imp.loc["engagement", "true_modifier"] and imp["true"].idxmax() == "engagement"


def test_parent_artifacts(sweep):
    _, store, _ = sweep
    c = client(store)
    parent, _ = _by_estimator(store, "cf_small")
    files = {f.path for f in c.list_artifacts(parent.info.run_id)}
    assert {"config.yaml", "per_seed.csv", "aggregate.json", "ate_across_seeds.png", "hte-bench.log"} <= files
    agg = json.loads(Path(c.download_artifacts(parent.info.run_id, "aggregate.json")).read_text())
    assert agg["n_seeds_ok"] == 2 and agg["failed_seeds"] == []
    assert "seeds ok 2" in Path(c.download_artifacts(parent.info.run_id, "hte-bench.log")).read_text()
    per_seed = pd.read_csv(c.download_artifacts(parent.info.run_id, "per_seed.csv"))
    assert per_seed.seed.tolist() == [0, 1]
    config = Path(c.download_artifacts(parent.info.run_id, "config.yaml")).read_text()
    assert "random_state: ${seed}" in config and "n_estimators: 40" in config


def test_zero_effect_says_why_it_has_no_intervals(sweep):
    _, store, _ = sweep
    _, kid = _by_estimator(store, "zero_effect")
    assert "no interval" in kid.data.tags["interval_reason"]


def test_the_sweep_run_groups_its_configurations_and_names_the_best(sweep):
    _, store, _ = sweep
    runs = all_runs(store, "e2e")
    sweeps = [r for r in runs if r.data.tags.get("hte_bench.kind") == "sweep"]
    assert len(sweeps) == 1 and sweeps[0].info.status == "FINISHED"
    sweep_id = sweeps[0].info.run_id
    parents = [r for r in runs if r.data.tags.get("hte_bench.kind") == "config"]
    assert all(p.data.tags["mlflow.parentRunId"] == sweep_id for p in parents)
    best = min(parents, key=lambda p: p.data.metrics["cate_rmse_test_mean"])
    assert sweeps[0].data.tags["best_parent_run_id"] == best.info.run_id
    assert sweeps[0].data.metrics["best_cate_rmse_test_mean"] == best.data.metrics["cate_rmse_test_mean"]
    assert f"runs/{best.info.run_id})" in sweeps[0].data.tags["mlflow.note.content"]  # a link to the best run
    assert all(p.data.tags["sweep_run_ids"] == sweep_id for p in parents)
    # Selector validation for this sweep: which configuration each truth-free score would have picked.
    files = {f.path for f in client(store).list_artifacts(sweep_id)}
    assert {"leaderboard.csv", "selector_validation.csv"} <= files
    table = pd.read_csv(client(store).download_artifacts(sweep_id, "selector_validation.csv"))
    assert {"rscore", "dr_mse"} <= set(table["selector"]) and (table["regret"] >= 0).all()
