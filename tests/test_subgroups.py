"""Tests of hte_bench.evaluation.subgroups: AIPW on the log-wage scale from the shared DR scores, balance, hand-computed
subgroup tables, the figures in hte_bench.plots, analyse() and the registered analysis."""
import math

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest
from matplotlib.figure import Figure

from hte_bench import plots
from hte_bench.data import workforce
from hte_bench.estimators.base import Estimate
from hte_bench.evaluation import analyses as A
from hte_bench.evaluation import metrics
from hte_bench.evaluation import subgroups as S
from hte_bench.evaluation.dr_scores import fit_dr_nuisances


@pytest.fixture(autouse=True)
def no_open_pyplot_figures():
    plt.close("all")
    yield
    assert plt.get_fignums() == []


@pytest.fixture(scope="module")
def workforce_4000():
    return workforce.generate(seed=0, n=4000)


@pytest.fixture(scope="module")
def nuisances_4000(workforce_4000):
    ds, _ = workforce_4000
    return fit_dr_nuisances(ds, seed=0)


@pytest.fixture(scope="module")
def aipw_4000(nuisances_4000):
    return {**S.aipw_ate(nuisances_4000.train.aipw()), "scores": nuisances_4000.train.aipw(),
            "e_hat": nuisances_4000.train.e_hat}


def _noisy_estimate(truth, seed=1, noise=0.02, half_width=0.05):
    rng = np.random.default_rng(seed)
    hat_train = truth.tau_train + rng.normal(0, noise, len(truth.tau_train))
    hat_test = truth.tau_test + rng.normal(0, noise, len(truth.tau_test))
    return Estimate(tau_hat_train=hat_train, tau_hat_test=hat_test, ate_hat=float(hat_train.mean()),
                    lower_train=hat_train - half_width, upper_train=hat_train + half_width,
                    lower_test=hat_test - half_width, upper_test=hat_test + half_width)


# --------------------------------------------------------------------------- AIPW


def test_aipw_recovers_the_log_wage_ate(workforce_4000, aipw_4000):
    _, truth = workforce_4000
    r = aipw_4000
    # The notebook ran its doubly robust step on the wage level and got 6184; on log wage it is ~0.07.
    assert abs(r["ate"]) < 1
    assert abs(r["ate"] - truth.ate_train) < 0.02
    assert r["se"] > 0
    assert r["ci_lower"] < r["ate"] < r["ci_upper"]
    assert r["ci_lower"] <= truth.ate_train <= r["ci_upper"]  # seed 0's interval covers the sample ATE
    assert len(r["scores"]) == len(r["e_hat"]) == r["n"] == 4000
    assert r["e_hat"].min() >= 0.01 and r["e_hat"].max() <= 0.99


def test_aipw_ate_and_se_come_from_the_scores(aipw_4000):
    scores = aipw_4000["scores"]
    assert aipw_4000["ate"] == pytest.approx(scores.mean(), rel=1e-12)
    assert aipw_4000["se"] == pytest.approx(scores.std(ddof=1) / math.sqrt(scores.size), rel=1e-10)
    # The normal interval is ate ± z·se.
    half = 1.959963984540054 * aipw_4000["se"]
    assert aipw_4000["ci_lower"] == pytest.approx(aipw_4000["ate"] - half, rel=1e-8)
    assert aipw_4000["ci_upper"] == pytest.approx(aipw_4000["ate"] + half, rel=1e-8)


def test_aipw_scores_are_econml_dr_outcomes_of_cross_fitted_nuisances(nuisances_4000):
    tr = nuisances_4000.train
    mu0, mu1 = tr.reg_preds.T
    e = tr.e_hat
    by_hand = mu1 - mu0 + tr.T * (tr.Y - mu1) / e - (1 - tr.T) * (tr.Y - mu0) / (1 - e)
    np.testing.assert_allclose(tr.aipw(), by_hand, rtol=1e-10)
    # grf's score with tau_hat = mu1 - mu0 is the same AIPW score.
    np.testing.assert_allclose(tr.grf_scores(mu1 - mu0), by_hand, rtol=1e-8, atol=1e-10)


