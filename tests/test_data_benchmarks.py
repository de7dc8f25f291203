"""The literature benchmarks reproduce their published definitions: Nie–Wager setups A–D and econml's IHDP."""
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from hte_bench.data import DataError, ihdp, nie_wager, validate

CONF = Path(__file__).resolve().parents[1] / "conf" / "data"


# --- Nie & Wager (2021) ---------------------------------------------------------------------------

@pytest.mark.parametrize("setup", list("ABCD"))
def test_nie_wager_shapes_names_and_validate(setup):
    data, truth = nie_wager.generate(seed=0, n=300, n_test=120, setup=setup, d=7)
    validate(data, truth)
    assert data.feature_names == [f"x{j}" for j in range(1, 8)]
    assert data.X_train.shape == (300, 7) and data.X_test.shape == (120, 7)
    assert set(np.unique(data.T_train)) == {0, 1} and data.T_train.dtype.kind == "i"
    assert data.Y_train.dtype == float and len(truth.tau_test) == 120
    np.testing.assert_allclose(truth.tau_fn(data.X_test), truth.tau_test)
    np.testing.assert_allclose(nie_wager.propensity(setup, data.X_train), truth.propensity_train)


@pytest.mark.parametrize("setup", list("ABCD"))
def test_nie_wager_seed_determines_the_draw(setup):
    a, ta = nie_wager.generate(seed=5, n=200, n_test=100, setup=setup)
    b, tb = nie_wager.generate(seed=5, n=200, n_test=100, setup=setup)
    c, _ = nie_wager.generate(seed=6, n=200, n_test=100, setup=setup)
    pd.testing.assert_frame_equal(a.X_train, b.X_train)
    np.testing.assert_array_equal(a.Y_test, b.Y_test)
    np.testing.assert_array_equal(ta.tau_test, tb.tau_test)
    assert not np.array_equal(a.Y_train, c.Y_train)
    assert not np.array_equal(a.X_train.iloc[:100].to_numpy(), a.X_test.to_numpy())


def test_nie_wager_a_effect_and_trimmed_propensity():
    data, truth = nie_wager.generate(seed=1, n=20_000, n_test=10, setup="A")
    X = data.X_train
    assert X.to_numpy().min() >= 0 and X.to_numpy().max() <= 1
    assert truth.tau_train.min() >= 0 and truth.tau_train.max() <= 1
    np.testing.assert_allclose(truth.tau_train, (X["x1"] + X["x2"]) / 2)
    # sin(π x1 x2) spans (0, 1], so both trimming bounds are reached.
    assert truth.propensity_train.min() == 0.1 and truth.propensity_train.max() == 0.9
    assert truth.modifiers == ["x1", "x2"]


def test_nie_wager_b_is_a_randomised_trial():
    data, truth = nie_wager.generate(seed=2, n=20_000, n_test=10, setup="B")
    assert np.all(truth.propensity_train == 0.5) and np.all(truth.propensity_test == 0.5)
    assert abs(data.T_train.mean() - 0.5) < 0.02
    X = data.X_train
    np.testing.assert_allclose(truth.tau_train, X["x1"] + np.log1p(np.exp(X["x2"])))
    assert truth.modifiers == ["x1", "x2"]


def test_nie_wager_c_has_no_heterogeneity():
    data, truth = nie_wager.generate(seed=3, n=2000, n_test=500, setup="C", d=3)
    assert np.all(truth.tau_train == 1) and np.all(truth.tau_test == 1)
    assert np.all(truth.tau_fn(data.X_test) == 1)
    assert truth.modifiers == []
    X = data.X_train
    np.testing.assert_allclose(truth.propensity_train, 1 / (1 + np.exp(X["x2"] + X["x3"])))


def test_nie_wager_d_propensity_and_sign_structure():
    data, truth = nie_wager.generate(seed=4, n=20_000, n_test=10, setup="D")
    X, e, t = data.X_train, truth.propensity_train, truth.tau_train
    # e = 1/(1 + e^{-x1} + e^{-x2}) is the first of three multinomial-logit probabilities: strictly inside
    # (0, 1), and below each of the two binary logits it is built from.
    assert np.all((0 < e) & (e < 1))
    sig = lambda z: 1 / (1 + np.exp(-z))
    assert np.all(e <= np.minimum(sig(X["x1"]), sig(X["x2"])))
    s123, s45 = X["x1"] + X["x2"] + X["x3"], X["x4"] + X["x5"]
    assert np.all(t[s45 <= 0] >= 0) and np.all(t[s123 <= 0] <= 0)
    assert np.all(t[(s45 <= 0) & (s123 <= 0)] == 0)
    np.testing.assert_allclose(t, np.maximum(s123, 0) - np.maximum(s45, 0))
    assert truth.modifiers == ["x1", "x2", "x3", "x4", "x5"]


@pytest.mark.parametrize("setup,sigma", [("A", 0.5), ("B", 2.0), ("C", 1.0), ("D", 4.0)])
def test_nie_wager_outcome_model_and_noise_level(setup, sigma):
    data, truth = nie_wager.generate(seed=7, n=100_000, n_test=10, setup=setup, sigma=sigma)
    resid = data.Y_train - truth.extra["b_train"] - (data.T_train - 0.5) * truth.tau_train
    assert abs(resid.mean()) < 0.02 * sigma
    assert resid.std() == pytest.approx(sigma, rel=0.01)


def test_nie_wager_sigma_changes_only_the_noise():
    lo, _ = nie_wager.generate(seed=8, n=300, n_test=50, setup="D", sigma=0.0)
    hi, _ = nie_wager.generate(seed=8, n=300, n_test=50, setup="D", sigma=3.0)
    pd.testing.assert_frame_equal(lo.X_test, hi.X_test)
    np.testing.assert_array_equal(lo.T_train, hi.T_train)
    assert not np.array_equal(lo.Y_train, hi.Y_train)


