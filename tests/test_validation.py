"""Truth-free validation scores (econml RScorer / DRTester on the shared DR nuisances, DR MSE, DR policy values) and their oracle versions."""
from __future__ import annotations

import io
import math

import numpy as np
import pytest

from hte_bench.evaluation import validation as V
from hte_bench.data.engagement import generate, tau

SEED = 0


def small_forest():
    """Outcome model with few trees so the file stays fast."""
    from sklearn.ensemble import RandomForestRegressor

    return RandomForestRegressor(n_estimators=30, min_samples_leaf=5, random_state=SEED)


@pytest.fixture(scope="module")
def engagement():
    """Randomised engagement data, tau = 2 + 3·engagement."""
    return generate(seed=0, n=800, n_test=800)


@pytest.fixture(scope="module")
def scored(engagement):
    """truth_free for the true tau, its mean as a constant, and zero; pyplot figure numbers before and after."""
    import matplotlib.pyplot as plt

    dataset, truth = engagement
    mean_tau = float(np.mean(truth.tau_train))
    before = list(plt.get_fignums())
    out = {
        "true": V.truth_free(dataset, tau, seed=SEED, outcome_model=small_forest()),
        "constant": V.truth_free(dataset, lambda X: np.full(len(X), mean_tau), seed=SEED,
                                 outcome_model=small_forest()),
        "zero": V.truth_free(dataset, lambda X: np.zeros(len(X)), seed=SEED, outcome_model=small_forest()),
    }
    return out, before, list(plt.get_fignums())


# --------------------------------------------------------------------------- (a) scores rank the truth first


def test_metric_keys_are_complete(scored):
    results, _, _ = scored
    for r in results.values():
        assert tuple(r.metrics) == V.TRUTH_FREE_METRICS
        assert all(isinstance(v, float) for v in r.metrics.values())


def test_true_tau_beats_constant_and_zero(scored):
    results, _, _ = scored
    true, const, zero = (results[k].metrics for k in ("true", "constant", "zero"))
    assert true["rscore"] > const["rscore"] and true["rscore"] > zero["rscore"]
    assert true["dr_mse"] < const["dr_mse"] < zero["dr_mse"]
    assert true["r_loss"] < const["r_loss"] < zero["r_loss"]


def test_r_loss_is_consistent_with_rscore(scored):
    results, _, _ = scored
    for r in results.values():
        m = r.metrics
        assert m["r_loss"] == pytest.approx((1.0 - m["rscore"]) * m["r_loss_baseline"], rel=1e-12)
    # The baseline is the best constant effect, so no constant can have a smaller R-loss.
    for k in ("constant", "zero"):
        assert results[k].metrics["r_loss"] >= results[k].metrics["r_loss_baseline"] - 1e-9


def test_blp_of_true_tau_is_near_one_and_significant(scored):
    m = scored[0]["true"].metrics
    assert abs(m["blp_coef"] - 1.0) < 0.4
    assert m["blp_pvalue"] < 1e-3
    assert m["qini"] > 0 and m["qini_ci_lower"] > 0
    assert m["autoc"] > 0 and m["autoc_ci_lower"] < m["autoc"] < m["autoc_ci_upper"]
    assert m["cal_score"] > 0.5


def test_constant_effect_has_undefined_ranking_scores_with_a_note(scored):
    for key in ("constant", "zero"):
        r = scored[0][key]
        for name in ("blp_coef", "blp_pvalue", "cal_score", "qini", "qini_ci_lower", "autoc",
                     "targeting_gain_top25"):
            assert math.isnan(r.metrics[name]), (key, name)
        assert any("constant predicted effect" in n for n in r.notes)
        assert r.figures == {}
        # Defined for a constant: the fit scores and the policy values.
        assert math.isfinite(r.metrics["rscore"]) and math.isfinite(r.metrics["policy_value_model"])
    assert scored[0]["true"].notes == []


