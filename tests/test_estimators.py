"""Every estimator config builds, fits for real, and reports intervals only where its library has inference."""
import numpy as np
import pandas as pd
import pytest

from conftest import compose
from hte_bench.cli.run import group_options
from hte_bench.data import engagement
from hte_bench.estimators import NoInference
from hte_bench.estimators.baselines import ConstantEffect, ZeroEffect
from hte_bench.estimators.ols import InteractionOLS
from hte_bench.seed import fit_and_estimate, make_estimator

# Shrink forests so each fit takes well under a second; structure and nuisance models stay as configured.
SHRINK = {"causal_forest_dml": ["++estimator.model.n_estimators=40", "++outcome_model.n_estimators=20"],
          "linear_dml": ["++outcome_model.n_estimators=20"],
          "dr_learner": ["++outcome_model.n_estimators=20"],
          "t_learner": ["++outcome_model.n_estimators=20"],
          "s_learner": ["++outcome_model.n_estimators=20"],
          "x_learner": ["++outcome_model.n_estimators=20"]}
WITH_INTERVALS = {"causal_forest_dml", "linear_dml", "dr_learner", "interaction_ols", "constant_effect"}


@pytest.fixture(scope="module")
def data():
    return engagement.generate(seed=0, n=400, n_test=150)


def test_every_shipped_estimator_is_covered():
    assert set(group_options("estimator")) == WITH_INTERVALS | {"t_learner", "s_learner", "x_learner",
                                                                 "zero_effect"}


@pytest.mark.parametrize("name", group_options("estimator"))
def test_estimator_config_fits_and_reports(name, data):
    dataset, truth = data
    cfg = compose([f"estimator={name}", *SHRINK.get(name, [])])
    est = fit_and_estimate(make_estimator(cfg, seed=0), dataset, alpha=0.05, seed=0, n_repeats=2, max_rows=100)
    assert est.tau_hat_train.shape == (400,) and est.tau_hat_test.shape == (150,)
    assert np.isfinite(est.ate_hat)
    assert list(est.importance.index) == ["age", "engagement"]
    assert est.insights.startswith("# Insights")
    if name in WITH_INTERVALS:
        assert est.interval_reason is None and est.ate_interval_reason is None
        assert np.all(est.lower_test <= est.upper_test)
        assert est.ate_lower <= est.ate_hat <= est.ate_upper
    else:
        # No invented interval: NaN metrics and a reason instead.
        assert est.lower_test is None and est.interval_reason
        assert np.isnan(est.ate_lower) and est.ate_interval_reason
    if name != "zero_effect":
        # Every real estimator finds the engagement gradient (tau = 2 + 3·engagement) in the right direction.
        assert np.corrcoef(est.tau_hat_test, truth.tau_test)[0, 1] > 0.3 or name == "constant_effect"


def test_seeded_models_refit_identically(data):
    dataset, _ = data
    cfg = compose(["estimator=causal_forest_dml", *SHRINK["causal_forest_dml"]])
    a = make_estimator(cfg, seed=5).fit(dataset.X_train, dataset.T_train, dataset.Y_train)
    b = make_estimator(cfg, seed=5).fit(dataset.X_train, dataset.T_train, dataset.Y_train)
    np.testing.assert_array_equal(a.effect(dataset.X_test), b.effect(dataset.X_test))


def test_interaction_ols_intervals_are_statsmodels_contrasts(data):
    dataset, _ = data
    m = InteractionOLS().fit(dataset.X_train, dataset.T_train, dataset.Y_train)
    X = dataset.X_test.iloc[:5]
    lo, hi = m.effect_interval(X, 0.1)
    expected = m.result_.t_test(m._contrast(X)).conf_int(alpha=0.1)
    np.testing.assert_allclose(np.column_stack([lo, hi]), expected, rtol=1e-10)
    # tau(x) = b_T + b_age·age + b_eng·engagement
    p = m.result_.params
    np.testing.assert_allclose(m.effect(X), p["T"] + p["T:x0"] * X["age"] + p["T:x1"] * X["engagement"])
    lo, hi = m.ate_interval(dataset.X_train, 0.05)
    assert lo < m.ate(dataset.X_train) < hi
    assert "As engagement increases, treatment effect increases." in m.insights(0.05)
    assert "age" in m.summary() and "engagement" in m.summary()


def test_interaction_ols_handles_awkward_feature_names():
    rng = np.random.default_rng(0)
    X = pd.DataFrame({"a b": rng.normal(size=200), "c-d": rng.normal(size=200)})
    T = rng.binomial(1, 0.5, 200)
    Y = X["a b"] * T + rng.normal(size=200)
    m = InteractionOLS().fit(X, T, Y)
    assert m.native_importance().index.tolist() == ["a b", "c-d"]


def test_constant_effect_is_the_adjusted_treatment_coefficient(data):
    dataset, _ = data
    m = ConstantEffect().fit(dataset.X_train, dataset.T_train, dataset.Y_train)
    assert np.ptp(m.effect(dataset.X_test)) == 0
    assert m.ate(dataset.X_train) == pytest.approx(m.result_.params["T"])
    unadjusted = ConstantEffect(adjust=False).fit(dataset.X_train, dataset.T_train, dataset.Y_train)
    T, Y = dataset.T_train, dataset.Y_train
    assert unadjusted.ate(dataset.X_train) == pytest.approx(Y[T == 1].mean() - Y[T == 0].mean())


def test_zero_effect_has_no_interval(data):
    dataset, _ = data
    m = ZeroEffect().fit(dataset.X_train, dataset.T_train, dataset.Y_train)
    assert not m.effect(dataset.X_test).any()
    with pytest.raises(NoInference):
        m.effect_interval(dataset.X_test, 0.05)


def test_readme_example_estimator_from_a_user_config_dir(data):
    dataset, _ = data
    cfg = compose(["estimator=forest_dr", "++estimator.model.n_estimators=40",
                   "++estimator.model.model_regression.n_estimators=20"])
    adapter = make_estimator(cfg, seed=3)
    assert adapter.model.model_regression.random_state == 3
    est = fit_and_estimate(adapter, dataset, alpha=0.05, seed=3, n_repeats=2, max_rows=100)
    assert est.lower_test is not None and est.native_importance is not None


def test_final_stage_variants_reuse_the_nuisance_fit_with_identical_results(data):
    from hte_bench.estimators.econml_adapter import clear_nuisance_cache

    dataset, _ = data
    base = ["estimator=causal_forest_dml", *SHRINK["causal_forest_dml"]]

    def fit(leaf):
        adapter = make_estimator(compose([*base, f"estimator.model.min_samples_leaf={leaf}"]), seed=2)
        return adapter.fit(dataset.X_train, dataset.T_train, dataset.Y_train)

    clear_nuisance_cache()
    fit(10)
    reused = fit(5)
    clear_nuisance_cache()
    fresh = fit(5)
    assert reused.reused_nuisance_ and not fresh.reused_nuisance_
    np.testing.assert_array_equal(reused.effect(dataset.X_test), fresh.effect(dataset.X_test))
    np.testing.assert_array_equal(reused.effect_interval(dataset.X_test, 0.05)[0],
                                  fresh.effect_interval(dataset.X_test, 0.05)[0])
    # A different nuisance model is a different first stage: no reuse.
    other = make_estimator(compose(["estimator=causal_forest_dml", "++estimator.model.n_estimators=40",
                                    "outcome_model=gradient_boosting"]), seed=2)
    assert not other.fit(dataset.X_train, dataset.T_train, dataset.Y_train).reused_nuisance_