@pytest.mark.parametrize("knobs,field", [
    ({"setup": "E"}, "setup='E'"),
    ({"setup": "A", "d": 4}, "d=4"),
    ({"setup": "D", "d": 2}, "d=2"),
    ({"setup": "C", "d": 2}, "d=2"),
    ({"sigma": -1.0}, "sigma=-1.0"),
    ({"n": 0}, "n=0"),
])
def test_nie_wager_bad_knobs_raise_one_line_naming_the_field(knobs, field):
    with pytest.raises(DataError) as err:
        nie_wager.generate(seed=0, **knobs)
    message = str(err.value)
    assert field in message and "\n" not in message and "must be" in message


# --- IHDP (Hill 2011, econml's copy) ---------------------------------------------------------------

def test_ihdp_fixed_sample_split_into_train_and_test():
    data, truth = ihdp.generate(seed=0)
    validate(data, truth)
    assert len(data.X_train) + len(data.X_test) == 747
    assert len(data.X_test) == 75
    units = np.concatenate([truth.extra["units_train"], truth.extra["units_test"]])
    np.testing.assert_array_equal(np.sort(units), np.arange(747))
    assert data.feature_names == ihdp.FEATURES and len(data.feature_names) == 25
    assert np.isnan(truth.propensity_train).all() and np.isnan(truth.propensity_test).all()
    assert "unknown" in truth.extra["propensity"]


def test_ihdp_surface_b_matches_econml_loader():
    from econml.data.dgps import ihdp_surface_B

    seed = 3
    data, truth = ihdp.generate(seed=seed, surface="B")
    Y, T, X, te = ihdp_surface_B(random_state=seed)
    tr, ts = truth.extra["units_train"], truth.extra["units_test"]
    np.testing.assert_array_equal(truth.tau_train, te[tr])
    np.testing.assert_array_equal(truth.tau_test, te[ts])
    np.testing.assert_array_equal(data.Y_train, Y[tr])
    np.testing.assert_array_equal(data.T_test, T[ts])
    np.testing.assert_array_equal(data.X_train.to_numpy(), X[tr, 1:])
    # Hill's ω makes the effect on the treated 4 over the whole 747-unit sample.
    assert te[T == 1].mean() == pytest.approx(4.0)
    np.testing.assert_allclose(truth.tau_fn(data.X_test), truth.tau_test, rtol=0, atol=1e-9)


def test_ihdp_surface_b_modifiers_are_the_covariates_with_nonzero_coefficients():
    data, truth = ihdp.generate(seed=1, surface="B")
    beta = truth.extra["beta"]
    assert truth.modifiers == [f for f in ihdp.FEATURES if beta[f] != 0]
    assert 0 < len(truth.modifiers) < 25
    X = data.X_test.copy()
    for f in ihdp.FEATURES:
        X[f] = X[f] + 1.0
        moved = not np.allclose(truth.tau_fn(X), truth.tau_fn(data.X_test))
        X[f] = data.X_test[f]
        assert moved == (f in truth.modifiers), f


def test_ihdp_surface_a_is_constant():
    data, truth = ihdp.generate(seed=2, surface="A")
    validate(data, truth)
    assert np.all(truth.tau_train == 4.0) and np.all(truth.tau_test == 4.0)
    assert truth.modifiers == [] and np.all(truth.tau_fn(data.X_test) == 4.0)


def test_ihdp_seed_is_the_replication():
    a, ta = ihdp.generate(seed=4)
    b, tb = ihdp.generate(seed=4)
    c, tc = ihdp.generate(seed=5)
    pd.testing.assert_frame_equal(a.X_train, b.X_train)
    np.testing.assert_array_equal(a.Y_train, b.Y_train)
    np.testing.assert_array_equal(ta.tau_test, tb.tau_test)
    assert not np.array_equal(ta.extra["units_test"], tc.extra["units_test"])
    assert ta.extra["beta"] != tc.extra["beta"]


@pytest.mark.parametrize("knobs,sizes", [({"n_test": 100}, (647, 100)), ({"n": 700}, (700, 47)),
                                          ({"n": 600, "n_test": 147}, (600, 147)),
                                          ({"test_share": 0.2}, (598, 149))])
def test_ihdp_split_knobs(knobs, sizes):
    data, truth = ihdp.generate(seed=0, **knobs)
    assert (len(data.X_train), len(data.X_test)) == sizes
    validate(data, truth)


@pytest.mark.parametrize("knobs,field", [({"surface": "C"}, "surface='C'"), ({"n": 1000}, "n=1000"),
                                          ({"n_test": 747}, "n_test=747"),
                                          ({"n": 600, "n_test": 100}, "n + n_test must be 747"),
                                          ({"test_share": 1.5}, "test_share=1.5")])
def test_ihdp_bad_knobs_raise_one_line_naming_the_field(knobs, field):
    with pytest.raises(DataError) as err:
        ihdp.generate(seed=0, **knobs)
    assert field in str(err.value) and "\n" not in str(err.value)


# --- configs ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["nie_wager", "ihdp"])
def test_data_configs_instantiate_and_validate(name):
    from hydra.utils import instantiate
    from omegaconf import OmegaConf

    text = (CONF / f"{name}.yaml").read_text()
    assert text.startswith("# ")
    cfg = OmegaConf.create(text)
    data, truth = instantiate(cfg, seed=0)
    validate(data, truth)
    if name == "nie_wager":
        assert (cfg.setup, cfg.n, cfg.n_test, cfg.d, cfg.sigma) == ("A", 1000, 1000, 6, 1.0)
        assert len(data.X_train) == 1000 and len(data.X_test) == 1000