def test_dr_pseudo_outcomes_average_to_the_ate(scored, engagement):
    _, truth = engagement
    r = scored[0]["true"]
    assert r.psi is not None and r.psi.shape == truth.tau_test.shape
    assert abs(np.mean(r.psi) - np.mean(truth.tau_test)) < 0.3
    assert r.metrics["policy_value_treat_all"] == pytest.approx(np.mean(r.psi))
    # The zero model treats nobody; the true tau (all positive here) treats everybody.
    assert scored[0]["zero"].metrics["policy_value_model"] == 0.0
    assert r.metrics["policy_gain_vs_all"] == 0.0


def test_bad_effect_fn_is_rejected(engagement):
    dataset, _ = engagement
    with pytest.raises(ValueError, match="values for"):
        V.truth_free(dataset, lambda X: np.zeros(3), seed=SEED, outcome_model=small_forest())


# --------------------------------------------------------------------------- (b) policy values by hand


def test_policy_values_hand_computed():
    psi = np.array([4.0, -2.0, 1.0, 3.0, 0.0, 2.0, -1.0, 5.0])
    tau_hat = np.array([0.5, -1.0, 2.0, 3.0, -0.5, 1.0, 0.2, 4.0])
    out = V.policy_values(psi, tau_hat)
    assert tuple(out) == V.POLICY_METRICS
    # Treated (tau_hat > 0): all but units 1 and 4 -> (4 + 1 + 3 + 2 - 1 + 5) / 8.
    assert out["policy_value_model"] == pytest.approx(14 / 8)
    assert out["policy_value_treat_all"] == pytest.approx(12 / 8)
    assert out["policy_value_treat_none"] == 0.0
    # Model minus treat-all = -(psi of the untreated) / n = -(-2 + 0) / 8; per-unit (0, 2, 0, ...) -> se 0.25.
    assert out["policy_gain_vs_all"] == pytest.approx(0.25)
    assert out["policy_gain_vs_all_se"] == pytest.approx(0.25)
    contrib = np.array([4.0, 0.0, 1.0, 3.0, 0.0, 2.0, -1.0, 5.0])
    assert out["policy_value_model_se"] == pytest.approx(np.std(contrib, ddof=1) / np.sqrt(8))
    # 75th percentile of tau_hat is 2.25 -> top quarter = units with tau_hat 3 and 4 (psi 3 and 5).
    assert out["targeting_gain_top25"] == pytest.approx(4.0 - 1.5)
    assert out["targeting_gain_top25_se"] > 0


def test_policy_values_constant_prediction_has_no_top_quarter():
    out = V.policy_values([1.0, 2.0, 3.0, 4.0], [0.7, 0.7, 0.7, 0.7])
    assert math.isnan(out["targeting_gain_top25"]) and math.isnan(out["targeting_gain_top25_se"])
    assert out["policy_value_model"] == pytest.approx(2.5)
    assert out["policy_gain_vs_all"] == 0.0


def test_targeting_gain_standard_error_matches_its_sampling_spread():
    # Fixed predictions, fresh DR scores each replication: the reported SE should match the spread.
    rng = np.random.default_rng(1)
    n, reps = 400, 400
    tau_hat = np.linspace(-1.0, 1.0, n)
    gains, ses = [], []
    for _ in range(reps):
        psi = 1.0 + tau_hat + rng.normal(0.0, 2.0, n)
        out = V.policy_values(psi, tau_hat)
        gains.append(out["targeting_gain_top25"])
        ses.append(out["targeting_gain_top25_se"])
    assert np.mean(gains) == pytest.approx(0.75 - 0.0, abs=0.05)  # mean tau_hat of the top quarter is ~0.75
    assert np.mean(ses) == pytest.approx(np.std(gains, ddof=1), rel=0.12)


def test_policy_values_length_mismatch_raises():
    with pytest.raises(ValueError, match="different lengths"):
        V.policy_values([1.0, 2.0], [1.0])


# --------------------------------------------------------------------------- (c) oracle quantities by hand


