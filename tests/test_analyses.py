"""Tests of hte_bench.evaluation.analyses (one shape, run_all, failure isolation, metric names) and of the
best linear projection behind insights.md, on real fits."""
import io
import math

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest

from conftest import SMALL, compose
from hte_bench.data import engagement
from hte_bench.estimators.base import Estimate
from hte_bench.evaluation import analyses as A
from hte_bench.evaluation import registry
from hte_bench.evaluation import insights as I
from hte_bench.seed import evaluate_seed, fit_and_estimate, make_estimator


@pytest.fixture(autouse=True)
def no_open_pyplot_figures():
    plt.close("all")
    yield
    assert plt.get_fignums() == []


def _fitted(name: str, seed: int, n: int = 400, n_test: int = 300, overrides=()):
    """A real fit of a shipped estimator config on engagement data, as the runner does it."""
    dataset, truth = engagement.generate(seed=seed, n=n, n_test=n_test)
    cfg = compose([f"estimator={name}", *overrides])
    return dataset, truth, fit_and_estimate(make_estimator(cfg, seed=seed), dataset, alpha=0.05)


@pytest.fixture(scope="module")
def forest():
    return _fitted("causal_forest_dml", seed=0, overrides=["estimator.model.n_estimators=40"])


# --------------------------------------------------------------------------- run_all


def test_run_all_gives_one_result_of_every_analysis(forest):
    dataset, truth, est = forest
    settings = A.Settings(seed=0, importance_repeats=2, importance_max_rows=200)
    out = A.run_all(dataset, est, truth, settings)
    assert out.notes == []
    unregistered = [m for m in out.metrics if not registry.is_registered(m)]  # the registry has their metadata
    assert not unregistered, unregistered
    assert all(isinstance(v, float) for v in out.metrics.values())
    assert {"importance", "best_linear_projection"} <= set(out.tables)
    assert {"importance.png", "best_linear_projection.png", "drtester_qini.png"} <= set(out.figures)
    buf = io.BytesIO()
    out.figures["best_linear_projection.png"].savefig(buf, format="png")
    assert buf.getvalue()[:4] == b"\x89PNG"
    assert out.texts["insights.md"].startswith("# Insights")
    # One DR nuisance fit for the seed, shared by insights and truth_free (no on-disk cache here).
    (nuisances,) = settings.cache.values()
    assert settings.nuisances_cached is False
    assert out.metrics["policy_value_treat_all"] == pytest.approx(nuisances.test.aipw().mean())
    # Engagement declares no subgroups: that analysis adds nothing.
    assert not any(k.startswith("subgroups") for k in out.tables)


def test_without_truth_no_metric_needs_it(forest):
    dataset, _, est = forest
    out = A.run_all(dataset, est, None, A.Settings(seed=0, importance_repeats=2, importance_max_rows=200,
                                                   plots=False))
    assert out.metrics and out.figures == {}
    assert not [m for m in out.metrics if registry.METRICS[m].needs_truth]
    assert out.tables["importance"]["true"].isna().all()
    assert "insights.md" in out.texts


def test_a_failing_analysis_leaves_a_note_not_an_exception(forest):
    dataset, truth, est = forest

    def broken(X):
        raise RuntimeError("effect exploded")

    bad = Estimate(tau_hat_train=est.tau_hat_train, tau_hat_test=est.tau_hat_test, ate_hat=est.ate_hat,
                   effect_fn=broken)
    out = A.run_all(dataset, bad, truth, A.Settings(seed=0, plots=False), which=["importance", "insights"])
    assert out.notes == ["importance failed: RuntimeError: effect exploded"]
    assert "insights.md" in out.texts  # the BLP uses tau_hat only: unaffected
    with pytest.raises(ValueError, match="unknown"):
        A.run_all(dataset, est, truth, A.Settings(seed=0), which=["nope"])


def test_selected_reads_the_config_switches():
    assert A.selected({"truth_free": False}) == ["importance", "insights", "subgroups", "interpretation"]
    assert A.selected(None) == list(A.ANALYSES)


# --------------------------------------------------------------------------- best linear projection


def test_best_linear_projection_is_ols_with_hc3_by_hand():
    rng = np.random.default_rng(0)
    n = 400
    X = pd.DataFrame({"a": rng.normal(2.0, 3.0, n), "b": rng.uniform(size=n), "const": 1.0})
    scores = 1.0 + 0.5 * X["a"] + rng.normal(0, 1 + np.abs(X["a"]), n)  # heteroskedastic on purpose
    table = I.best_linear_projection(scores, X, alpha=0.05)
    assert table.attrs["dropped"] == ["const"]
    assert list(table.index) == [I.INTERCEPT, "a", "b"]
    D = np.column_stack([np.ones(n), X["a"] - X["a"].mean(), X["b"] - X["b"].mean()])
    y = scores.to_numpy()
    bread = np.linalg.inv(D.T @ D)
    beta = bread @ D.T @ y
    resid = y - D @ beta
    h = np.einsum("ij,jk,ik->i", D, bread, D)
    V = bread @ (D.T * (resid / (1 - h)) ** 2) @ D @ bread
    np.testing.assert_allclose(table["coef"], beta, rtol=1e-10)
    np.testing.assert_allclose(table["se"], np.sqrt(np.diag(V)), rtol=1e-8)
    # Centered features: the intercept is the mean score.
    assert table.loc[I.INTERCEPT, "coef"] == pytest.approx(y.mean())
    assert I.named_modifiers(table) == ["a"]
    per_sd = I.best_linear_projection(scores, X, standardize=True)
    assert per_sd.loc["a", "coef"] == pytest.approx(beta[1] * X["a"].std())
    assert per_sd.loc["a", "pvalue"] == pytest.approx(table.loc["a", "pvalue"])


