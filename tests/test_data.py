"""The generators reproduce the seed notebooks and carry their truth apart from the observed data."""
import numpy as np
import pandas as pd
import pytest

from hte_bench.data import DataError, engagement, validate, workforce


def test_engagement_reproduces_notebook_first_row():
    data, truth = engagement.generate(seed=42, n=1000)
    row = data.X_train.iloc[0]
    assert row["age"] == pytest.approx(44.967142, abs=1e-6)
    assert row["engagement"] == pytest.approx(0.167483, abs=1e-6)
    assert data.T_train[0] == 0
    assert data.Y_train[0] == pytest.approx(3.890014, abs=1e-6)
    # Rows 2 and 5 of the notebook's df.head() too.
    assert data.Y_train[1] == pytest.approx(4.073019, abs=1e-6)
    assert data.T_train[4] == 1 and data.Y_train[4] == pytest.approx(3.984052, abs=1e-6)
    assert truth.modifiers == ["engagement"]
    np.testing.assert_allclose(truth.tau_train, 2 + 3 * data.X_train["engagement"])


def test_workforce_reproduces_notebook_and_is_on_log_wage_scale():
    data, truth = workforce.generate(seed=42, n=2000)
    row = data.X_train.iloc[0]
    assert row["age"] == pytest.approx(45.960570, abs=1e-6)
    assert row["prior_wage"] == pytest.approx(25709.158211, abs=1e-5)
    # The notebook printed post_wage = exp(log wage) = 108116.037072 and 496 treated of 2000.
    assert np.exp(data.Y_train[0]) == pytest.approx(108116.037072, rel=1e-9)
    assert int(data.T_train.sum()) == 496
    assert truth.ate_train == pytest.approx(0.064, abs=5e-4)
    assert truth.tau_train[0] == pytest.approx(0.055717, abs=1e-6)
    assert truth.propensity_train[0] == pytest.approx(0.154654, abs=1e-6)


def test_workforce_population_ate_is_the_mean_effect_over_its_covariates():
    # A fixed Monte Carlo of E[tau(X)]: the same in every call, the constant 0.08 without heterogeneity, and
    # an independent sample's mean tau agrees within its own sampling error (sd tau ≈ 0.044 / sqrt(1e5)).
    _, truth = workforce.generate(seed=5, n=100_000, n_test=10)
    assert truth.ate_population == workforce.population_ate(1.0) == workforce.population_ate(1.0)
    assert abs(truth.ate_train - truth.ate_population) < 5e-4
    assert workforce.population_ate(0.0) == pytest.approx(0.08)
    assert workforce.generate(seed=5, n=50, n_test=10, heterogeneity=0.5)[1].ate_population == \
        workforce.population_ate(0.5)


def test_workforce_truth_ranges_and_confounding():
    data, truth = workforce.generate(seed=0, n=100_000, n_test=10)
    assert truth.tau_train.min() >= 0 and truth.tau_train.max() <= 0.25
    assert 0 < truth.propensity_train.min() and truth.propensity_train.max() < 1
    # Confounding in this DGP is mostly selection on gains: the covariates that raise take-up
    # (unemployment, tech) also raise tau, so the treated gain more than average...
    assert np.corrcoef(truth.propensity_train, truth.tau_train)[0, 1] > 0.3
    # ...and the naive difference in means overstates the ATE (0.079 vs 0.065 at this seed);
    # without confounding it does not.
    naive = data.Y_train[data.T_train == 1].mean() - data.Y_train[data.T_train == 0].mean()
    assert naive - truth.ate_train > 0.008
    data0, truth0 = workforce.generate(seed=0, n=100_000, n_test=10, confounding=0.0)
    naive0 = data0.Y_train[data0.T_train == 1].mean() - data0.Y_train[data0.T_train == 0].mean()
    assert abs(naive0 - truth0.ate_train) < 0.004