def test_aipw_is_reproducible_from_the_seed(workforce_4000, aipw_4000):
    ds, _ = workforce_4000
    again = fit_dr_nuisances(ds, seed=0).train.aipw()
    np.testing.assert_array_equal(again, aipw_4000["scores"])


def test_dr_nuisances_reject_a_missing_arm():
    ds, _ = workforce.generate(seed=0, n=200, n_test=100)
    ds.T_train = np.zeros_like(ds.T_train)
    with pytest.raises(ValueError, match="arm"):
        fit_dr_nuisances(ds, seed=0)


@pytest.mark.slow
def test_aipw_interval_covers_the_sample_ate_at_about_the_nominal_rate():
    hits = []
    for seed in range(40):
        ds, truth = workforce.generate(seed=seed, n=2000, n_test=200)
        r = S.aipw_ate(fit_dr_nuisances(ds, seed=seed).train.aipw())
        hits.append(r["ci_lower"] <= truth.ate_train <= r["ci_upper"])
    print(f"AIPW interval covered the sample ATE in {sum(hits)} of 40 seeds")
    # 95% intervals over 40 seeds: 34 or more covered unless coverage is clearly below nominal.
    assert sum(hits) >= 34, sum(hits)


# --------------------------------------------------------------------------- balance


def test_weighting_improves_balance_of_a_confounder(workforce_4000, aipw_4000):
    ds, _ = workforce_4000
    table = S.balance_table(ds.X_train, ds.T_train, aipw_4000["e_hat"])
    assert list(table.columns[:3]) == ["covariate", "smd_unweighted", "smd_weighted"]
    assert table["covariate"].tolist() == list(ds.X_train.columns)
    row = table.set_index("covariate").loc["unemployment_months"]
    # Take-up rises with unemployment duration, so treated units have visibly longer spells before weighting.
    assert row["smd_unweighted"] > 0.2
    assert abs(row["smd_weighted"]) < abs(row["smd_unweighted"])
    assert S.max_abs_smd_weighted(table) == pytest.approx(table["smd_weighted"].abs().max())
    assert S.max_abs_smd_weighted(table) < S.max_abs_smd_unweighted(table)


def test_balance_by_hand():
    X = pd.DataFrame({"x": [1.0, 3.0, 0.0, 2.0]})
    T = np.array([1, 1, 0, 0])
    # Treated mean 2, control mean 1, both arm variances 2 (ddof=1) -> pooled sd sqrt(2).
    e = np.array([0.5, 0.25, 0.5, 0.75])
    # Weights: treated 2, 4 -> weighted mean (2+12)/6 = 7/3; control 2, 4 -> (0+8)/6 = 4/3.
    row = S.balance_table(X, T, e).iloc[0]
    assert row["smd_unweighted"] == pytest.approx(1 / math.sqrt(2))
    assert row["smd_weighted"] == pytest.approx((7 / 3 - 4 / 3) / math.sqrt(2))


# --------------------------------------------------------------------------- subgroup, decile and quartile tables


def _hand_data():
    X = pd.DataFrame({"g": [0, 0, 1, 1, 1], "x": [1.0, 2.0, 3.0, 4.0, 5.0]}, index=[10, 11, 12, 13, 14])
    tau_true = np.array([0.1, 0.2, 0.3, 0.4, 0.5])
    tau_hat = np.array([0.2, 0.2, 0.1, 0.5, 0.6])
    lower = np.array([0.0, 0.15, 0.0, 0.3, 0.55])   # covers: yes, yes, no, yes, no
    upper = np.array([0.3, 0.3, 0.2, 0.6, 0.7])
    groups = [S.Subgroup("group", "g"),
              S.Subgroup("band", "x", bins=[0, 1, 3, 5, 10], labels=["lo", "mid", "hi", "empty"])]
    return X, tau_true, tau_hat, lower, upper, groups


