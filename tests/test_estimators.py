"""Every estimator config builds, fits for real, and reports intervals only where its library has inference."""
import numpy as np
import pandas as pd
import pytest
from omegaconf import OmegaConf
from sklearn.base import clone

from conftest import compose
from hte_bench.cli.run import conf_dir, group_options
from hte_bench.errors import ConfigError
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
WITH_INTERVALS = {"causal_forest_dml", "linear_dml", "dr_learner", "interaction_ols", "constant_effect",
                  "doubleml_irm", "doubleml_plr"}
# One effect for everyone: no correlation with the true tau to check.
CONSTANT = {"constant_effect", "doubleml_irm", "doubleml_plr"}
CAUSALML = {"causalml_s_learner", "causalml_t_learner", "causalml_x_learner", "causalml_r_learner",
            "causalml_dr_learner", "causalml_causal_forest"}
SHRINK.update({name: ["++outcome_model.n_estimators=20"] for name in CAUSALML | {"doubleml_irm", "doubleml_plr"}})
SHRINK["causalml_causal_forest"] = ["++estimator.model.n_estimators=20"]


@pytest.fixture(scope="module")
def data():
    return engagement.generate(seed=0, n=400, n_test=150)


def test_every_shipped_estimator_is_covered():
    assert set(group_options("estimator")) == WITH_INTERVALS | CAUSALML | {"t_learner", "s_learner",
                                                                            "x_learner", "zero_effect"}


@pytest.mark.parametrize("name", group_options("estimator"))
def test_estimator_config_fits_and_reports(name, data):
    dataset, truth = data
    cfg = compose([f"estimator={name}", *SHRINK.get(name, [])])
    est = fit_and_estimate(make_estimator(cfg, seed=0), dataset, alpha=0.05)
    assert est.tau_hat_train.shape == (400,) and est.tau_hat_test.shape == (150,)
    assert np.isfinite(est.ate_hat)
    assert est.effect_fn is not None and est.effect_fn(dataset.X_test).shape == (150,)
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
        assert np.corrcoef(est.tau_hat_test, truth.tau_test)[0, 1] > 0.3 or name in CONSTANT


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


@pytest.mark.parametrize("interactions", [True, False])
def test_interaction_ols_is_the_fit_of_its_formula(data, interactions):
    # The design is built without patsy (its parsing cost twice the fit); the fit must stay the formula's.
    import statsmodels.formula.api as smf

    dataset, _ = data
    m = InteractionOLS(interactions=interactions, cov_type="HC3").fit(dataset.X_train, dataset.T_train, dataset.Y_train)
    frame = pd.DataFrame(dataset.X_train.to_numpy(float), columns=m.aliases_).assign(T=dataset.T_train, Y=dataset.Y_train)
    formula = smf.ols(m.formula_, data=frame).fit(cov_type="HC3")
    assert list(m.result_.params.index) == list(formula.params.index)
    np.testing.assert_array_equal(m.params_, formula.params.to_numpy())
    np.testing.assert_array_equal(m.cov_, np.asarray(formula.cov_params()))


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
    est = fit_and_estimate(adapter, dataset, alpha=0.05)
    assert est.lower_test is not None and est.native_importance is not None


def _declared_final_stage() -> list[tuple[str, str]]:
    """(estimator config, parameter) for every final-stage parameter a shipped estimator YAML declares."""
    pairs = []
    for name in group_options("estimator"):
        declared = OmegaConf.load(conf_dir() / "estimator" / f"{name}.yaml").get("final_stage") or []
        pairs += [(name, str(param)) for param in declared]
    return pairs


# A legal value different from the shipped one, per declared parameter: a new declaration needs an entry.
ALTERNATIVE = {"n_estimators": 20, "criterion": "het", "max_depth": 2, "min_samples_split": 30,
               "min_samples_leaf": 5, "min_weight_fraction_leaf": 0.2, "min_var_fraction_leaf": 0.99,
               "min_var_leaf_on_val": True, "max_features": 1, "min_impurity_decrease": 0.01,
               "max_samples": 0.3, "min_balancedness_tol": 0.3, "honest": False, "fit_intercept": False,
               "subforest_size": 5, "drate": False, "verbose": 1, "fit_cate_intercept": False}
