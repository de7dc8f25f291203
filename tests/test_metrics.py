"""Unit tests of hte_bench.evaluation.metrics on hand-computed values."""
import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from hte_bench.evaluation import metrics
from hte_bench.evaluation.aggregate import aggregate
from hte_bench.data.base import Truth
from hte_bench.estimators.base import Estimate

nan = float("nan")


# --------------------------------------------------------------------------- unit-level metrics


def test_cate_mse_hand_computed():
    # errors 0,0,0,2 -> squares 0,0,0,4 -> mean 4/4 = 1.0
    assert metrics.cate_mse([1, 2, 3, 4], [1, 2, 3, 6]) == 1.0


def test_cate_mse_empty_is_nan_and_mismatch_raises():
    assert math.isnan(metrics.cate_mse([], []))
    with pytest.raises(ValueError):
        metrics.cate_mse([1, 2], [1, 2, 3])


def test_interval_coverage_and_width():
    tau = [1.0, 2.0, 3.0, 4.0]
    lower = [0.0, 2.0, 3.5, 3.0]
    upper = [2.0, 2.5, 4.0, 5.0]
    # unit 1: 0<=1<=2 yes; unit 2: 2<=2<=2.5 yes (closed); unit 3: 3.5<=3 no; unit 4: 3<=4<=5 yes -> 3/4
    assert metrics.interval_coverage(tau, lower, upper) == 0.75
    # widths 2, 0.5, 0.5, 2 -> sum 5 -> mean 1.25
    assert metrics.interval_width(lower, upper) == 1.25


def test_interval_metrics_nan_without_intervals():
    assert math.isnan(metrics.interval_coverage([1, 2], None, None))
    assert math.isnan(metrics.interval_coverage([1, 2], [0, 1], None))
    assert math.isnan(metrics.interval_width(None, None))
    assert math.isnan(metrics.interval_width([], []))


def test_calibration_exact_linear_relation():
    # tau = 2 * tau_hat + 1 exactly -> slope 2, intercept 1
    tau_hat = np.array([0.0, 1.0, 2.0, 3.0, 4.0])
    tau = 2 * tau_hat + 1
    slope, intercept = metrics.calibration(tau, tau_hat)
    assert slope == pytest.approx(2.0)
    assert intercept == pytest.approx(1.0)


def test_calibration_constant_prediction_is_nan():
    slope, intercept = metrics.calibration([1.0, 2.0, 3.0], [5.0, 5.0, 5.0])
    assert math.isnan(slope) and math.isnan(intercept)
    slope, intercept = metrics.calibration([], [])
    assert math.isnan(slope) and math.isnan(intercept)


def test_calibration_table_and_rmse_two_bins():
    tau_hat = [1.0, 2.0, 3.0, 4.0]
    tau = [1.0, 1.0, 5.0, 5.0]
    table = metrics.calibration_table(tau, tau_hat, bins=2)
    assert list(table.columns) == ["bin", "n", "mean_pred", "mean_true"]
    # median split of tau_hat: bin 0 = {1,2}, bin 1 = {3,4}
    # bin 0: mean_pred (1+2)/2 = 1.5, mean_true (1+1)/2 = 1 -> gap 0.5
    # bin 1: mean_pred (3+4)/2 = 3.5, mean_true (5+5)/2 = 5 -> gap -1.5
    assert table["bin"].tolist() == [0, 1]
    assert table["n"].tolist() == [2, 2]
    assert table["mean_pred"].tolist() == [1.5, 3.5]
    assert table["mean_true"].tolist() == [1.0, 5.0]
    # sqrt((0.5^2 + 1.5^2) / 2) = sqrt((0.25 + 2.25) / 2) = sqrt(1.25)
    assert metrics.calibration_rmse(tau, tau_hat, bins=2) == pytest.approx(math.sqrt(1.25))


def test_calibration_table_deciles_and_constant():
    rng = np.random.default_rng(1)
    h = rng.normal(size=1000)
    table = metrics.calibration_table(h, h)
    assert len(table) == 10 and table["n"].sum() == 1000
    # perfectly calibrated: mean_pred == mean_true in every bin
    assert metrics.calibration_rmse(h, h) == pytest.approx(0.0)
    # constant prediction -> one bin holding every unit; rmse = |5 - mean(1,2,3)| = |5 - 2| = 3
    const = metrics.calibration_table([1.0, 2.0, 3.0], [5.0, 5.0, 5.0])
    assert len(const) == 1 and const["n"].iloc[0] == 3
    assert metrics.calibration_rmse([1.0, 2.0, 3.0], [5.0, 5.0, 5.0]) == pytest.approx(3.0)
    assert metrics.calibration_table([], []).empty
    assert math.isnan(metrics.calibration_rmse([], []))


