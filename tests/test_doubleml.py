"""DoubleML IRM and PLR through the harness: a broadcast ATE with its own interval, GATEs beside the true group effects."""
import numpy as np
import pandas as pd
import pytest
from sklearn.base import clone

from conftest import SMALL, all_runs, client, compose, run_composed
from hte_bench.data import workforce
from hte_bench.evaluation.subgroups import Subgroup
from hte_bench.seed import fit_and_estimate, make_estimator

FEW_TREES = ["++outcome_model.n_estimators=20", "estimator.n_folds=3"]
QUIET = ["analyses.truth_free=false", "importance_repeats=1", "tracking.plots=false"]


def _fit(name, seed=0, n=600, extra=()):
    dataset, truth = workforce.generate(seed=seed, n=n, n_test=200)
    cfg = compose([f"estimator={name}", "data=workforce", *FEW_TREES, *extra])
    adapter = make_estimator(cfg, seed=seed)
    return dataset, truth, adapter, fit_and_estimate(adapter, dataset, alpha=0.05)


@pytest.mark.parametrize("name", ["doubleml_irm", "doubleml_plr"])
def test_ate_with_its_own_interval_broadcast_to_every_unit(name):
    dataset, truth, adapter, est = _fit(name)
    assert est.interval_kind == "broadcast_ate" and est.ate_interval_kind == "ate"
    assert np.all(est.tau_hat_test == est.ate_hat) and np.all(est.lower_test == est.ate_lower)
    # The interval is DoubleML's: coef ± z·se of its orthogonal score.
    se = float(adapter.model_.se[0])
    assert est.ate_upper - est.ate_lower == pytest.approx(2 * 1.959964 * se, rel=1e-5)
    assert abs(est.ate_hat - truth.ate_train) < 0.1
    assert "coef" in est.summary
    # A scikit-learn estimator: clone keeps the parameters, and the same seed refits identically.
    again = clone(adapter).fit(dataset.X_train, dataset.T_train, dataset.Y_train)
    assert again.ate_ == adapter.ate_ and again.ate_se_ == adapter.ate_se_


def test_gate_has_joint_intervals_and_the_true_group_means():
    dataset, truth, adapter, est = _fit("doubleml_irm")
    education = Subgroup(**workforce.SUBGROUPS[0]).assign(dataset.X_train)
    table = est.group_effects_fn(dataset.X_train, education, 0.05)
    assert list(table["level"]) == list(education.cat.categories)
    # A GATE is the mean of DoubleML's orthogonal signal within the level.
    signal = np.squeeze(adapter.model_.psi_elements["psi_b"], axis=2)[:, 0]
    means = pd.Series(signal).groupby(education.astype(str).to_numpy()).mean()
    np.testing.assert_allclose(table["gate"], means[table["level"]].to_numpy(), rtol=1e-8)
    # Joint intervals are wider than the pointwise ones.
    pointwise = adapter.model_.gate(pd.get_dummies(education)).confint(joint=False)
    assert np.all(table["gate_upper"].to_numpy() - table["gate_lower"].to_numpy()
                  > (pointwise.iloc[:, 2] - pointwise.iloc[:, 0]).to_numpy())
    with pytest.raises(Exception, match="training sample"):
        est.group_effects_fn(dataset.X_test, education.iloc[:200], 0.05)


@pytest.mark.parametrize("data", ["engagement", "workforce"])
def test_doubleml_runs_through_the_harness(store, data):
    extra = ["analyses.subgroups=true"] if data == "workforce" else ["analyses.subgroups=false"]
    summary = run_composed([*SMALL, *QUIET, *FEW_TREES, *extra, f"data={data}", "estimator=doubleml_irm",
                            "n_seeds=1", f"tracking.uri={store}", "tracking.experiment=dml"])
    assert summary["n_seeds_ok"] == 1
    (kid,) = [r for r in all_runs(store, "dml") if r.data.tags.get("mlflow.parentRunId") == summary["_parent_run_id"]]
    assert kid.data.tags["interval_kind"] == "broadcast_ate" and kid.data.tags["ate_interval_kind"] == "ate"
    if data == "workforce":
        path = client(store).download_artifacts(kid.info.run_id, "subgroups/gate.csv")
        gate = pd.read_csv(path, dtype={"level": str})
        assert set(gate["subgroup"]) == {s["name"] for s in workforce.SUBGROUPS}
        # The true column is the training sample's mean tau in each level, recomputed here.
        dataset, truth = workforce.generate(seed=0, n=300, n_test=200)
        rural = gate[gate["subgroup"] == "rural"].set_index("level")
        for level, value in (("0", 0.0), ("1", 1.0)):
            mask = dataset.X_train["rural"].to_numpy() == value
            assert rural.loc[level, "tau_true_mean"] == pytest.approx(truth.tau_train[mask].mean())
        assert gate["covered"].isin([0.0, 1.0]).all()


@pytest.mark.slow
def test_irm_ate_coverage_on_workforce_over_100_seeds():
    """Nominal 95%: the cross-fitted doubly robust interval covers the sample ATE in 90-98% of seeds."""
    cfg = compose(["estimator=doubleml_irm", "data=workforce", "outcome_model=gradient_boosting"])
    covered = []
    for seed in range(100):
        dataset, truth = workforce.generate(seed=seed, n=2000, n_test=10)
        est = fit_and_estimate(make_estimator(cfg, seed=seed), dataset, alpha=0.05)
        covered.append(est.ate_lower <= truth.ate_train <= est.ate_upper)
    assert 0.90 <= np.mean(covered) <= 0.98, np.mean(covered)