# Parameters whose alternative leaves this fit's numbers unchanged (so the reuse check is not vacuous
# for the others): verbose only prints; min_var_leaf_on_val acts only with min_var_fraction_leaf set.
NO_NUMERIC_EFFECT = {"verbose", "min_var_leaf_on_val"}
FINAL_STAGE = _declared_final_stage()


def _numbers(adapter, X_train, X):
    """Everything the runner takes from a fitted adapter: effects, per-unit and ATE intervals."""
    lo, hi = adapter.effect_interval(X, 0.05)
    return {"effect": adapter.effect(X), "lower": lo, "upper": hi,
            "ate_interval": np.array(adapter.ate_interval(X_train, 0.05)),
            "kinds": np.array([adapter.interval_kind(), adapter.ate_interval_kind()])}


@pytest.fixture(scope="module")
def small():
    return engagement.generate(seed=1, n=300, n_test=100)


@pytest.fixture(scope="module")
def first_stages(small):
    """Per estimator: the nuisance cache after fitting its shipped configuration, and that fit's numbers."""
    from hte_bench.estimators import econml_adapter

    dataset, _ = small
    out = {}
    for name in sorted({name for name, _ in FINAL_STAGE}):
        econml_adapter.clear_nuisance_cache()
        adapter = make_estimator(compose([f"estimator={name}", *SHRINK.get(name, [])]), seed=4)
        adapter.fit(dataset.X_train, dataset.T_train, dataset.Y_train)
        out[name] = (dict(econml_adapter._NUISANCE_CACHE), _numbers(adapter, dataset.X_train, dataset.X_test))
    econml_adapter.clear_nuisance_cache()
    return out


def test_shipped_reuse_declarations_exist():
    assert {name for name, _ in FINAL_STAGE} == {"causal_forest_dml", "linear_dml", "dr_learner"}


@pytest.mark.parametrize("name,param", FINAL_STAGE, ids=[f"{n}-{p}" for n, p in FINAL_STAGE])
def test_declared_final_stage_parameter_reuses_the_first_stage_bit_identically(name, param, small, first_stages):
    from hte_bench.estimators import econml_adapter

    dataset, _ = small
    assert param in ALTERNATIVE, f"add a legal alternative value for {param} to ALTERNATIVE"
    cfg = compose([f"estimator={name}", *SHRINK.get(name, []), f"++estimator.model.{param}={ALTERNATIVE[param]}"])
    cache, base = first_stages[name]

    def fit():
        adapter = make_estimator(cfg, seed=4).fit(dataset.X_train, dataset.T_train, dataset.Y_train)
        return adapter, _numbers(adapter, dataset.X_train, dataset.X_test)

    econml_adapter.clear_nuisance_cache()
    econml_adapter._NUISANCE_CACHE.update(cache)  # the shipped configuration's first stage
    reused_adapter, reused = fit()
    econml_adapter.clear_nuisance_cache()
    fresh_adapter, fresh = fit()
    assert reused_adapter.reused_nuisance_ and not fresh_adapter.reused_nuisance_
    for key in fresh:
        np.testing.assert_array_equal(reused[key], fresh[key], err_msg=f"{name}.{param}: {key}")
    differs = any(not np.array_equal(base[k], fresh[k]) for k in fresh)
    assert differs != (param in NO_NUMERIC_EFFECT), f"{name}.{param}={ALTERNATIVE[param]} changed nothing"


def test_undeclared_parameters_are_not_reused(data):
    from hte_bench.estimators.econml_adapter import clear_nuisance_cache

    dataset, _ = data
    fit = lambda overrides: make_estimator(compose(["estimator=causal_forest_dml", *SHRINK["causal_forest_dml"],
                                                    *overrides]), seed=2).fit(
        dataset.X_train, dataset.T_train, dataset.Y_train)
    clear_nuisance_cache()
    fit([])
    assert fit(["estimator.model.min_samples_leaf=5"]).reused_nuisance_
    # A different nuisance model is a different first stage; no declaration means no reuse at all.
    assert not fit(["++outcome_model.n_estimators=21"]).reused_nuisance_
    assert not fit(["estimator.final_stage=null", "estimator.model.min_samples_leaf=5"]).reused_nuisance_
    clear_nuisance_cache()