@pytest.mark.parametrize("gen", [engagement.generate, workforce.generate])
def test_seed_determines_the_draw_and_test_sample_is_independent(gen):
    a, ta = gen(seed=3, n=200, n_test=100)
    b, tb = gen(seed=3, n=200, n_test=100)
    c, _ = gen(seed=4, n=200, n_test=100)
    np.testing.assert_array_equal(a.Y_train, b.Y_train)
    np.testing.assert_array_equal(ta.tau_test, tb.tau_test)
    assert not np.array_equal(a.Y_train, c.Y_train)
    assert len(a.X_test) == 100 and not np.array_equal(a.X_train.iloc[:100].to_numpy(), a.X_test.to_numpy())
    validate(a, ta)


def test_noise_knob_changes_only_the_noise():
    lo, t = engagement.generate(seed=1, n=500, noise=0.1)
    hi, _ = engagement.generate(seed=1, n=500, noise=3.0)
    np.testing.assert_array_equal(lo.X_train, hi.X_train)
    resid = lambda d: d.Y_train - t.tau_train * d.T_train - 0.1 * d.X_train["age"]
    assert resid(lo).std() < 0.2 < 2.0 < resid(hi).std()


def test_validate_rejects_constant_treatment_and_nan():
    data, truth = engagement.generate(seed=0, n=50, n_test=20, p_treat=0.0)
    with pytest.raises(DataError, match="constant"):
        validate(data, truth)
    data, truth = engagement.generate(seed=0, n=50, n_test=20)
    data.X_train.loc[3, "age"] = np.nan
    with pytest.raises(DataError, match=r"NaN in train feature column\(s\) \['age'\]"):
        validate(data, truth)
    # A generator of one's own that returns arrays for X: said so, with the fix.
    data, truth = engagement.generate(seed=0, n=50, n_test=20)
    data.X_test = data.X_test.to_numpy()
    with pytest.raises(DataError, match=r"Dataset.X_test must be a pandas DataFrame with feature names, not ndarray"):
        validate(data, truth)


# ---- the user's own CSV

from hte_bench.data import csv as csv_data  # noqa: E402


@pytest.fixture
def user_csv(tmp_path):
    rng = np.random.default_rng(0)
    n = 200
    frame = pd.DataFrame({"x1": rng.normal(size=n), "x2": rng.normal(size=n), "t": rng.binomial(1, 0.5, n)})
    frame["true_tau"] = 1 + frame.x1
    frame["y"] = frame.true_tau * frame.t + frame.x2 + rng.normal(size=n)
    path = tmp_path / "mine.csv"
    frame.to_csv(path, index=False)
    return path, frame


def test_csv_split_by_seed_with_and_without_truth(user_csv):
    path, frame = user_csv
    data, truth = csv_data.generate(seed=1, path=str(path), outcome="y", treatment="t", tau="true_tau")
    assert list(data.X_train.columns) == ["x1", "x2"]  # the tau column is never a feature
    assert len(data.X_train) == 140 and len(data.X_test) == 60
    np.testing.assert_allclose(truth.tau_train, 1 + data.X_train["x1"])
    again, _ = csv_data.generate(seed=1, path=str(path), outcome="y", treatment="t", tau="true_tau")
    other, _ = csv_data.generate(seed=2, path=str(path), outcome="y", treatment="t", tau="true_tau")
    np.testing.assert_array_equal(data.Y_train, again.Y_train)
    assert not np.array_equal(data.Y_train, other.Y_train)
    _, unknown = csv_data.generate(seed=1, path=str(path), outcome="y", treatment="t",
                                   features=["x1", "x2"])
    assert not unknown.known and np.isnan(unknown.ate_train)
    # A true effect without data.modifiers: which features modify it is unknown, so the importance "hit" is
    # NaN and the table's true_modifier too — not a miss of every feature (a new user read 0 as a failure).
    from hte_bench.evaluation.importance import importance_table
    from hte_bench.evaluation.metrics import importance_agreement

    assert truth.known_modifiers() is None
    named = csv_data.generate(seed=1, path=str(path), outcome="y", treatment="t", tau="true_tau", modifiers=["x1"])[1]
    assert named.known_modifiers() == ["x1"]
    estimated = pd.Series({"x1": 0.9, "x2": 0.1})
    assert np.isnan(importance_agreement(estimated, None, truth.known_modifiers())[1])
    assert importance_agreement(estimated, None, named.known_modifiers())[1] == 1.0
    assert importance_table(estimated, None, None)["true_modifier"].isna().all()


