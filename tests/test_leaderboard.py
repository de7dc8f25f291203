"""Ranking and significance on constructed run tables where the right answer is known."""
import numpy as np
import pandas as pd
import pytest

from hte_bench.errors import ConfigError
from hte_bench.compare.leaderboard import average_rank, build, direction, distinguishing_overrides, latest_per_config
from hte_bench.compare.promote import Gates, choose


def _tables(configs: dict[str, list[float]], data: str = "d1", metric: str = "cate_rmse_test", extra=None):
    """Parent and seed tables as the tracker returns them, one config per key with per-seed values."""
    parents, seeds = [], []
    for i, (name, values) in enumerate(configs.items()):
        run_id = f"{data}-{name}"
        v = np.asarray(values, float)
        parents.append({"run_id": run_id, "start_time": i, "tags.data": data, "tags.estimator": name,
                        "tags.config_hash": f"hash-{data}-{name}", "params.alpha": "0.05",
                        f"metrics.{metric}_mean": v.mean(), f"metrics.{metric}_ci_lower": v.min(),
                        f"metrics.{metric}_ci_upper": v.max(), "metrics.n_seeds_ok": len(v),
                        "metrics.n_seeds_failed": 0, "metrics.ate_coverage_rate": 0.9,
                        **(extra or {}).get(name, {})})
        for s, x in enumerate(v):
            seeds.append({"run_id": f"{run_id}-{s}", "parent_id": run_id, "status": "FINISHED",
                          "tags.seed": str(s), f"metrics.{metric}": x})
    return pd.DataFrame(parents), pd.DataFrame(seeds)


BASE = np.linspace(1.0, 1.5, 10)  # the seeds differ a lot; configurations differ consistently
TWIN = np.array([0.012, -0.01] * 5)  # a hair worse on average, better on half the seeds: not distinguishable


def test_ranking_and_paired_significance_on_a_known_case():
    parents, seeds = _tables({"good": BASE, "bad": BASE + 0.3,
                              "twin": BASE + TWIN})
    board = build(parents, seeds, "cate_rmse_test")
    assert board["estimator"].tolist() == ["good", "twin", "bad"]
    assert board["rank"].tolist() == [1, 2, 3]
    status = dict(zip(board["estimator"], board["vs_best"]))
    # "bad" is worse on all 10 seeds: Wilcoxon exact p = 2/1024, Holm-adjusted ×2 — distinguishable.
    assert status == {"good": "best", "twin": "tied", "bad": "worse"}
    bad = board.set_index("estimator").loc["bad"]
    assert bad["p_vs_best"] == pytest.approx(2 / 1024)
    assert bad["p_vs_best_adj"] == pytest.approx(2 * 2 / 1024)


def test_wilcoxon_cannot_separate_with_too_few_seeds_but_ttest_can():
    parents, seeds = _tables({"good": BASE[:5], "bad": BASE[:5] + 0.3 + np.arange(5) * 0.01})
    assert build(parents, seeds)["vs_best"].tolist() == ["best", "tied"]  # exact p ≥ 2/32 with 5 seeds
    assert build(parents, seeds, test="ttest")["vs_best"].tolist() == ["best", "worse"]


def test_higher_and_target_metrics_rank_the_right_way():
    parents, seeds = _tables({"a": [0.2] * 4, "b": [0.9] * 4}, metric="importance_rank_corr")
    assert build(parents, seeds, "importance_rank_corr")["estimator"].tolist() == ["b", "a"]
    # Coverage is best near 1 - alpha = 0.95: 0.93 beats 1.0 and 0.80.
    parents, seeds = _tables({"wide": [1.0] * 4, "near": [0.93] * 4, "narrow": [0.8] * 4},
                             metric="cate_coverage_test")
    assert build(parents, seeds, "cate_coverage_test")["estimator"].tolist() == ["near", "wide", "narrow"]
    assert direction("cate_coverage_test") == "target=1-alpha"


def test_ranks_are_within_each_data_generator():
    p1, s1 = _tables({"x": BASE, "y": BASE + 1}, data="d1")
    p2, s2 = _tables({"x": BASE + 5, "y": BASE + 2}, data="d2")
    board = build(pd.concat([p1, p2]), pd.concat([s1, s2]))
    ranks = {(d, e): r for d, e, r in zip(board["data"], board["estimator"], board["rank"])}
    assert ranks == {("d1", "x"): 1, ("d1", "y"): 2, ("d2", "y"): 1, ("d2", "x"): 2}
    avg = average_rank(board)
    assert avg["mean_rank"].tolist() == [1.5, 1.5] and set(avg.columns) >= {"d1", "d2", "n_data"}