def test_a_bad_final_stage_name_is_a_one_line_config_error(data):
    dataset, _ = data
    adapter = make_estimator(compose(["estimator=linear_dml", "estimator.final_stage=[fit_cate_intercept,n_trees]"]),
                             seed=0)
    with pytest.raises(ConfigError, match=r"'n_trees' is not a parameter of LinearDML; allowed: model_y, model_t,"
                                          r".*fit_cate_intercept") as err:
        adapter.fit(dataset.X_train, dataset.T_train, dataset.Y_train)
    assert "\n" not in str(err.value)


def _same(a, b) -> bool:
    """Equal parameters, recursively: sklearn objects by get_params, econml ones by their __init__ names."""
    from hte_bench.estimators.econml_adapter import _init_params

    if type(a) is not type(b):
        return False
    if hasattr(a, "get_params") and not isinstance(a, type):
        return _same(a.get_params(deep=False), b.get_params(deep=False))
    if OmegaConf.is_config(a):  # final_stage arrives from Hydra as a ListConfig
        return a == b
    if type(a).__module__.startswith("econml"):
        return _same(_init_params(a), _init_params(b))
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    if hasattr(a, "__dict__") and not isinstance(a, type):
        return _same(vars(a), vars(b))
    return a == b or (a != a and b != b)


@pytest.mark.parametrize("name", group_options("estimator"))
def test_clone_is_unfitted_with_equal_params_and_refits_identically(name, data):
    from hte_bench.estimators.econml_adapter import clear_nuisance_cache

    dataset, _ = data
    adapter = make_estimator(compose([f"estimator={name}", *SHRINK.get(name, [])]), seed=6)
    params = adapter.get_params(deep=False)
    clear_nuisance_cache()
    adapter.fit(dataset.X_train, dataset.T_train, dataset.Y_train)
    # fit leaves its parameters alone: the econml model stays unfitted, the fitted copy is model_.
    assert all(adapter.get_params(deep=False)[k] is v for k, v in params.items())
    if "model" in params and name not in CAUSALML | {"doubleml_irm", "doubleml_plr"}:  # econml's models
        assert not hasattr(params["model"], "_inference") and hasattr(adapter.model_, "_inference")
    twin = clone(adapter)
    assert not any(k.endswith("_") and not k.startswith("_") for k in vars(twin)), vars(twin).keys()
    assert _same(twin.get_params(deep=False), params)
    clear_nuisance_cache()  # a fresh fit, not a reuse of the first one's nuisances
    twin.fit(dataset.X_train, dataset.T_train, dataset.Y_train)
    np.testing.assert_array_equal(twin.effect(dataset.X_test), adapter.effect(dataset.X_test))
    twin.set_params(**params)
    assert all(twin.get_params(deep=False)[k] is v for k, v in params.items())
    clear_nuisance_cache()


@pytest.mark.parametrize("name,overrides,kinds", [
    ("constant_effect", [], ("broadcast_ate", "ate")),
    ("causal_forest_dml", ["++estimator.model.honest=false"], ("not_honest", "ate")),
    ("causal_forest_dml", ["++estimator.model.drate=false"], ("per_unit", "conservative_bound")),
    ("causal_forest_dml", [], ("per_unit", "ate")),
    ("t_learner", [], ("none", "none")),
    ("t_learner", ["estimator.inference={_target_:econml.inference.BootstrapInference,n_bootstrap_samples:10}"],
     ("bootstrap", "bootstrap")),
    ("interaction_ols", [], ("per_unit", "ate")),
    ("linear_dml", [], ("per_unit", "ate")),
    ("dr_learner", [], ("per_unit", "ate")),
    # A DRLearner whose final model has point estimates only: econml's 'auto' inference gives no intervals.
    ("dr_learner", ["estimator.model._target_=econml.dr.DRLearner", "estimator.final_stage=[]",
                    "+estimator.model.model_final={_target_:sklearn.linear_model.LassoCV,cv:3}"], ("none", "none")),
    ("zero_effect", [], ("none", "none")),
    # The README's ForestDRLearner: honest forest per arm, ATE interval on econml's stderr_mean bound.
    ("forest_dr", ["++estimator.model.n_estimators=40", "++estimator.model.model_regression.n_estimators=20"],
     ("per_unit", "conservative_bound")),
])
def test_interval_kinds_say_what_each_interval_claims(name, overrides, kinds, data):
    from hte_bench.estimators.base import ATE_INTERVAL_KINDS, INTERVAL_KINDS

    dataset, _ = data
    cfg = compose([f"estimator={name}", *SHRINK.get(name, []), *overrides])
    est = fit_and_estimate(make_estimator(cfg, seed=0), dataset, alpha=0.05)
    assert (est.interval_kind, est.ate_interval_kind) == kinds
    assert est.interval_kind in INTERVAL_KINDS and est.ate_interval_kind in ATE_INTERVAL_KINDS
    # A kind other than none comes with a real interval, none with a reason.
    assert (est.lower_test is None) == (kinds[0] == "none") == bool(est.interval_reason)
    assert np.isnan(est.ate_lower) == (kinds[1] == "none") == bool(est.ate_interval_reason)
    # The logged ATE is the number its interval is about (for the forest: econml's doubly robust ATE).
    assert kinds[1] == "none" or est.ate_lower < est.ate_hat < est.ate_upper