# --------------------------------------------------------------------------- importance


def test_importance_perfect_and_reversed():
    true = pd.Series({"a": 3.0, "b": 2.0, "c": 1.0})
    corr, hit = metrics.importance_agreement(pd.Series({"a": 30.0, "b": 20.0, "c": 10.0}), true, ["a"])
    assert corr == pytest.approx(1.0) and hit == 1.0
    # ranks (1,2,3) vs (3,2,1) -> Spearman -1; top estimated feature "c" is not a modifier
    corr, hit = metrics.importance_agreement(pd.Series({"a": 1.0, "b": 2.0, "c": 3.0}), true, ["a"])
    assert corr == pytest.approx(-1.0) and hit == 0.0


def test_importance_uses_shared_features_only():
    est = pd.Series({"b": 1.0, "a": 2.0, "z": 100.0})
    true = pd.Series({"a": 5.0, "b": 4.0, "c": 0.0})
    # shared {a, b}: est a>b, true a>b -> +1; top estimated is "z", not a modifier
    corr, hit = metrics.importance_agreement(est, true, ["a", "b"])
    assert corr == pytest.approx(1.0) and hit == 0.0


def test_importance_degenerate_is_nan():
    true = pd.Series({"a": 3.0, "b": 2.0})
    corr, hit = metrics.importance_agreement(pd.Series({"a": 0.0, "b": 0.0}), true, ["a"])
    assert math.isnan(corr) and math.isnan(hit)
    corr, hit = metrics.importance_agreement(None, true, ["a"])
    assert math.isnan(corr) and math.isnan(hit)
    corr, hit = metrics.importance_agreement(pd.Series({"a": 2.0, "b": 1.0}), None, ["a"])
    assert math.isnan(corr) and hit == 1.0
    # fewer than 2 shared features -> no correlation
    corr, _ = metrics.importance_agreement(pd.Series({"a": 2.0, "x": 1.0}), true, ["a"])
    assert math.isnan(corr)


# --------------------------------------------------------------------------- evaluate


def _truth():
    return Truth(tau_train=np.array([1.0, 2.0, 3.0, 4.0]), tau_test=np.array([0.0, 1.0, 2.0, 3.0]),
                 propensity_train=np.full(4, 0.5), propensity_test=np.full(4, 0.5), modifiers=["x1"])


def test_evaluate_keys_and_nan_intervals_when_none():
    est = Estimate(tau_hat_train=np.array([1.0, 2.0, 3.0, 6.0]), tau_hat_test=np.array([0.0, 1.0, 2.0, 3.0]),
                   ate_hat=3.0, fit_seconds=1.5, predict_seconds=0.25)
    out = metrics.evaluate(_truth(), est)
    assert tuple(out) == metrics.CHILD_METRICS
    assert all(type(v) is float for v in out.values())
    assert out["ate_true"] == 2.5            # (1+2+3+4)/4
    assert out["ate_bias"] == 0.5            # 3.0 - 2.5
    assert out["cate_mse_train"] == 1.0      # (0+0+0+4)/4
    assert out["cate_rmse_train"] == 1.0
    assert out["cate_mse_test"] == 0.0
    assert out["calib_slope_test"] == pytest.approx(1.0)
    assert out["calib_intercept_test"] == pytest.approx(0.0, abs=1e-12)
    assert out["calib_rmse_test"] == pytest.approx(0.0)
    assert out["fit_seconds"] == 1.5 and out["predict_seconds"] == 0.25
    for k in ("ate_ci_lower", "ate_ci_upper", "ate_covered", "ate_ci_width", "cate_coverage_train",
              "cate_coverage_test", "cate_ci_width_train", "cate_ci_width_test", "importance_rank_corr",
              "importance_top_hit"):
        assert math.isnan(out[k]), k


def test_population_ate_logged_only_where_the_generator_declares_it():
    import dataclasses

    est = Estimate(tau_hat_train=np.array([1.0, 2.0, 3.0, 4.0]), tau_hat_test=np.array([0.0, 1.0, 2.0, 3.0]),
                   ate_hat=2.4, ate_lower=2.0, ate_upper=2.6)
    assert "ate_true_population" not in metrics.evaluate(_truth(), est)
    out = metrics.evaluate(dataclasses.replace(_truth(), ate_population=2.7), est)
    assert out["ate_true_population"] == 2.7 and out["ate_covered_population"] == 0.0  # 2.7 > 2.6
    assert out["ate_true"] == 2.5 and out["ate_covered"] == 1.0                        # the sample ATE is covered
    per_seed = pd.DataFrame([out, {**out, "ate_covered_population": 1.0}])
    summary = aggregate(per_seed, n_failed=0)
    assert summary["ate_coverage_rate_population"] == 0.5 and summary["ate_coverage_rate"] == 1.0
    assert summary["ate_coverage_rate_population_ci_lower"] < 0.5 < summary["ate_coverage_rate_population_ci_upper"]
    assert "ate_coverage_rate_population" not in aggregate(per_seed.drop(columns=["ate_true_population",
                                                                                  "ate_covered_population"]), 0)