def test_subgroup_table_by_hand():
    X, tau_true, tau_hat, lower, upper, groups = _hand_data()
    table = S.subgroup_table(X, tau_true, tau_hat, lower, upper, groups)
    assert list(table.columns) == S.SUBGROUP_COLUMNS
    t = table.set_index(["subgroup", "level"])
    expected = {  # level: n, mean tau_hat, mean tau_true, coverage
        ("group", "0"): (2, 0.2, 0.15, 1.0),
        ("group", "1"): (3, 0.4, 0.4, 1 / 3),
        ("band", "lo"): (1, 0.2, 0.1, 1.0),      # x in (0, 1]
        ("band", "mid"): (2, 0.15, 0.25, 0.5),   # x in (1, 3]
        ("band", "hi"): (2, 0.55, 0.45, 0.5),    # x in (3, 5]
    }
    for key, (n, hat, true, cover) in expected.items():
        row = t.loc[key]
        assert row["n"] == n
        assert row["tau_hat_mean"] == pytest.approx(hat)
        assert row["tau_true_mean"] == pytest.approx(true)
        assert row["diff"] == pytest.approx(hat - true)
        assert row["coverage"] == pytest.approx(cover)
    empty = t.loc[("band", "empty")]
    assert empty["n"] == 0 and np.isnan(empty["tau_hat_mean"]) and np.isnan(empty["coverage"])


def test_subgroup_table_without_intervals_has_nan_coverage():
    X, tau_true, tau_hat, _, _, groups = _hand_data()
    table = S.subgroup_table(X, tau_true, tau_hat, None, None, groups)
    assert table["coverage"].isna().all()
    assert table.loc[0, "tau_hat_mean"] == pytest.approx(0.2)


def test_subgroup_table_rejects_an_unknown_column():
    X, tau_true, tau_hat, _, _, _ = _hand_data()
    with pytest.raises(ValueError, match="not a feature"):
        S.subgroup_table(X, tau_true, tau_hat, subgroups=[S.Subgroup("nope", "missing")])


def test_workforce_subgroups_fit_the_generator(workforce_4000):
    ds, truth = workforce_4000
    table = S.subgroup_table(ds.X_test, truth.tau_test, truth.tau_test, subgroups=workforce.SUBGROUPS)
    assert set(table["subgroup"]) == {"education", "industry_tech", "rural", "age"}
    assert table[table["subgroup"] == "education"]["level"].tolist() == ["<HS", "HS/Some College", "Bachelor",
                                                                          "Graduate"]
    # Every test unit falls in exactly one level of each grouping.
    assert (table.groupby("subgroup")["n"].sum() == len(ds.X_test)).all()
    assert np.allclose(table["diff"], 0.0)


def test_calibration_by_decile_is_the_metrics_table():
    rng = np.random.default_rng(0)
    tau = rng.normal(size=500)
    hat = tau + rng.normal(scale=0.3, size=500)
    table = S.calibration_by_decile(tau, hat)
    pd.testing.assert_frame_equal(table[metrics.CALIBRATION_COLUMNS], metrics.calibration_table(tau, hat))
    assert np.allclose(table["gap"], table["mean_pred"] - table["mean_true"])


def test_quartile_profiles(workforce_4000):
    ds, truth = workforce_4000
    est = _noisy_estimate(truth)
    table = S.quartile_profiles(ds.X_test, est.tau_hat_test, truth.tau_test)
    assert list(table.columns) == ["overall", "top_quartile", "bottom_quartile"]
    assert list(table.index) == ["count", "tau_hat_mean", "tau_true_mean", *ds.X_test.columns]
    assert table.loc["tau_hat_mean", "top_quartile"] >= table.loc["tau_hat_mean", "bottom_quartile"]
    assert table.loc["count", "overall"] == len(ds.X_test)
    assert table.loc["count", "top_quartile"] == pytest.approx(len(ds.X_test) / 4, abs=1)
    assert table.loc["age", "overall"] == pytest.approx(ds.X_test["age"].mean())
    # Effects fall with education, so the top quarter by estimate is less educated than the bottom.
    assert table.loc["education_years", "top_quartile"] < table.loc["education_years", "bottom_quartile"]


# --------------------------------------------------------------------------- figures