def test_bootstrap_intervals_do_not_depend_on_what_the_process_drew_before(tmp_path):
    # econml's BootstrapInference resamples with numpy's global generator: each seed stage seeds it, so the
    # same config and seed give the same intervals in a fresh worker or after other work in this process.
    from hte_bench.seed import evaluate_seed

    cfg = compose(["estimator=t_learner", *SHRINK.get("t_learner", []), "data.n=300", "data.n_test=100",
                   "estimator.inference={_target_:econml.inference.BootstrapInference,n_bootstrap_samples:10}",
                   "analyses.seeds=0", "tracking.plots=false", "importance_repeats=1"])
    runs = []
    for before in (1, 2):
        np.random.seed(before)
        runs.append(evaluate_seed(cfg, 0, str(tmp_path / str(before))))
        assert np.random.get_state()[1][0] == np.random.RandomState(before).get_state()[1][0]  # restored
    a, b = ({k: v for k, v in r.metrics.items() if not k.endswith("_seconds")} for r in runs)
    assert runs[0].tags["interval_kind"] == "bootstrap" and np.isfinite(a["cate_ci_width_test"])
    assert a.keys() == b.keys() and all(a[k] == b[k] or (np.isnan(a[k]) and np.isnan(b[k])) for k in a)


def test_cate_slope_inference_is_not_rounded(data):
    # econml's summary_frame rounds to 3 decimals: a p-value of 1.4e-4 read 0 and insights said "p < 1e-16".
    dataset, _ = data
    adapter = make_estimator(compose(["estimator=linear_dml", *SHRINK["linear_dml"]]), seed=0)
    adapter.fit(dataset.X_train, dataset.T_train, dataset.Y_train)
    table = adapter._coef_table(0.05)
    inference = adapter.model_.coef__inference()
    np.testing.assert_array_equal(table["pvalue"].to_numpy(), np.ravel(inference.pvalue()))
    np.testing.assert_array_equal(table["point_estimate"].to_numpy(), np.ravel(inference.point_estimate))
    assert (table["pvalue"] > 0).all() and table["point_estimate"].round(3).ne(table["point_estimate"]).all()


