"""CausalML's learners beside econml's: every config runs through the harness; bootstrap intervals are its refits."""
import numpy as np
import pytest
from sklearn.base import clone

from conftest import SMALL, all_runs, compose, run_composed
from hte_bench.data import engagement
from hte_bench.seed import fit_and_estimate, make_estimator

NAMES = ["causalml_s_learner", "causalml_t_learner", "causalml_x_learner", "causalml_r_learner",
         "causalml_dr_learner", "causalml_causal_forest"]
FEW_TREES = ["++outcome_model.n_estimators=10"]
NO_ANALYSES = ["analyses.truth_free=false", "analyses.subgroups=false", "++analyses.importance=false",
               "++analyses.insights=false", "analyses.interpretation=false", "tracking.plots=false"]


def _shrink(name):
    return [*FEW_TREES, "++estimator.model.n_estimators=10"] if name.endswith("forest") else FEW_TREES


@pytest.mark.parametrize("data", ["engagement", "workforce"])
@pytest.mark.parametrize("name", NAMES)
def test_every_causalml_learner_runs_through_the_harness(store, name, data):
    summary = run_composed([*SMALL, "data.n_test=100", *NO_ANALYSES, *_shrink(name), f"data={data}",
                            f"estimator={name}", "n_seeds=1", f"tracking.uri={store}", "tracking.experiment=cml"])
    assert summary["n_seeds_ok"] == 1, summary
    (kid,) = [r for r in all_runs(store, "cml") if r.data.tags.get("mlflow.parentRunId") == summary["_parent_run_id"]]
    # No bootstrap asked: no interval, and the reason says how to get one.
    assert kid.data.tags["interval_kind"] == "none" and "n_bootstraps" in kid.data.tags["interval_reason"]
    assert np.isfinite(kid.data.metrics["cate_rmse_test"])


def test_bootstrap_intervals_are_percentiles_of_the_refits():
    dataset, truth = engagement.generate(seed=0, n=300, n_test=100)
    cfg = compose(["estimator=causalml_t_learner", "estimator.n_bootstraps=8", *FEW_TREES])
    adapter = make_estimator(cfg, seed=3)
    est = fit_and_estimate(adapter, dataset, alpha=0.1)
    assert est.interval_kind == "bootstrap" and est.ate_interval_kind == "bootstrap"
    assert len(adapter.bootstrap_models_) == 8
    draws = np.vstack([np.ravel(m.predict(dataset.X_test.to_numpy(float))) for m in adapter.bootstrap_models_])
    np.testing.assert_allclose(est.lower_test, np.percentile(draws, 5, axis=0))
    np.testing.assert_allclose(est.upper_test, np.percentile(draws, 95, axis=0))
    # Seeded: the same config and seed refit to the same effects and intervals.
    again = fit_and_estimate(clone(adapter), dataset, alpha=0.1)
    np.testing.assert_array_equal(again.tau_hat_test, est.tau_hat_test)
    np.testing.assert_array_equal(again.lower_test, est.lower_test)
    assert np.corrcoef(est.tau_hat_test, truth.tau_test)[0, 1] > 0.3


@pytest.mark.parametrize("name", ["causalml_r_learner", "causalml_dr_learner"])
def test_no_bootstrap_interval_for_learners_that_cross_fit_inside(name):
    # Resampling with replacement breaks their own cross-fitting: measured off-centre, so no interval is given.
    dataset, _ = engagement.generate(seed=0, n=300, n_test=100)
    cfg = compose([f"estimator={name}", "estimator.n_bootstraps=3", *FEW_TREES])
    adapter = make_estimator(cfg, seed=0)
    est = fit_and_estimate(adapter, dataset, alpha=0.05)
    assert adapter.bootstrap_models_ == [] and est.interval_kind == est.ate_interval_kind == "none"
    assert "cross-fits inside fit" in est.interval_reason and np.isnan(est.ate_lower)


def test_x_learner_uses_the_configured_propensity_model():
    dataset, _ = engagement.generate(seed=0, n=300, n_test=100)
    cfg = compose(["estimator=causalml_x_learner", "treatment_model=random_forest", *FEW_TREES])
    adapter = make_estimator(cfg, seed=0).fit(dataset.X_train, dataset.T_train, dataset.Y_train)
    assert type(adapter.propensity_model_).__name__ == "RandomForestClassifier"


def test_a_missing_library_is_named_with_the_extra_that_installs_it():
    """Without CausalML, choosing a causalml_* estimator says which extra to install (tests/test_new_user.py runs
    the refusal itself on a module that does not exist); the extras named here are pyproject's."""
    import tomllib
    from pathlib import Path

    from hte_bench.config import EXTRAS, install_hint

    pyproject = tomllib.loads((Path(__file__).resolve().parents[1] / "pyproject.toml").read_text())
    extras = pyproject["project"]["optional-dependencies"]
    for module, extra in EXTRAS.items():
        assert any(req.startswith(module) for req in extras[extra]), (module, extras[extra])
    assert install_hint("causalml") == ('pip install "hte-bench[causalml]" (in a checkout of hte-bench: '
                                        'pip install -e ".[causalml]")')
    assert install_hint("not_installed_lib") == "pip install not_installed_lib"