@pytest.mark.parametrize("change, kwargs, message", [
    (None, {"path": "nowhere.csv"}, "does not exist"),
    (None, {"outcome": "nope"}, "column(s) ['nope'] not in mine.csv; available columns: ['x1', 'x2', 't', 'true_tau', 'y']"),
    (lambda f: f.assign(x2=f.x2.where(f.index != 5)), {}, "NaN in column(s) ['x2']"),
    (lambda f: f.assign(t=f.t * 2), {}, "must be 0/1, found values [0, 2]"),
    (lambda f: f.assign(t=1), {}, "is constant (1)"),
    (lambda f: f.assign(x1="a"), {}, "['x1'] are not numeric"),
    # A true-effect column left among the default features would leak the truth into every estimator.
    (None, {"tau": None}, "column 'true_tau' looks like the true effect and would be a feature: give "
                          "data.tau=true_tau to use it as such, or list data.features=[...] yourself"),
    (lambda f: f.rename(columns={"true_tau": "propensity"}), {"tau": None},
     "column 'propensity' looks like the true propensity and would be a feature: give data.propensity=propensity"),
    # Listed features that are also Y, T or the truth (a ValueError about a Series' truth value before).
    (None, {"features": ["x1", "y"]}, "column 'y' is the outcome and cannot also be a feature; leave it out of "
                                      "data.features=[...]"),
    (None, {"features": ["x1", "true_tau"]}, "column 'true_tau' is a truth column and cannot also be a feature"),
    (None, {"features": ["x1", "x1"]}, "feature(s) ['x1'] listed twice"),
    # Truth under other names, counterfactuals, a saved index; a misspelt column said before any of those.
    (lambda f: f.rename(columns={"true_tau": "uplift"}), {"tau": None}, "column 'uplift' looks like the true effect"),
    (lambda f: f.rename(columns={"true_tau": "True_Lift"}), {"tau": None}, "column 'True_Lift' looks like the true effect"),
    (lambda f: f.assign(mu1=f.y), {}, "column 'mu1' looks like a potential outcome or counterfactual"),
    (lambda f: f.reset_index(names="Unnamed: 0"), {}, "column 'Unnamed: 0' looks like a saved row index"),
    (None, {"tau": "True_tau"}, "column(s) ['True_tau'] not in mine.csv (did you mean 'true_tau'?)"),
    (None, {"treatment": "y"}, "data.outcome and data.treatment are both 'y'"),
])
def test_csv_errors_name_the_column(user_csv, change, kwargs, message):
    path, frame = user_csv
    if change is not None:
        change(frame).to_csv(path, index=False)
    args = {"path": str(path), "outcome": "y", "treatment": "t", "tau": "true_tau", **kwargs}
    with pytest.raises(DataError) as info:
        csv_data.generate(seed=0, **args)
    assert message in str(info.value) and "\n" not in str(info.value)


def test_knobs_confounding_and_heterogeneity():
    base, t0 = engagement.generate(seed=3, n=5000, n_test=10)
    flat, t_flat = engagement.generate(seed=3, n=5000, n_test=10, heterogeneity=0.0)
    assert np.ptp(t_flat.tau_train) == 0 and t_flat.modifiers == []
    conf, t_conf = engagement.generate(seed=3, n=5000, n_test=10, confounding=1.0)
    assert np.corrcoef(t_conf.propensity_train, conf.X_train["age"])[0, 1] > 0.9
    naive = conf.Y_train[conf.T_train == 1].mean() - conf.Y_train[conf.T_train == 0].mean()
    assert naive - t_conf.ate_train > 0.3  # treated are older, and age raises Y
    _, wf_flat = workforce.generate(seed=0, n=500, n_test=10, heterogeneity=0.0)
    assert np.allclose(wf_flat.tau_train, 0.08)