def test_figures_are_figures_without_pyplot_state(tmp_path, workforce_4000):
    ds, truth = workforce_4000
    est = _noisy_estimate(truth)
    heat = plots.heatmap_figure(ds.X_test, est.tau_hat_test, truth.tau_test)
    table = S.subgroup_table(ds.X_test, truth.tau_test, est.tau_hat_test, subgroups=workforce.SUBGROUPS)
    bars = plots.subgroup_figure(table)
    empty = plots.subgroup_figure(table.iloc[:0])
    for name, fig in (("heat", heat), ("bars", bars), ("empty", empty)):
        assert isinstance(fig, Figure)
        fig.savefig(tmp_path / f"{name}.png")
        assert (tmp_path / f"{name}.png").stat().st_size > 1000
    # Two heatmap panels (plus the shared colour bar), annotated with values and counts.
    texts = [t.get_text() for ax in heat.axes[:2] for t in ax.texts]
    assert len(texts) == 2 * 9 and all("n=" in t for t in texts)


# --------------------------------------------------------------------------- analyse


def test_analyse_returns_every_table_and_metric():
    ds, truth = workforce.generate(seed=0)
    truth.extra["subgroups"] = workforce.SUBGROUPS
    est = _noisy_estimate(truth)
    report = S.analyse(ds, truth, est, fit_dr_nuisances(ds, seed=0))
    assert set(report.tables) == {"aipw_ate", "balance", "subgroups", "calibration_by_decile",
                                  "quartile_profiles"}
    assert list(report.metrics) == list(S.SUBGROUP_METRICS)
    assert all(math.isfinite(v) for v in report.metrics.values())
    assert abs(report.metrics["aipw_ate"]) < 1
    covered = report.metrics["aipw_ate_ci_lower"] <= truth.ate_train <= report.metrics["aipw_ate_ci_upper"]
    assert report.metrics["aipw_ate_covered"] == float(covered)
    # Subgroup and decile tables are on the test split; AIPW on the train split.
    assert report.tables["subgroups"].groupby("subgroup")["n"].sum().eq(len(ds.X_test)).all()
    assert report.tables["calibration_by_decile"]["n"].sum() == len(ds.X_test)
    assert report.tables["aipw_ate"].loc[0, "n"] == len(ds.X_train)
    assert report.tables["aipw_ate"].loc[0, "ate_true"] == pytest.approx(truth.ate_train)
    # The noisy estimate's ±0.05 intervals cover the truth for most units of every group.
    assert (report.tables["subgroups"]["coverage"] > 0.9).all()


def test_registered_analysis_shares_the_seed_nuisances_and_draws_figures():
    ds, truth = workforce.generate(seed=1, n=600, n_test=300)
    est = _noisy_estimate(truth)
    settings = A.Settings(seed=1)
    out = A.run_all(ds, est, truth, settings, which=["subgroups"])
    assert out.notes == []
    assert {"subgroups/aipw_ate", "subgroups/balance", "subgroups/subgroups"} <= set(out.tables)
    assert set(out.figures) == {"subgroups_subgroups.png", "subgroups_heatmap.png"}
    assert all(isinstance(f, Figure) for f in out.figures.values())
    # The AIPW ATE is the mean of the cached train-split DR scores: computed once per seed.
    (nuisances,) = settings.cache.values()
    assert out.metrics["aipw_ate"] == pytest.approx(nuisances.train.aipw().mean(), rel=1e-12)


def test_analyse_skips_what_is_not_declared():
    ds, truth = workforce.generate(seed=1, n=600, n_test=300)
    truth.extra.pop("subgroups")  # the generator declares them; this test wants none
    keep = ["prior_wage", "unemployment_months", "industry_tech", "rural"]
    ds.X_train, ds.X_test = ds.X_train[keep], ds.X_test[keep]
    est = _noisy_estimate(truth)
    est.lower_test = est.upper_test = None
    report = S.analyse(ds, truth, est, fit_dr_nuisances(ds, seed=1))
    assert "subgroups" not in report.tables
    assert {"aipw_ate", "balance", "calibration_by_decile", "quartile_profiles"} <= set(report.tables)
    # The registered analysis does nothing without declared subgroups, and nothing without a truth.
    settings = A.Settings(seed=1)
    assert A.run_all(ds, est, truth, settings, which=["subgroups"]) == A.AnalysisResult()
    assert A.run_all(ds, est, None, settings, which=["subgroups"]) == A.AnalysisResult()
    assert settings.cache == {}