def test_evaluate_with_intervals_and_importance():
    est = Estimate(tau_hat_train=np.array([1.0, 2.0, 3.0, 4.0]), tau_hat_test=np.array([1.0, 1.0, 2.0, 3.0]),
                   ate_hat=2.4, ate_lower=2.0, ate_upper=2.6,
                   lower_train=np.array([0.0, 1.0, 3.5, 3.0]), upper_train=np.array([2.0, 3.0, 4.0, 5.0]),
                   lower_test=np.array([0.5, 0.0, 1.0, 2.0]), upper_test=np.array([1.5, 2.0, 3.0, 4.0]),
                   importance=pd.Series({"x1": 0.9, "x2": 0.1, "x3": 0.0}))
    true_imp = pd.Series({"x1": 1.0, "x2": 0.5, "x3": 0.0})
    out = metrics.evaluate(_truth(), est, true_imp)
    assert out["ate_covered"] == 1.0                      # 2.0 <= 2.5 <= 2.6
    assert out["ate_ci_width"] == pytest.approx(0.6)      # 2.6 - 2.0
    assert out["cate_coverage_train"] == 0.75             # unit 3 (3.5 > 3) missed
    # widths 2-0, 3-1, 4-3.5, 5-3 = 2, 2, 0.5, 2 -> 6.5/4 = 1.625
    assert out["cate_ci_width_train"] == 1.625
    # test: tau 0,1,2,3 in [0.5,1.5] no, [0,2] yes, [1,3] yes, [2,4] yes -> 3/4; widths 1,2,2,2 -> 7/4
    assert out["cate_coverage_test"] == 0.75
    assert out["cate_ci_width_test"] == 1.75
    # same ordering x1 > x2 > x3 on both -> Spearman 1; top estimated x1 is the modifier
    assert out["importance_rank_corr"] == pytest.approx(1.0)
    assert out["importance_top_hit"] == 1.0


def test_evaluate_ate_not_covered():
    est = Estimate(tau_hat_train=np.zeros(4), tau_hat_test=np.zeros(4), ate_hat=0.0, ate_lower=-1.0, ate_upper=1.0)
    out = metrics.evaluate(_truth(), est)
    assert out["ate_covered"] == 0.0          # 2.5 outside [-1, 1]
    assert out["ate_bias"] == -2.5
    # constant prediction on test -> calibration slope/intercept undefined; one bin: |0 - 1.5| = 1.5
    assert math.isnan(out["calib_slope_test"]) and math.isnan(out["calib_intercept_test"])
    assert out["calib_rmse_test"] == pytest.approx(1.5)


# --------------------------------------------------------------------------- aggregate


def _per_seed():
    return pd.DataFrame({
        "seed": [0, 1, 2],
        "ate_hat": [2.0, 3.0, 4.0],
        "ate_true": [2.0, 2.0, 2.0],
        "ate_covered": [1.0, 0.0, nan],
        "cate_mse_test": [1.0, nan, 3.0],
        "importance_top_hit": [nan, nan, nan],
    })


def test_aggregate_mean_std_t_interval():
    out = aggregate(_per_seed(), n_failed=1)
    # ate_hat 2,3,4: mean 3; deviations -1,0,1 -> var (1+0+1)/2 = 1 -> std 1
    assert out["ate_hat_mean"] == 3.0
    assert out["ate_hat_std"] == pytest.approx(1.0)
    half = stats.t.ppf(0.975, df=2) * 1.0 / math.sqrt(3)
    assert out["ate_hat_ci_lower"] == pytest.approx(3.0 - half)
    assert out["ate_hat_ci_upper"] == pytest.approx(3.0 + half)
    # errors 0,1,2 -> mean square (0+1+4)/3 = 5/3
    assert out["ate_rmse"] == pytest.approx(math.sqrt(5 / 3))
    assert out["n_seeds_ok"] == 3 and out["n_seeds_failed"] == 1
    assert "seed_mean" not in out
    for m in ("ate_hat", "ate_true", "ate_covered", "cate_mse_test", "importance_top_hit"):
        for suffix in ("mean", "std", "ci_lower", "ci_upper"):
            assert f"{m}_{suffix}" in out