def test_insights_text_names_modifiers_with_size_and_keeps_the_native_statement():
    dataset, truth, est = _fitted("linear_dml", seed=3)
    out = A.run_all(dataset, est, truth, A.Settings(seed=3, plots=False), which=["insights"])
    text = out.texts["insights.md"]
    table = out.tables["best_linear_projection"]
    assert I.named_modifiers(table) == ["engagement"]
    row = table.loc["engagement"]
    assert f"Each +1 sd of engagement ({row['sd']:.3g}) raises the effect by {row['coef']:.3g}" in text
    assert f"This estimator's τ̂ moves by {row['tau_hat_slope']:+.3g} per step." in text
    assert row["tau_hat_slope"] > 0  # LinearDML's estimate moves with engagement too
    assert "(interval includes zero): age" in text
    # LinearDML keeps its own coefficient statement beneath the BLP.
    assert "## The estimator's own coefficient inference" in text
    assert "As engagement increases, treatment effect increases." in text
    assert out.metrics == {"insights_true_modifiers_named": 1.0, "insights_non_modifiers_named": 0.0}


@pytest.mark.slow
def test_forest_insights_name_engagement_not_age_across_seeds():
    """The reported issue: importance alone made the forest's insights claim age. The BLP must not."""
    good = []
    for seed in range(10):
        dataset, truth, est = _fitted("causal_forest_dml", seed=seed, n=1000, n_test=1000,
                                      overrides=["estimator.model.n_estimators=100"])
        out = A.run_all(dataset, est, truth, A.Settings(seed=seed, plots=False), which=["insights"])
        named = I.named_modifiers(out.tables["best_linear_projection"])
        good.append("engagement" in named and "age" not in named)
    print(f"engagement named and age not: {sum(good)} of 10 seeds")
    assert sum(good) >= 9, good


# --------------------------------------------------------------------------- the runner's wiring


def test_evaluate_seed_writes_the_analyses_outputs(tmp_path):
    cfg = compose([*SMALL, "estimator=cf_small", "data=workforce", "tracking.cache=false"])
    result = evaluate_seed(cfg, seed=0, workdir=str(tmp_path), title="cf_small 1a2b3c on workforce")
    assert result.status == "FINISHED", result.tags
    assert "analysis_notes" not in result.tags, result.tags.get("analysis_notes")
    out = tmp_path / "seed_0"
    for name in ("insights.md", "importance.csv", "best_linear_projection.csv", "subgroups/aipw_ate.csv",
                 "plots/importance.png", "plots/best_linear_projection.png", "plots/subgroups_heatmap.png"):
        assert (out / name).is_file(), name
    # A downloaded insights.md names its configuration, condition and seed; a p-value of 0 reads p < 1e-16.
    assert (out / "insights.md").read_text().startswith(
        "# Insights: cf_small 1a2b3c on workforce, seed 0\n\n## Effect modifiers")
    from hte_bench.evaluation.insights import p_text
    assert p_text(0.0, 2) == "p < 1e-16" and p_text(0.0123, 2) == "p = 0.012"
    for name in ("importance_rank_corr", "insights_true_modifiers_named", "aipw_ate_covered", "rscore"):
        assert math.isfinite(result.metrics[name]), name


