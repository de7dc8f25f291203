"""Trees that say who benefits: econml's CATE and policy interpreters on any estimate, with true leaf means."""
import numpy as np
import pytest

from conftest import SMALL, all_runs, client, compose, run_composed
from hte_bench.data import workforce
from hte_bench.evaluation import analyses as A
from hte_bench.evaluation import registry
from hte_bench.seed import fit_and_estimate, make_estimator


@pytest.fixture(scope="module")
def fitted():
    dataset, truth = workforce.generate(seed=1, n=500, n_test=400)
    cfg = compose(["estimator=causal_forest_dml", "++estimator.model.n_estimators=40",
                   "++outcome_model.n_estimators=20"])
    est = fit_and_estimate(make_estimator(cfg, seed=1), dataset, alpha=0.05)
    return dataset, truth, est


def test_leaf_true_means_recomputed_from_the_rules(fitted):
    dataset, truth, est = fitted
    out = A.run_all(dataset, est, truth, A.Settings(seed=1, plots=False), which=["interpretation"])
    assert out.notes == []
    cate = out.tables["interpretation/cate_tree_leaves"]
    assert cate["n"].sum() == len(dataset.X_test) and len(cate) > 1
    text = out.texts["interpretation/cate_tree.txt"]
    for _, leaf in cate.iterrows():
        # Independently: select the leaf's rows by its printed rule, evaluate the generator's tau function.
        rows = dataset.X_test.query(leaf["rule"])
        assert len(rows) == leaf["n"]
        assert leaf["tau_true_mean"] == pytest.approx(workforce.tau(rows).mean(), rel=1e-12)
        assert leaf["tau_hat_mean"] == pytest.approx(est.effect_fn(rows).mean(), rel=1e-9)
        assert f"if {leaf['rule']}: n={leaf['n']}" in text
    # The policy tree's true value and regret, from its printed rules and the truth.
    policy = out.tables["interpretation/policy_tree_leaves"]
    treat = np.zeros(len(dataset.X_test))
    for _, leaf in policy.iterrows():
        treat[dataset.X_test.reset_index(drop=True).eval(leaf["rule"]).to_numpy()] = leaf["treat"]
    tau = truth.tau_test
    assert out.metrics["policy_tree_value_true"] == pytest.approx(np.mean(tau * treat))
    assert out.metrics["policy_tree_regret"] == pytest.approx(np.mean(np.maximum(tau, 0)) - np.mean(tau * treat))
    assert all(registry.is_registered(m) for m in out.metrics)


def test_without_truth_only_the_trees(fitted):
    dataset, _, est = fitted
    out = A.run_all(dataset, est, None, A.Settings(seed=1, plots=False), which=["interpretation"])
    assert out.metrics == {} and "true mean" not in out.texts["interpretation/cate_tree.txt"]
    assert out.tables["interpretation/cate_tree_leaves"]["tau_true_mean"].isna().all()


def test_tree_artifacts_through_the_harness(store):
    summary = run_composed([*SMALL, "data=workforce", "estimator=cf_small", "n_seeds=1", "analyses.truth_free=false",
                            "analyses.subgroups=false", "++analyses.importance=false", "++analyses.insights=false",
                            "analyses.interpretation=true", f"tracking.uri={store}", "tracking.experiment=interp"])
    (kid,) = [r for r in all_runs(store, "interp") if r.data.tags.get("mlflow.parentRunId") == summary["_parent_run_id"]]
    c = client(store)
    files = {f.path for f in c.list_artifacts(kid.info.run_id, "interpretation")}
    files |= {f.path for f in c.list_artifacts(kid.info.run_id, "plots/interpretation")}
    assert {"interpretation/cate_tree.txt", "interpretation/policy_tree.txt", "interpretation/cate_tree_leaves.csv",
            "interpretation/policy_tree_leaves.csv", "plots/interpretation/cate_tree.png",
            "plots/interpretation/policy_tree.png"} <= files
    assert {"cate_tree_leaf_rmse", "policy_tree_value_true", "policy_tree_regret"} <= set(kid.data.metrics)
    png = c.download_artifacts(kid.info.run_id, "plots/interpretation/policy_tree.png")
    assert open(png, "rb").read(4) == b"\x89PNG"
    assert "interpretation" not in A.selected({"interpretation": False})