def test_latest_rerun_of_a_config_wins():
    parents, _ = _tables({"x": BASE})
    again = parents.assign(run_id="newer", start_time=99)
    assert latest_per_config(pd.concat([parents, again]))["run_id"].tolist() == ["newer"]


def test_overrides_show_only_what_tells_configurations_apart():
    parents = pd.DataFrame({
        "tags.data": ["d"] * 3, "tags.estimator": ["cf", "cf", "ols"],
        "params.estimator.model.min_samples_leaf": ["5", "10", None],
        "params.estimator.cov_type": [None, None, "HC1"], "params.data.n": ["1000"] * 3,
        "params.tracking.experiment": ["a", "b", "c"]})
    assert distinguishing_overrides(parents).tolist() == [
        "estimator.model.min_samples_leaf=5", "estimator.model.min_samples_leaf=10", ""]


def test_unknown_metric_lists_the_rankable_ones():
    with pytest.raises(ConfigError, match="rankable metrics: .*cate_rmse_test"):
        direction("ate_hat")


def test_gates_choose_the_best_that_passes_and_explain_the_rest():
    parents, seeds = _tables({"good": BASE, "ok": BASE + 0.1, "bad": BASE + 0.3},
                             extra={"good": {"metrics.ate_coverage_rate": 0.5}})
    board = build(parents, seeds)
    decision = choose(board, Gates(min_ate_coverage=0.8))
    assert decision.winner["estimator"] == "ok"
    assert any("ATE coverage rate 0.5 < 0.8" in r for r in decision.reasons["good [hash-d1-good]"])
    # Significance required: "good" is worse-than-nobody and beats "ok" and "bad" on every seed...
    assert choose(board, Gates(require_significance=True)).winner["estimator"] == "good"
    # ...but a near-twin makes it indistinguishable, and nothing qualifies.
    parents, seeds = _tables({"good": BASE, "twin": BASE + TWIN})
    decision = choose(build(parents, seeds), Gates(require_significance=True))
    assert decision.winner is None and "not significantly better" in decision.reasons["good [hash-d1-good]"][0]
    assert choose(build(parents, seeds), Gates(max_failed_seeds=0)).winner["estimator"] == "good"


def test_promoted_experiment_selects_every_recorded_group_option():
    from omegaconf import OmegaConf

    from hte_bench.compare.promote import experiment_config

    logged = ("data:\n  n: 10\nestimator:\n  _target_: x\noutcome_model:\n  _target_: y\n"
              "  random_state: ${seed}\ntracking:\n  uri: somewhere\nseed: 0\n")
    text = experiment_config(logged, {"data": "workforce", "estimator": "linear_dml", "outcome_model": "lasso"},
                             ["made in a test"])
    assert text.startswith("# @package _global_\n# made in a test\n")
    body = OmegaConf.create(text)
    assert list(body.defaults) == [{"override /data": "workforce"}, {"override /estimator": "linear_dml"},
                                   {"override /outcome_model": "lasso"}]
    assert "tracking" not in body and OmegaConf.to_yaml(body).count("${seed}") == 1


def test_selector_validation_on_a_constructed_sweep():
    from hte_bench.compare.leaderboard import selector_validation

    # Oracle √PEHE a < b < c. rscore orders them correctly; dr_mse picks the worst (c).
    parents, seeds = _tables({"a": BASE, "b": BASE + 0.2, "c": BASE + 0.5})
    parents["metrics.rscore_mean"] = [0.3, 0.2, 0.1]
    parents["metrics.dr_mse_mean"] = [5.0, 4.0, 3.0]
    board = build(parents, seeds)
    table = selector_validation(board, parents).set_index("selector")
    assert table.loc["rscore", "picked"] == "a" and table.loc["rscore", "regret"] == 0.0
    assert table.loc["rscore", "spearman_with_oracle"] == pytest.approx(1.0)
    assert table.loc["dr_mse", "picked"] == "c" and table.loc["dr_mse", "picked_oracle_rank"] == 3
    assert table.loc["dr_mse", "regret"] == pytest.approx(0.5)
    assert table.loc["dr_mse", "spearman_with_oracle"] == pytest.approx(-1.0)
    assert "qini" not in table.index  # not logged, not judged