def test_an_adapter_that_breaks_the_contract_is_refused_on_the_first_seed(tmp_path, user_module):
    # The same mistake on every seed: one line before any run exists, naming what is wrong (it was "predict:
    # NotImplementedError: NotImplementedError", "LinearDML.fit() takes 3 positional arguments", or a length
    # mismatch in the metrics, as FAILED seed runs).
    from hte_bench.seed import evaluate_seed

    user_module(
        "broken_adapters", "import numpy as np\nfrom hte_bench.estimators import CateAdapter\n\n"
        "class NoEffect(CateAdapter):\n    def fit(self, X, T, Y):\n        self.feature_names_ = list(X.columns)\n"
        "        return self\n\n"
        "class TwoColumns(NoEffect):\n    def effect(self, X):\n        return np.zeros((len(X), 2))\n\n"
        "class Shrunk(TwoColumns):\n    def __init__(self, shrink=0.5):\n        self.shrink = shrink\n"
        "    def fit(self, X, T, Y):\n        self.ate_ = np.mean(Y) * self.shrink\n        return self\n")
    base = ["data.n=200", "data.n_test=100", "analyses.seeds=0", "tracking.plots=false"]
    cases = {"econml.dml.LinearDML": r"estimator._target_=econml.dml.LinearDML builds a LinearDML, not an "
                                     r"hte-bench adapter: an econml estimator goes under model: of",
             "broken_adapters.NoEffect": r"NoEffect \(estimator._target_=broken_adapters.NoEffect\) does not "
                                         r"implement effect\(X\)",
             "broken_adapters.TwoColumns": r"TwoColumns.effect\(X\) returned shape \(200, 2\) for 200 rows; it must "
                                           r"return one effect per row of X, shape \(200,\)"}
    for target, message in cases.items():
        cfg = compose(["estimator=zero_effect", f"estimator._target_={target}", *base])
        with pytest.raises(ConfigError, match=message):
            evaluate_seed(cfg, 0, str(tmp_path / "strict"), strict=True)
    # A parameter of the wrong type fails in fit: the line shows what the estimator was given.
    cfg = compose(["estimator=zero_effect", "estimator._target_=broken_adapters.Shrunk", "+estimator.shrink=abc", *base])
    with pytest.raises(ConfigError, match=r"^fit: TypeError: .*\(estimator broken_adapters.Shrunk given "
                                          r"estimator.shrink='abc'\)$"):
        evaluate_seed(cfg, 0, str(tmp_path / "strict"), strict=True)
    # Past the first seed the same error fails that seed, with the same words.
    later = evaluate_seed(compose(["estimator=zero_effect", "estimator._target_=broken_adapters.TwoColumns", *base]),
                          1, str(tmp_path / "later"))
    assert later.status == "FAILED" and "returned shape (200, 2)" in later.tags["error"]


def test_forest_dr_ate_interval_is_for_the_training_sample_only(data):
    dataset, _ = data
    adapter = make_estimator(compose(["estimator=causal_forest_dml", *SHRINK["causal_forest_dml"]]), seed=0)
    adapter.fit(dataset.X_train, dataset.T_train, dataset.Y_train)
    lo, hi = adapter.ate_interval(dataset.X_train, 0.05)
    assert adapter.ate(dataset.X_train) == float(np.ravel(adapter.model_.ate_)[0])
    assert lo < adapter.ate(dataset.X_train) < hi
    with pytest.raises(NoInference, match="training sample only"):
        adapter.ate_interval(dataset.X_test, 0.05)


def test_a_user_adapter_with_intervals_must_say_what_they_claim(data):
    dataset, _ = data

    class Undeclared(ZeroEffect):
        def fit(self, X, T, Y):
            self.feature_names_ = list(X.columns)
            return self

    with pytest.raises(NotImplementedError, match="interval_kind_"):
        Undeclared().fit(dataset.X_train, dataset.T_train, dataset.Y_train).interval_kind()


@pytest.mark.slow
def test_forest_dr_ate_interval_is_narrower_than_the_stderr_mean_bound():
    """Same fit, two ATE intervals: econml's doubly robust one (ate) vs ate_interval on stderr_mean."""
    dr, bound, cover_dr, cover_bound = [], [], [], []
    cfg = compose(["estimator=causal_forest_dml", "++estimator.model.n_estimators=200",
                   "++outcome_model.n_estimators=50"])
    for seed in range(20):
        dataset, truth = engagement.generate(seed=seed, n=800, n_test=10)
        adapter = make_estimator(cfg, seed=seed).fit(dataset.X_train, dataset.T_train, dataset.Y_train)
        lo, hi = adapter.ate_interval(dataset.X_train, 0.05)
        blo, bhi = (float(np.ravel(v)[0]) for v in adapter.model_.ate_interval(dataset.X_train.to_numpy(float),
                                                                               alpha=0.05))
        ate = float(np.mean(truth.tau_train))
        dr.append(hi - lo)
        bound.append(bhi - blo)
        cover_dr.append(lo <= ate <= hi)
        cover_bound.append(blo <= ate <= bhi)
    print(f"mean width DR {np.mean(dr):.3f} vs stderr_mean {np.mean(bound):.3f}; "
          f"coverage {np.mean(cover_dr):.2f} vs {np.mean(cover_bound):.2f} (20 seeds)")
    assert np.mean(dr) < np.mean(bound)
    assert np.mean(np.less(dr, bound)) >= 0.9