def test_with_truth_hand_computed():
    tau_true = np.array([1.0, -2.0, 3.0, 0.5])
    tau_hat = np.array([0.2, 0.1, 2.0, -1.0])
    out = V.with_truth(tau_true, tau_hat)
    assert tuple(out) == V.ORACLE_METRICS
    assert out["oracle_policy_value"] == pytest.approx((1.0 + 3.0 + 0.5) / 4)
    assert out["policy_value_model_true"] == pytest.approx((1.0 - 2.0 + 3.0) / 4)
    assert out["policy_regret"] == pytest.approx(1.125 - 0.5)
    # 75th percentile of tau_hat is 0.65 -> top quarter = the unit with tau_hat 2 (tau 3); mean tau 0.625.
    assert out["targeting_gain_top25_true"] == pytest.approx(3.0 - 0.625)
    assert math.isnan(V.with_truth(tau_true, np.zeros(4))["targeting_gain_top25_true"])


def test_with_truth_perfect_model_has_no_regret():
    t = np.array([-1.0, 2.0, 0.5, -0.2, 3.0])
    assert V.with_truth(t, t)["policy_regret"] == 0.0


# --------------------------------------------------------------------------- (d) figures


def test_figures_are_detached_matplotlib_figures(scored):
    from matplotlib.figure import Figure

    results, before, after = scored
    figs = results["true"].figures
    assert set(figs) == {"drtester_calibration.png", "drtester_qini.png", "drtester_toc.png"}
    for fig in figs.values():
        assert isinstance(fig, Figure)
        buf = io.BytesIO()
        fig.savefig(buf, format="png")
        assert buf.getvalue()[:8] == b"\x89PNG\r\n\x1a\n"
    assert after == before  # truth_free left no pyplot figure open


# --------------------------------------------------------------------------- (e) reproducibility


def test_same_seed_gives_identical_metrics_and_leaves_global_rng_alone(scored, engagement):
    dataset, _ = engagement
    np.random.seed(123)
    state = np.random.get_state()
    again = V.truth_free(dataset, tau, seed=SEED, outcome_model=small_forest())
    after = np.random.get_state()
    assert after[0] == state[0] and np.array_equal(after[1], state[1]) and after[2:] == state[2:]
    first = scored[0]["true"].metrics
    assert again.metrics.keys() == first.keys()
    for k, v in first.items():
        assert (math.isnan(v) and math.isnan(again.metrics[k])) or v == again.metrics[k], k


# --------------------------------------------------------------------------- (f) shared DR nuisances


def test_shared_nuisances_are_replayed_not_refitted(engagement, scored):
    """Given the seed's nuisances, truth_free scores with exactly them (one AIPW fit per seed)."""
    from hte_bench.evaluation.dr_scores import fit_dr_nuisances

    dataset, _ = engagement
    nuisances = fit_dr_nuisances(dataset, seed=SEED, outcome_model=small_forest())
    calls = []
    shared = V.truth_free(dataset, tau, seed=SEED, outcome_model=small_forest(),
                          nuisances=lambda: calls.append(1) or nuisances)
    assert calls == [1]
    np.testing.assert_array_equal(shared.psi, nuisances.test.aipw())
    # Same models and seed as the fixture's own fit: identical scores, so the replay changes nothing.
    first = scored[0]["true"].metrics
    for k, v in first.items():
        assert (math.isnan(v) and math.isnan(shared.metrics[k])) or v == pytest.approx(shared.metrics[k]), k


def test_test_split_scores_come_from_train_fitted_nuisances(engagement):
    """Test-split DR scores use nuisances fitted on the train split only, so they move with the train data."""
    from hte_bench.evaluation.dr_scores import fit_dr_nuisances

    dataset, _ = engagement
    a = fit_dr_nuisances(dataset, seed=SEED, outcome_model=small_forest())
    assert a.test.reg_preds.shape == (len(dataset.X_test), 2) and a.train.reg_preds.shape == (len(dataset.X_train), 2)
    assert (a.test.e_hat >= 0.01).all() and (a.test.e_hat <= 0.99).all()
    import dataclasses

    shifted = dataclasses.replace(dataset, Y_train=dataset.Y_train + 1.0)
    b = fit_dr_nuisances(shifted, seed=SEED, outcome_model=small_forest())
    # Forest splits on shifted targets tie-break slightly differently; the shift is what matters.
    np.testing.assert_allclose(b.test.reg_preds, a.test.reg_preds + 1.0, atol=0.05)