def test_workforce_without_extra_confounders_is_the_draw_of_before_the_knob():
    """extra_confounders=0 (the default) reproduces the generator as it was before the knob, draw for draw."""
    import hashlib

    ds, truth = workforce.generate(seed=3, n=500, n_test=200, extra_confounders=0)
    h = hashlib.sha256()
    for a in (ds.X_train, ds.X_test, ds.T_train, ds.Y_train, ds.T_test, ds.Y_test, truth.tau_train,
              truth.propensity_test):
        h.update(np.round(np.asarray(a, dtype=float), 8).tobytes())
    # Recorded from the generator at commit 89fffbb, before extra_confounders existed.
    assert h.hexdigest() == "faed4cf93311e221dd923679a4d069a21c62bd8bbb69abd766a8f2aad1792fec"


def test_workforce_extra_confounders_drive_take_up_and_wage():
    ds, truth = workforce.generate(seed=0, n=4000, n_test=10, extra_confounders=20)
    assert list(ds.X_train.columns[7:]) == [f"z{j}" for j in range(1, 21)]
    Z = ds.X_train.iloc[:, 7:]
    off = Z.corr().to_numpy()[np.triu_indices(20, 1)]
    assert 0.4 < off.mean() < 0.6                                 # pairwise correlation 0.5
    assert np.corrcoef(Z["z1"], truth.propensity_train)[0, 1] > 0.1  # take-up
    assert np.corrcoef(Z["z1"], truth.extra["mu0_train"])[0, 1] > 0.1  # wage without treatment
    assert truth.modifiers == workforce.MODIFIERS                 # confounders, not effect modifiers
    with pytest.raises(DataError, match="extra_confounders"):
        workforce.generate(seed=0, extra_confounders=2.5)


def three_things(seed, **knobs):
    return 1, 2, 3


def test_a_generator_that_returns_something_else_is_told_what_to_return():
    from conftest import compose
    from hte_bench.seed import make_data

    with pytest.raises(DataError, match=r"must return \(Dataset, Truth\) from hte_bench.data, not tuple of 3"):
        make_data(compose(["data._target_=test_data.three_things"]), 0)


def test_a_feature_named_as_the_true_effect_is_refused():
    # A generator returning its whole frame, tau included: every estimator would read the truth from it.
    from hte_bench.data.base import Dataset

    ds, truth = engagement.generate(seed=0, n=100, n_test=50)
    leaked = Dataset(ds.X_train.assign(true_tau=truth.tau_train), ds.T_train, ds.Y_train,
                     ds.X_test.assign(true_tau=truth.tau_test), ds.T_test, ds.Y_test)
    with pytest.raises(DataError, match=r"^data: feature 'true_tau' looks like the true effect: every estimator"):
        validate(leaked, truth)
    validate(ds, truth)


def test_collinear_features_are_found_and_tagged_on_the_seed_run(user_csv, tmp_path):
    # A copied or summed column: said once (the first seed), tagged on every seed run, left out of the BLP.
    from conftest import compose
    from hte_bench.evaluation.insights import collinear_columns
    from hte_bench.seed import evaluate_seed

    rng = np.random.default_rng(0)
    X = pd.DataFrame({"a": rng.normal(size=50), "b": rng.normal(size=50), "k": 1.0})
    assert collinear_columns(X.assign(a2=2 * X.a + 1, s=X.a + X.b)) == ["a2", "s"]
    assert collinear_columns(X) == []  # a constant column is not judged here (the BLP drops it as constant)
    path, frame = user_csv
    frame.assign(x1_copy=2 * frame.x1 + 1).to_csv(path, index=False)
    cfg = compose(["data=csv", f"data.path={path}", "data.outcome=y", "data.treatment=t", "data.tau=true_tau",
                   "estimator=zero_effect", "tracking.plots=false", "analyses.truth_free=false"])
    result = evaluate_seed(cfg, 0, str(tmp_path))
    assert result.tags["collinear_features"] == "x1_copy"