def test_econmls_singular_final_stage_keeps_identified_intervals_and_makes_no_coefficient_claims():
    # A feature that is a combination of others makes econml's final-stage covariance singular: it warns
    # "Inference will be invalid!" and goes on. The coefficients are not identified (no claims about them);
    # an effect whose features are combined the same way is, and its interval is close to the one without the copy
    # (the nuisance forests see the copy too, so not equal).
    # Rows whose features break the combination, or a final stage with as many parameters as rows, get none.
    from conftest import compose
    from hte_bench.estimators.base import Estimate, NoInference
    from hte_bench.seed import make_data, make_estimator, predict

    cfg = compose(["estimator=linear_dml", "data.n=300", "data.n_test=100"])
    dataset, _ = make_data(cfg, 0)
    first = dataset.X_train.columns[0]
    X, Xt = (frame.assign(copy=1 + 2 * frame[first]) for frame in (dataset.X_train, dataset.X_test))
    plain = make_estimator(cfg, 0).fit(dataset.X_train, dataset.T_train, dataset.Y_train)
    adapter = make_estimator(cfg, 0).fit(X, dataset.T_train, dataset.Y_train)
    assert adapter.invalid_inference_ and adapter.interval_kind() == "per_unit" and adapter.insights(0.05) is None
    est = predict(adapter, dataset.__class__(X, dataset.T_train, dataset.Y_train, Xt, dataset.T_test, dataset.Y_test),
                  0.05, Estimate(np.zeros(0), np.zeros(0), 0.0))
    np.testing.assert_allclose(est.lower_test, plain.effect_interval(dataset.X_test, 0.05)[0], rtol=0.05, atol=0.05)
    with pytest.raises(NoInference, match="these rows' effects are not identified"):
        adapter.effect_interval(Xt.assign(copy=0.0), 0.05)
    wide = pd.DataFrame(np.random.default_rng(0).normal(size=(40, 60)), columns=[f"x{i}" for i in range(60)])
    T = np.arange(40) % 2
    saturated = make_estimator(cfg, 0).fit(wide, T, wide["x0"].to_numpy() + T)
    assert saturated.interval_kind() == "none"
    with pytest.raises(NoInference, match="Inference will be invalid"):
        saturated.effect_interval(wide, 0.05)


def test_an_adapters_fit_imports_are_done_before_its_fit_is_timed(tmp_path, monkeypatch):
    # OLS imported statsmodels.api inside fit: the first seed of every process logged ~1 s of import as fit time.
    import sys
    from types import SimpleNamespace

    from hte_bench.estimators.base import CateAdapter
    from hte_bench.estimators.ols import InteractionOLS
    from hte_bench.seed import fit

    (tmp_path / "hb_probe_module.py").write_text("")
    monkeypatch.syspath_prepend(str(tmp_path))

    class Probe(CateAdapter):
        fit_imports = ("hb_probe_module",)

        def fit(self, X, T, Y):
            self.imported_before_ = "hb_probe_module" in sys.modules
            return self

    adapter = Probe()
    fit(adapter, SimpleNamespace(X_train=None, T_train=None, Y_train=None))
    assert adapter.imported_before_
    assert "statsmodels.api" in InteractionOLS.fit_imports


def test_ols_insights_name_the_features_in_the_formula_and_say_the_intervals_are_per_feature():
    # The source line read "Y ~ T * (x0 + x1)" above claims about age and income, and no multiplicity caveat.
    from hte_bench.estimators.ols import InteractionOLS

    rng = np.random.default_rng(0)
    X = pd.DataFrame({"age": rng.normal(size=400), "income": rng.normal(size=400)})
    T = rng.integers(0, 2, 400)
    Y = X["age"] + T * (1 + 2 * X["age"]) + rng.normal(size=400)
    text = InteractionOLS().fit(X, T, Y.to_numpy()).insights(0.05)
    assert "statsmodels OLS Y ~ T * (age + income)" in text and "x0" not in text
    assert "not adjusted for multiplicity (with 2 features and no effect modification, about 0.1 false" in text
    assert "As age increases, treatment effect increases" in text