def test_aggregate_drops_nan():
    out = aggregate(_per_seed(), n_failed=0)
    # cate_mse_test 1, NaN, 3 -> 1 and 3: mean 2, std sqrt((1+1)/1) = sqrt(2), df = 1
    assert out["cate_mse_test_mean"] == 2.0
    assert out["cate_mse_test_std"] == pytest.approx(math.sqrt(2))
    half = stats.t.ppf(0.975, df=1) * math.sqrt(2) / math.sqrt(2)
    assert out["cate_mse_test_ci_lower"] == pytest.approx(2.0 - half)
    assert out["cate_mse_test_ci_upper"] == pytest.approx(2.0 + half)
    # an all-NaN metric gives NaN summaries; a metric that was never logged is absent, not NaN
    for suffix in ("mean", "std", "ci_lower", "ci_upper"):
        assert math.isnan(out[f"importance_top_hit_{suffix}"])
        assert f"calib_slope_test_{suffix}" not in out
    # ate_covered 1, 0 (NaN dropped) -> rate 1/2
    assert out["ate_coverage_rate"] == 0.5
    assert 0.0 < out["ate_coverage_rate_ci_lower"] < 0.5 < out["ate_coverage_rate_ci_upper"] < 1.0


def test_aggregate_one_seed():
    out = aggregate(_per_seed().iloc[:1], n_failed=2)
    assert out["ate_hat_mean"] == 2.0
    assert math.isnan(out["ate_hat_std"])
    assert math.isnan(out["ate_hat_ci_lower"]) and math.isnan(out["ate_hat_ci_upper"])
    assert out["ate_rmse"] == 0.0
    assert out["n_seeds_ok"] == 1 and out["n_seeds_failed"] == 2


def test_aggregate_wilson_nine_of_ten():
    per_seed = pd.DataFrame({"ate_covered": [1.0] * 9 + [0.0], "ate_hat": np.arange(10.0),
                             "ate_true": np.arange(10.0)})
    out = aggregate(per_seed, n_failed=0)
    assert out["ate_coverage_rate"] == 0.9
    # Wilson 95% for 9/10: 0.5958 .. 0.9821
    assert out["ate_coverage_rate_ci_lower"] == pytest.approx(0.5958, abs=1e-4)
    assert out["ate_coverage_rate_ci_upper"] == pytest.approx(0.9821, abs=1e-4)
    # a lower confidence level (50%, alpha 0.5) gives a narrower interval
    narrow = aggregate(per_seed, n_failed=0, alpha=0.5)
    assert narrow["ate_coverage_rate_ci_lower"] > out["ate_coverage_rate_ci_lower"]


def test_aggregate_no_coverage_information():
    out = aggregate(pd.DataFrame({"ate_hat": [1.0, 2.0], "ate_true": [1.0, 1.0],
                                          "ate_covered": [nan, nan]}), n_failed=0)
    assert math.isnan(out["ate_coverage_rate"])
    assert math.isnan(out["ate_coverage_rate_ci_lower"]) and math.isnan(out["ate_coverage_rate_ci_upper"])


def test_aggregate_zero_ok_seeds():
    assert aggregate(pd.DataFrame(), n_failed=5) == {"n_seeds_ok": 0, "n_seeds_failed": 5}


def test_aggregate_roundtrip_from_evaluate():
    est = Estimate(tau_hat_train=np.array([1.0, 2.0, 3.0, 6.0]), tau_hat_test=np.array([0.0, 1.0, 2.0, 3.0]),
                   ate_hat=3.0)
    rows = [dict(metrics.evaluate(_truth(), est), seed=s) for s in range(3)]
    out = aggregate(pd.DataFrame(rows), n_failed=0)
    assert out["cate_mse_train_mean"] == 1.0 and out["cate_mse_train_std"] == 0.0
    assert out["ate_rmse"] == pytest.approx(0.5)
    assert all(isinstance(v, float) for v in out.values())


def test_without_truth_only_truth_free_metrics_exist():
    est = Estimate(tau_hat_train=np.array([1.0, 2.0, 3.0, 4.0]), tau_hat_test=np.array([1.0, 1.0, 2.0, 3.0]),
                   ate_hat=2.4, ate_lower=2.0, ate_upper=2.6)
    truth = _truth()
    truth.tau_train = truth.tau_test = None
    out = metrics.evaluate(truth, est)
    assert set(out) == set(metrics.WITHOUT_TRUTH)
    assert out["ate_hat"] == 2.4 and out["ate_ci_width"] == pytest.approx(0.6)
    summary = aggregate(pd.DataFrame([out, out]), n_failed=0)
    assert "ate_rmse" not in summary and "ate_coverage_rate" not in summary and summary["n_seeds_ok"] == 2