def test_dr_nuisances_from_the_disk_cache_are_bit_identical_to_a_fresh_fit(forest, tmp_path):
    from hte_bench.evaluation.dr_scores import cached_dr_nuisances, fit_dr_nuisances

    dataset, truth, est = forest
    fresh = fit_dr_nuisances(dataset, seed=0)
    first, hit_first = cached_dr_nuisances(dataset, seed=0, location=str(tmp_path / "cache"))
    again, hit_again = cached_dr_nuisances(dataset, seed=0, location=str(tmp_path / "cache"))
    assert (hit_first, hit_again) == (False, True)
    for got in (first, again):
        for split in ("train", "test"):
            a, b = getattr(fresh, split), getattr(got, split)
            assert np.array_equal(a.reg_preds, b.reg_preds) and np.array_equal(a.prop_preds, b.prop_preds)
            assert np.array_equal(a.Y, b.Y) and np.array_equal(a.T, b.T)
    # Another seed, another number of folds or another model is another entry, never a stale hit.
    from sklearn.ensemble import RandomForestRegressor

    for kw in ({"seed": 1}, {"seed": 0, "outcome_model": RandomForestRegressor(n_estimators=10, random_state=0)}):
        assert cached_dr_nuisances(dataset, location=str(tmp_path / "cache"), **kw)[1] is False, kw
    # And the analyses give the same numbers from the cache as without it.
    kw = dict(importance_repeats=2, importance_max_rows=200, plots=False)
    plain = A.run_all(dataset, est, truth, A.Settings(seed=0, **kw), which=["insights", "truth_free"])
    for _ in range(2):  # the second run reads the R-scorer's nuisances from the cache too
        settings = A.Settings(seed=0, cache_dir=str(tmp_path / "cache"), **kw)
        cached = A.run_all(dataset, est, truth, settings, which=["insights", "truth_free"])
    assert settings.nuisances_cached is True
    assert plain.metrics.keys() == cached.metrics.keys()
    assert all(plain.metrics[k] == cached.metrics[k] or (math.isnan(plain.metrics[k]) and math.isnan(cached.metrics[k]))
               for k in plain.metrics)
    pd.testing.assert_frame_equal(plain.tables["best_linear_projection"], cached.tables["best_linear_projection"])


def test_tracking_plots_k_draws_the_first_k_seeds_of_the_list_only():
    from hte_bench.artifacts import seed_plots

    cfg = compose(["seeds=[7,3,5]", "tracking.plots=2"])
    assert [seed_plots(cfg, s) for s in (7, 3, 5)] == [True, True, False]
    assert not any(seed_plots(compose(["tracking.plots=0"]), s) for s in range(3))
    assert all(seed_plots(compose(["tracking.plots=true", "n_seeds=5"]), s) for s in range(5))


def test_analyses_seeds_k_fits_the_analyses_models_on_the_first_k_seeds_and_says_so(store):
    """Past analyses.seeds a seed keeps importance and every truth metric but no model-fitting analysis; its
    insights.md says why, and the configuration's description and tag name the seeds the means cover."""
    from conftest import all_runs, run_composed

    run_composed([*SMALL, "estimator=interaction_ols", "n_seeds=3", "analyses.seeds=1", "analyses.subgroups=false",
                  "tracking.plots=false", "tracking.cache=false", f"tracking.uri={store}", "tracking.experiment=k"])
    runs = all_runs(store, "k")
    seeds = {int(r.data.tags["seed"]): r for r in runs if r.data.tags["hte_bench.kind"] == "seed"}
    parent = next(r for r in runs if r.data.tags["hte_bench.kind"] == "config")
    assert "rscore" in seeds[0].data.metrics and "cate_tree_leaf_rmse" in seeds[0].data.metrics
    for s in (1, 2):
        assert not {"rscore", "insights_true_modifiers_named", "cate_tree_leaf_rmse"} & set(seeds[s].data.metrics)
        assert {"cate_rmse_test", "importance_rank_corr"} <= set(seeds[s].data.metrics)
        assert seeds[s].data.tags["analyses_skipped"] == "insights, truth_free, interpretation (past analyses.seeds=1)"
    assert parent.data.tags["analyses_seeds"] == "0"
    assert "seeds 0 only (`analyses.seeds`)" in parent.data.tags["mlflow.note.content"]
    from mlflow.artifacts import download_artifacts

    text = open(download_artifacts(run_id=seeds[1].info.run_id, artifact_path="insights.md",
                                   tracking_uri=store)).read()
    assert "first 1 seeds of the configuration (`analyses.seeds=1`" in text
    assert A.selected(None, all_seeds=False) == ["importance"]


def test_a_bad_analyses_seeds_is_one_line_naming_the_field():
    from hte_bench.config import validate
    from hte_bench.errors import ConfigError

    with pytest.raises(ConfigError, match=r"analyses.seeds.*true \(every seed\), false, or k ≥ 0"):
        validate(compose(["analyses.seeds=-1"]))
    with pytest.raises(ConfigError, match=r"analyses.insights='maybe' is not allowed; analyses.insights must be true or false"):
        validate(compose(["analyses.insights=maybe"]))


def test_true_importance_is_computed_once_per_test_sample_and_seed_and_equals_a_fresh_one():
    from hte_bench.evaluation.importance import effect_importance

    dataset, truth = engagement.generate(seed=3, n=300, n_test=200)
    kw = {"n_repeats": 2, "max_rows": 200}
    A._TRUE_IMPORTANCE.clear()
    first = A._true_importance(truth, dataset, 3, kw)
    again = A._true_importance(truth, dataset, 3, kw)
    assert len(A._TRUE_IMPORTANCE) == 1
    pd.testing.assert_series_equal(first, effect_importance(truth.tau_fn, dataset.X_test, 3, **kw))
    pd.testing.assert_series_equal(first, again)
    A._true_importance(truth, dataset, 4, kw)  # another seed permutes differently: its own entry
    assert len(A._TRUE_IMPORTANCE) == 2
