"""Ranking and significance on constructed run tables where the right answer is known."""
import numpy as np
import pandas as pd
import pytest

from hte_bench.errors import ConfigError
from hte_bench.compare.leaderboard import (adjusted_p, average_rank, build, direction, distinguishing_overrides,
                                          latest_per_config)
from hte_bench.compare.promote import Gates, choose
from hte_bench.evaluation import registry


def _tables(configs: dict[str, list[float]], data: str = "d1", metric: str = "cate_rmse_test", extra=None,
            seed_tags=None):
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
                          "tags.seed": str(s), f"metrics.{metric}": x, **(seed_tags or {}).get(name, {})})
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


def test_a_configuration_better_on_most_seeds_is_not_called_worse():
    # "b" has the lower loss on 19 of 20 seeds and one bad seed: the mean ranks it second, the signed-rank test
    # finds the difference the other way. It is "mixed", never "worse", and the significance gate does not pass.
    a = BASE.repeat(2)
    b = a - 0.01
    b[7] += 1.0
    parents, seeds = _tables({"a": a, "b": b})
    board = build(parents, seeds).set_index("estimator")
    assert board.loc["a", "vs_best"] == "best" and board.loc["b", "p_vs_best_adj"] < 0.05
    assert board.loc["b", "vs_best"] == "mixed: better on most seeds"
    decision = choose(board.reset_index(), Gates(require_significance=True))
    assert decision.winner is None and "not significantly better than 1" in str(decision.reasons)


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
    assert avg["mean_rank"].tolist() == [1.5, 1.5] and set(avg.columns) >= {"d1", "d2", "n_conditions"}
    assert avg.loc["x", "d1"] == "1/2" and avg.loc["x", "d2"] == "2/2"  # each rank out of its condition's ranked
    # A setting that tells configurations apart in one condition only still names them alike in every condition.
    p1, s1 = _tables({"k1": BASE, "k2": BASE + 1}, data="d1",
                     extra={"k1": {"params.estimator.k": "1"}, "k2": {"params.estimator.k": "2"}})
    p2, s2 = _tables({"k1": BASE + 5}, data="d2", extra={"k1": {"params.estimator.k": "1"}})
    parents = pd.concat([p1, p2]).assign(**{"tags.estimator": "forest"})  # one estimator, two settings of k
    avg = average_rank(build(parents, pd.concat([s1, s2])))
    assert sorted(avg.index) == ["forest estimator.k=1", "forest estimator.k=2"]
    # d2 ranked k=1 alone: no contest, so not counted (its 1/1 would read as a win over k=2, which lost to it).
    assert avg.loc["forest estimator.k=1", "n_conditions"] == 1 and avg.loc["forest estimator.k=1", "d2"] == "1/1 (alone)"
    assert avg["mean_rank"].tolist() == [1.0, 2.0]


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
    # Settings outside the configuration hash never tell configurations apart (optimized_metric among them:
    # runs logged before it left the hash carry it as a param).
    twice = pd.DataFrame({"tags.data": ["d"] * 2, "tags.estimator": ["ols"] * 2, "params.n_jobs": ["1", "2"],
                          "params.optimized_metric": ["cate_rmse_test_mean", "rscore_mean"]})
    assert distinguishing_overrides(twice).tolist() == ["", ""]
    # A nuisance group chosen by name shows as chosen, not as the ~400 characters of resolved params it
    # becomes (its own keys and the estimator's copies of them through ${outcome_model}).
    chosen = pd.DataFrame({
        "tags.data": ["d"] * 2, "tags.estimator": ["linear_dml"] * 2,
        "tags.choice.outcome_model": ["random_forest", "lasso"], "tags.choice.treatment_model": ["logistic"] * 2,
        "params.outcome_model._target_": ["sklearn.ensemble.RandomForestRegressor", "sklearn.linear_model.LassoCV"],
        "params.outcome_model.n_estimators": ["100", None],
        "params.estimator.model.model_y._target_": ["sklearn.ensemble.RandomForestRegressor",
                                                    "sklearn.linear_model.LassoCV"],
        "params.estimator.model.model_y.n_estimators": ["100", None],
        "params.estimator.model.cv": ["2", "3"]})
    assert distinguishing_overrides(chosen).tolist() == ["outcome_model=random_forest estimator.model.cv=2",
                                                         "outcome_model=lasso estimator.model.cv=3"]
    # A group's param varied on top of the choice is shown: four configurations, four labels.
    deeper = pd.DataFrame({"tags.data": ["d"] * 4, "tags.estimator": ["linear_dml"] * 4,
                           "tags.choice.outcome_model": ["random_forest"] * 2 + ["gradient_boosting"] * 2,
                           "params.outcome_model.max_depth": ["3", "5", "3", "5"]})
    assert distinguishing_overrides(deeper).tolist() == [
        f"outcome_model={m} outcome_model.max_depth={d}" for m in ("random_forest", "gradient_boosting") for d in (3, 5)]


def test_promotion_says_where_its_winner_stands_on_the_board():
    from hte_bench.cli.promote import _winner_line

    board = build(*_tables({"good": BASE, "bad": BASE + 0.3, "twin": BASE + TWIN}))
    rows = board.set_index("estimator", drop=False)
    line = _winner_line(board, rows.loc["good"])
    assert line.startswith("winner: good [hash-d1-good], rank 1 of 3; better than bad (adjusted p = ")
    assert "; not distinguishable from twin (adjusted p = " in line
    assert line.endswith("(p: paired Wilcoxon signed-rank test on seeds 0-9, adjusted by holm)")
    line = _winner_line(board, rows.loc["bad"])  # the better-ranked ones failed a gate
    assert "rank 3 of 3, worse against the best (adjusted p = " in line and "failed a gate above" in line
    # Equal scores (a share of seeds, both 1.0): one rank, said as a tie, not as an untested comparison.
    parents, seeds = _tables({"a": BASE, "b": BASE})
    parents["metrics.ate_coverage_rate"] = [1.0, 1.0]
    board = build(parents, seeds, "ate_coverage_rate")
    win = board[board["vs_best"] == "best"].iloc[0]
    other = ({"a", "b"} - {win["estimator"]}).pop()
    line = _winner_line(board, win)
    assert f"rank 1 of 2; tied with {other} (the same score; the first in the board's order was taken)" in line
    assert "not distinguishable" not in line


def test_unknown_metric_lists_the_rankable_ones():
    with pytest.raises(ConfigError, match="rankable metrics: .*cate_rmse_test"):
        direction("ate_hat")


def test_gates_choose_the_best_that_passes_and_explain_the_rest():
    parents, seeds = _tables({"good": BASE, "ok": BASE + 0.1, "bad": BASE + 0.3},
                             extra={"good": {"metrics.ate_coverage_rate": 0.5}})
    board = build(parents, seeds)
    decision = choose(board, Gates(min_ate_coverage=0.8))
    assert decision.winner["estimator"] == "ok"
    assert any("ATE coverage 0.5 (95% Wilson" in r and r.endswith("< 0.8") for r in decision.reasons["good [hash-d1-good]"])
    assert decision.reasons["ok [hash-d1-ok]"][0].startswith("passes every gate: ATE coverage 0.9 (95% Wilson")
    assert choose(board, Gates()).reasons["good [hash-d1-good]"][0].startswith("no gates set")  # not "passes"
    # Significance required: "good" is worse-than-nobody and beats "ok" and "bad" on every seed...
    assert choose(board, Gates(require_significance=True)).winner["estimator"] == "good"
    # ...but a near-twin makes it indistinguishable, and nothing qualifies.
    parents, seeds = _tables({"good": BASE, "twin": BASE + TWIN})
    decision = choose(build(parents, seeds), Gates(require_significance=True))
    assert decision.winner is None and "not significantly better" in decision.reasons["good [hash-d1-good]"][0]
    assert choose(build(parents, seeds), Gates(max_failed_seeds=0)).winner["estimator"] == "good"


def test_an_unranked_configuration_is_never_promoted_past_the_ranked_ones():
    # Every ranked configuration fails a gate: the one the board could not rank (a dishonest forest's coverage
    # is no evidence) must not win by default, nor one whose gated counts are missing.
    kinds = {"ols": {"tags.interval_kind": "per_unit", "tags.ate_interval_kind": "ate"},
             "forest": {"tags.interval_kind": "not_honest", "tags.ate_interval_kind": "conservative_bound"}}
    parents, seeds = _tables({"ols": [0.9] * 4, "forest": [0.94] * 4}, metric="cate_coverage_test", seed_tags=kinds,
                             extra={"forest": {"metrics.ate_coverage_rate": 1.0}})
    board = build(parents, seeds, "cate_coverage_test")
    decision = choose(board, Gates(min_ate_coverage=0.95))
    assert decision.winner is None
    forest = next(v for k, v in decision.reasons.items() if k.startswith("forest"))
    assert forest[0] == "not ranked (unranked: not_honest)"
    board = build(*_tables({"good": BASE}))
    assert choose(board.assign(seeds_failed=float("nan")), Gates(max_failed_seeds=0)).winner is None
    assert choose(board, Gates(max_failed_seeds=0)).winner["estimator"] == "good"


@pytest.mark.parametrize("metric", ["ate_coverage_rate", "ate_coverage_rate_population"])
def test_a_share_of_seeds_is_ranked_on_each_configurations_own_seeds_with_its_wilson_interval(metric):
    # The registry says which configuration-level metrics are shares of seeds (of_seeds): the population
    # coverage rate was taken for a per-seed metric, every row NaN and "untested".
    parents, seeds = _tables({"a": [0.1] * 6, "b": [0.2] * 6})
    parents[f"metrics.{metric}"] = [0.95, 0.6]
    parents[f"metrics.{metric}_ci_lower"], parents[f"metrics.{metric}_ci_upper"] = [0.6, 0.3], [0.99, 0.85]
    board = build(parents, seeds, metric).set_index("estimator")
    assert board.loc["a", "rank"] == 1 and board.loc["b", "rank"] == 2 and board.loc["b", metric] == 0.6
    assert board.loc["a", "interval"] == "95% Wilson across its own seeds"
    assert registry.interval_words(metric) == "95% Wilson interval of the share of seeds"


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


def test_selectors_and_the_oracle_are_judged_on_the_seeds_all_configurations_share():
    from hte_bench.compare.leaderboard import selector_validation

    # Truth: a < b on every seed. rscore exists on seeds 0-4 only (analyses.seeds); on seed 5, which only
    # "b" has, a flattering rscore must not count, nor b's lucky oracle value on its extra seeds 10-11.
    parents, seeds = _tables({"a": BASE, "b": BASE + 0.2})
    seeds["metrics.rscore"] = np.where(seeds["tags.seed"].astype(int) < 5,
                                       np.where(seeds["parent_id"] == "d1-a", 0.3, 0.2), np.nan)
    seeds.loc[(seeds["parent_id"] == "d1-b") & (seeds["tags.seed"] == "5"), "metrics.rscore"] = 99.0
    lucky = pd.DataFrame({"run_id": ["b10", "b11"], "parent_id": "d1-b", "status": "FINISHED",
                          "tags.seed": ["10", "11"], "metrics.cate_rmse_test": [0.0, 0.0]})
    seeds = pd.concat([seeds, lucky], ignore_index=True)
    parents["metrics.rscore_mean"] = [0.3, 50.0]  # own means would pick b
    table = selector_validation(build(parents, seeds), parents, seeds).set_index("selector")
    row = table.loc["rscore"]
    assert row["picked"] == "a" and row["regret"] == 0.0 and row["selector_seeds"] == "0-4"
    assert row["oracle_seeds"] == "0-9" and row["best_cate_rmse_test"] == pytest.approx(BASE.mean())
    # Without the seed runs: each run's logged means, said to be on its own seeds.
    assert selector_validation(build(parents, seeds), parents).set_index("selector").loc["rscore", "picked"] == "b"


def test_an_analysis_metric_is_ranked_on_the_seeds_that_carry_it():
    # rscore exists on the first analyses.seeds seeds only (0-4 of 0-9): the board of it is on seeds 0-4,
    # its intervals and tests on five seeds, and it says so; the cate board of the same runs stays on 0-9.
    parents, seeds = _tables({"a": BASE, "b": BASE + 0.2})
    seeds["metrics.rscore"] = np.where(seeds["tags.seed"].astype(int) < 5,
                                       np.where(seeds["parent_id"] == "d1-a", 0.3, 0.2), np.nan)
    board = build(parents, seeds, "rscore").set_index("estimator")
    assert board["compared_on_seeds"].tolist() == ["0-4", "0-4"] and board["n_compared"].tolist() == [5, 5]
    assert board.loc["a", "interval"] == "95% t-interval across seeds 0-4" and board.loc["a", "rank"] == 1
    assert build(parents, seeds)["compared_on_seeds"].unique().tolist() == ["0-9"]
    from hte_bench.cli.compare import condition_header, readable

    title, notes = condition_header(build(parents, seeds, "rscore"), "rscore")
    assert "on seeds 0-4, common to all 2 ranked configurations (rscore exists on the analysis seeds only" in title
    assert "a larger analyses.seeds" in notes[0]  # more n_seeds alone would not add seeds to this board
    assert readable(build(parents, seeds, "rscore"), "rscore")["compared on seeds"].iloc[0] == \
        "0-4 (ran 0-9; rscore on analysis seeds only)"


def test_a_correlation_short_of_configurations_names_the_one_without_the_score():
    from hte_bench.compare.leaderboard import selector_validation

    # Three configurations, but "c" has no rscore (its scorer failed): two are left, too few for a Spearman.
    parents, seeds = _tables({"a": BASE, "b": BASE + 0.2, "c": BASE + 0.4})
    seeds["metrics.rscore"] = np.where(seeds["parent_id"] == "d1-c", np.nan,
                                       np.where(seeds["parent_id"] == "d1-a", 0.3, 0.2))
    row = selector_validation(build(parents, seeds), parents, seeds).set_index("selector").loc["rscore"]
    assert row["n_configs"] == 2 and np.isnan(row["spearman_with_oracle"])
    assert row["spearman_note"] == "undefined: 2 configurations (needs 3); without rscore: c"


def test_two_conditions_of_one_generator_are_ranked_apart_never_pooled():
    from hte_bench.compare.leaderboard import selector_validation

    # One generator, two noise levels: "x" wins at low noise, "y" at high noise; pooled, "x" would win both.
    low, low_seeds = _tables({"x": BASE, "y": BASE + 0.3}, data="engagement")
    high, high_seeds = _tables({"x": BASE + 5, "y": BASE + 4}, data="engagement")
    high = high.assign(run_id=lambda f: f["run_id"] + "-high", **{"tags.config_hash": lambda f: f["tags.config_hash"] + "h"})
    high_seeds = high_seeds.assign(parent_id=lambda f: f["parent_id"] + "-high")
    for frame, noise in ((low, "1.0"), (high, "3.0")):
        frame["params.data._target_"] = "hte_bench.data.engagement.generate"
        frame["params.data.noise"] = noise
        frame["metrics.rscore_mean"] = [0.2, 0.1]
    board = build(pd.concat([low, high]), pd.concat([low_seeds, high_seeds]))
    assert sorted(board["condition"].unique()) == ["engagement", "engagement noise=3.0"]
    ranks = {(c, e): (r, v) for c, e, r, v in zip(board["condition"], board["estimator"], board["rank"], board["vs_best"])}
    assert ranks == {("engagement", "x"): (1, "best"), ("engagement", "y"): (2, "worse"),
                     ("engagement noise=3.0", "y"): (1, "best"), ("engagement noise=3.0", "x"): (2, "worse")}
    assert board["selection_seeds"].unique().tolist() == ["0-9"]
    selectors = selector_validation(board, pd.concat([low, high])).set_index("condition")
    assert selectors.loc["engagement", "regret"] == 0 and selectors.loc["engagement noise=3.0", "regret"] > 0
    with pytest.raises(ConfigError, match="one data condition.*--condition"):
        choose(board, Gates())


def test_tied_selector_scores_are_reported_as_ties_with_mean_regret():
    from hte_bench.compare.leaderboard import selector_validation

    # "flat" and "forest" both treat everyone: the same policy value. Row order must not break the tie.
    parents, seeds = _tables({"flat": BASE + 0.4, "forest": BASE, "ols": BASE + 0.2})
    parents["metrics.policy_value_model_mean"] = [1.0, 1.0, 0.5]
    table = selector_validation(build(parents, seeds), parents).set_index("selector")
    row = table.loc["policy_value_model"]
    assert row["n_tied"] == 2 and set(row["picked"].split(" | ")) == {"flat", "forest"}
    assert row["regret"] == pytest.approx(0.2)  # mean of 0.4 (flat) and 0 (forest)
    assert row["picked_oracle_rank"] == pytest.approx(2.0)  # ranks 3 and 1


def test_coverage_counts_only_for_intervals_that_claim_it():
    kinds = {"ols": {"tags.interval_kind": "per_unit", "tags.ate_interval_kind": "ate"},
             "flat": {"tags.interval_kind": "broadcast_ate", "tags.ate_interval_kind": "ate"},
             "forest": {"tags.interval_kind": "not_honest", "tags.ate_interval_kind": "conservative_bound"}}
    cover = {"ols": [0.9] * 4, "flat": [0.95] * 4, "forest": [0.94] * 4}
    parents, seeds = _tables(cover, metric="cate_coverage_test", seed_tags=kinds,
                             extra={"forest": {"metrics.ate_coverage_rate": 1.0}})
    parents["metrics.cate_coverage_test_mean"] = [0.9, 0.95, 0.94]
    board = build(parents, seeds, "cate_coverage_test").set_index("estimator")
    # Only the per-unit intervals are ranked by per-unit coverage; the others say why they are not.
    assert board.loc["ols", "vs_best"] == "best" and board.loc["ols", "rank"] == 1
    assert board.loc["flat", "vs_best"] == "unranked: broadcast_ate"
    assert board.loc["forest", "vs_best"] == "unranked: not_honest"
    decision = choose(board.reset_index(), Gates(min_cate_coverage=0.8, min_ate_coverage=0.8))
    assert decision.winner["estimator"] == "ols"
    assert decision.reasons["flat [hash-d1-flat]"][0] == "not ranked (unranked: broadcast_ate)"
    assert "not evidence of valid per-unit intervals" in decision.reasons["flat [hash-d1-flat]"][1]
    # Runs logged before kinds were recorded say so, and cannot pass a per-unit coverage gate.
    old, old_seeds = _tables({"a": [0.95] * 3}, metric="cate_coverage_test")
    old["metrics.cate_coverage_test_mean"] = 0.95
    old_board = build(old, old_seeds, "cate_coverage_test")
    assert old_board["interval_kind"].tolist() == ["unknown"]
    assert choose(old_board, Gates(min_cate_coverage=0.8)).winner is None
    # A conservative bound passes an ATE coverage gate, with the caveat said (on a board that ranks the forest).
    forest, forest_seeds = _tables({"forest": BASE}, seed_tags={"forest": kinds["forest"]},
                                   extra={"forest": {"metrics.ate_coverage_rate": 1.0}})
    decision = choose(build(forest, forest_seeds), Gates(min_ate_coverage=0.8))
    assert "conservative bound" in decision.reasons["forest [hash-d1-forest]"][0]


def test_study_table_puts_conditions_side_by_side():
    from hte_bench.compare.study import study_grid, study_table

    frames = []
    for noise, shift in (("0.5", 0.0), ("3.0", 1.0)):
        p, s = _tables({"x": BASE + shift, "y": BASE + 2 * shift}, data="engagement")
        p = p.assign(run_id=p["run_id"] + noise, **{"params.data.noise": noise, "status": "FINISHED"})
        frames.append((p.assign(**{"tags.config_hash": p["tags.config_hash"] + noise}),
                       s.assign(parent_id=s["parent_id"] + noise)))
    parents = pd.concat([f[0] for f in frames])
    seeds = pd.concat([f[1] for f in frames])
    table = study_table(parents, seeds, "cate_rmse_test", "data.noise")
    assert len(table) == 4 and set(table["n_seeds"]) == {10}
    x_high = table[(table["config"] == "x") & (table["data.noise"] == "3.0")].iloc[0]
    assert x_high["mean"] == pytest.approx(BASE.mean() + 1) and x_high["ci_lower"] < x_high["mean"] < x_high["ci_upper"]
    grid = study_grid(table, "data.noise")
    assert list(grid.columns) == ["0.5", "3.0"] and "(n=10: 0-9)" in grid.iloc[0, 0]
    wide = table.assign(ci_lower=-0.5)  # a t-interval below the range of an RMSE is marked, not clipped
    assert "[-0.5, " in study_grid(wide, "data.noise", "cate_rmse_test").iloc[0, 0]
    assert "†" in study_grid(wide, "data.noise", "cate_rmse_test").iloc[0, 0] and "†" not in grid.iloc[0, 0]
    # A float knob logged as 3 is the condition noise=3.0: one column, spelt as the condition label spells it.
    typed = parents.assign(**{"params.data._target_": "hte_bench.data.engagement.generate"})
    typed.loc[typed["params.data.noise"] == "3.0", "params.data.noise"] = "3"
    assert set(study_table(typed, seeds, "cate_rmse_test", "data.noise")["data.noise"]) == {"0.5", "3.0"}
    with pytest.raises(ConfigError, match="not a data knob.*data.noise"):
        study_table(parents, seeds, "cate_rmse_test", "estimator.x")
    # A column compares its configurations on the seeds they share: y's extra seeds 10-11 are left out.
    extra = seeds[seeds["parent_id"] == "engagement-y3.0"].head(2).assign(
        **{"tags.seed": ["10", "11"], "metrics.cate_rmse_test": [0.0, 0.0]})
    table = study_table(parents, pd.concat([seeds, extra]), "cate_rmse_test", "data.noise")
    y_high = table[(table["config"] == "y") & (table["data.noise"] == "3.0")].iloc[0]
    assert y_high["n_seeds"] == 10 and y_high["seeds"] == "0-9" and y_high["mean"] == pytest.approx(BASE.mean() + 2)
    assert y_high["ran_seeds"] == "0-11" and "ran 0-11, those not common to the column not used" in study_grid(table, "data.noise").loc[
        ("engagement", "y"), "3.0"]
    # A configuration whose seeds all failed leaves the others on their shared seeds and shows nothing itself.
    failed = seeds.assign(status=np.where(seeds["parent_id"] == "engagement-x3.0", "FAILED", "FINISHED"))
    table = study_table(parents, failed, "cate_rmse_test", "data.noise").set_index(["config", "data.noise"])
    assert np.isnan(table.loc[("x", "3.0"), "mean"]) and table.loc[("y", "3.0"), "seeds"] == "0-9"


def test_configurations_are_ranked_on_the_seeds_they_all_share():
    # "lucky" ran a third seed that flatters it (mean 0.7 over 0-2); on the shared seeds 0-1 it is worse.
    parents, seeds = _tables({"lucky": [1.0, 1.0, 0.1], "steady": [0.5, 0.5]})
    board = build(parents, seeds).set_index("estimator")
    assert board.loc["steady", "rank"] == 1 and board.loc["lucky", "rank"] == 2
    assert board.loc["lucky", "compared_on_seeds"] == "0,1" and board.loc["lucky", "selection_seeds"] == "0-2"
    assert board.loc["lucky", "cate_rmse_test_mean"] == pytest.approx(1.0)  # not its logged 0.7
    assert board.loc["lucky", "interval"].startswith("95% t-interval across seeds 0,1")
    decision = choose(board.reset_index(), Gates())
    assert decision.winner["estimator"] == "steady" and decision.winner["compared_on_seeds"] == "0,1"
    # One common seed: ranked on it, but no interval and no test.
    parents, seeds = _tables({"a": [1.0, 2.0], "b": [0.5]})
    board = build(parents, seeds).set_index("estimator")
    assert board.loc["b", "rank"] == 1 and board.loc["a", "vs_best"] == "untested"
    assert np.isnan(board.loc["a", "cate_rmse_test_ci_lower"]) and board.loc["a", "n_compared"] == 1
    # No common seed: nobody is ranked, and promotion refuses.
    seeds.loc[seeds["parent_id"] == "d1-b", "tags.seed"] = "7"
    board = build(parents, seeds)
    assert board["rank"].isna().all() and set(board["vs_best"]) == {"unranked: no common seed"}
    assert choose(board, Gates()).winner is None


def test_a_constant_selector_has_no_correlation_and_no_warning():
    import warnings

    from hte_bench.compare.leaderboard import selector_validation

    parents, seeds = _tables({"a": BASE, "b": BASE + 0.2, "c": BASE + 0.5})
    parents["metrics.qini_mean"] = [0.0, 0.0, 0.0]  # e.g. every configuration ranks units the same way
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # scipy's ConstantInputWarning would fail here
        row = selector_validation(build(parents, seeds), parents).set_index("selector").loc["qini"]
    assert np.isnan(row["spearman_with_oracle"]) and "same for every configuration" in row["spearman_note"]


def test_printed_board_labels_its_intervals_and_keeps_overrides_apart():
    from hte_bench.cli.compare import OUTSIDE_NOTE, legend, readable

    # Two seeds far apart: the 95% t-interval of an RMSE reaches below 0, shown as computed and flagged once.
    parents, seeds = _tables({"deep": [0.1, 1.5], "shallow": [0.2, 1.6]})
    parents["params.estimator.model.min_samples_leaf"] = "20"
    parents["params.estimator.model.max_depth"] = ["8", "4"]
    parents["tags.estimator"] = "causal_forest"  # one estimator, two depths
    board = build(parents, seeds)
    table = readable(board, "cate_rmse_test")
    cells = table["cate_rmse_test (lower) mean [CI]"].tolist()
    assert all(c.endswith("†") and "[-" in c for c in cells)
    lines = legend(board, "cate_rmse_test")
    assert lines[0].startswith("Intervals: cate_rmse_test [ ] = 95% t-interval") and "95% Wilson" in lines[0]
    assert OUTSIDE_NOTE in lines
    assert sorted(table["overrides"]) == ["max_depth=4", "max_depth=8"]  # short keys, never cut
    parents["params.alpha"] = "0.1"  # the level is the runs' own
    assert "90% t-interval" in legend(build(parents, seeds), "cate_rmse_test")[0]
    from hte_bench.cli.compare import vs_best_note  # 'vs best' names its test and correction

    assert "(paired t-test, p-values adjusted by bonferroni" in vs_best_note("ttest", "bonferroni", 0.05)


def test_min_seeds_gate_counts_the_seeds_a_configuration_was_selected_on():
    parents, seeds = _tables({"many": BASE, "few": BASE[:2] + 1})
    reasons = choose(build(parents, seeds), Gates(min_seeds=3)).reasons
    assert reasons["many [hash-d1-many]"] == ["2 seeds compared on (0,1) < 3"]


def test_a_configuration_is_compared_on_the_seeds_its_run_summarises():
    from hte_bench.compare.leaderboard import summarised_seeds

    # "a" has seed runs 0-2, but its latest command asked for seeds=[2] (its seeds tag): the board, the sweep
    # summary and the run's own figures must speak of seed 2 only; runs without the tag keep every seed.
    parents, seeds = _tables({"a": [1.0, 1.0, 0.1], "b": [0.5, 0.5, 0.5]})
    parents["tags.seeds"] = ["2", None]
    kept = summarised_seeds(parents, seeds)
    assert sorted(kept.loc[kept["parent_id"] == "d1-a", "tags.seed"]) == ["2"]
    assert len(kept[kept["parent_id"] == "d1-b"]) == 3
    board = build(parents, kept).set_index("estimator")
    assert set(board["compared_on_seeds"]) == {"2"}


def test_the_board_says_when_too_few_seeds_make_tied_untestable():
    from hte_bench.cli.compare import wilcoxon_floor

    # Exact two-sided Wilcoxon on n pairs cannot go below 2/2^n; Holm multiplies the first p by the comparisons.
    assert "cannot go below p = 0.125" in wilcoxon_floor(5, 2, 0.05) and "7 or more" in wilcoxon_floor(5, 2, 0.05)
    assert wilcoxon_floor(8, 2, 0.05) is None and wilcoxon_floor(6, 1, 0.05) is None
    # The floor is the chosen correction's: Benjamini-Hochberg leaves equal p-values as they are.
    bh = wilcoxon_floor(5, 2, 0.05, "fdr_bh")
    assert "cannot go below p = 0.0625 (fdr_bh over 2 comparisons)" in bh and "6 or more" in bh
    assert wilcoxon_floor(6, 2, 0.05, "fdr_bh") is None


def test_a_promoted_config_reruns_the_seeds_it_was_selected_on():
    from omegaconf import OmegaConf

    from hte_bench.compare.promote import experiment_config

    logged = "data:\n  n: 10\nestimator:\n  _target_: x\nseeds:\n- 7\nn_seeds: 3\nseed: 0\n"
    body = OmegaConf.create(experiment_config(logged, {"data": "engagement"}, ["test"], seeds=[0, 1, 2]))
    assert list(body.seeds) == [0, 1, 2] and body.n_seeds == 3


def test_adjusted_p_values_are_statsmodels_and_leave_the_garbage_collector_as_it_was():
    # statsmodels' multipletests, run with the process's objects frozen (it gc.collect()s on every call).
    import gc

    from statsmodels.stats.multitest import multipletests

    p = np.array([0.01, 0.04, 0.03])
    assert adjusted_p(p, "holm", 0.05).tolist() == pytest.approx([0.03, 0.06, 0.06])  # 3·0.01, 2·0.03, max(.., 0.04)
    assert adjusted_p(p, "fdr_bh", 0.05).tolist() == multipletests(p, alpha=0.05, method="fdr_bh")[1].tolist()
    assert gc.get_freeze_count() == 0 and gc.isenabled()


def test_a_sweeps_rows_rank_equal_values_alike_and_say_what_tells_them_apart():
    from types import SimpleNamespace as NS

    from hte_bench.tracking.notes import sweep_rows

    def run(run_id, leaf, value):
        return NS(info=NS(run_id=run_id, run_name=f"engagement/cf/{run_id}"),
                  data=NS(metrics={"cate_rmse_test_mean": value, "n_seeds_ok": 2},
                          params={"alpha": "0.05", "estimator.model.min_samples_leaf": str(leaf)},
                          tags={"condition": "c", "condition_hash": "h", "estimator": "cf", "seeds": "0,1"}))

    rows = sweep_rows([run("a", 5, 0.3), run("b", 10, 0.3), run("c", 20, 0.4)], "cate_rmse_test_mean")
    assert [r["rank"] for r in rows] == [1, 1, 3]  # as the leaderboard ranks ties
    assert [r["settings"] for r in rows] == [f"estimator.model.min_samples_leaf={k}" for k in (5, 10, 20)]
    # A share of seeds carries its Wilson bounds (logged beside it); the note says their kind and level.
    from hte_bench.tracking.notes import sweep_note

    share = run("d", 5, 0.0)
    share.data.metrics.update({"ate_coverage_rate": 0.9, "ate_coverage_rate_ci_lower": 0.6,
                               "ate_coverage_rate_ci_upper": 0.98})
    share.data.params["alpha"] = "0.1"
    (row,) = sweep_rows([share], "ate_coverage_rate")
    assert (row["lo"], row["hi"]) == (0.6, 0.98)
    note = sweep_note("1", [row], "ate_coverage_rate", "closest to 1-alpha", 1, None)
    assert "| 0.9 | [0.6, 0.98] |" in note and "90% Wilson interval of the share" in note


def test_seeds_whose_draws_differ_between_configurations_are_not_paired():
    # "b" was fitted before a generator change: its seeds 0-4 are other draws than "a"'s (data_hash differs).
    from hte_bench.cli.compare import condition_header

    parents, seeds = _tables({"a": BASE, "b": BASE + 0.3})
    seeds["tags.data_hash"] = [f"h{s}" for s in seeds["tags.seed"]]
    seeds.loc[(seeds["parent_id"] == "d1-b") & seeds["tags.seed"].astype(int).lt(5), "tags.data_hash"] = "old"
    board = build(parents, seeds)
    assert set(board["compared_on_seeds"]) == {"5-9"}
    _, notes = condition_header(board, "cate_rmse_test")
    assert any(n.startswith("seeds 0-4 left out: their data differ between configurations") for n in notes)


def test_scores_equal_up_to_rounding_share_a_rank():
    # ATE coverage 0.9 and 1.0 are both 0.05 from 0.95, yet |0.9 - 0.95| < |1.0 - 0.95| in floating point: the
    # board ranked 0.9 first and promotion called it the winner, decided by rounding.
    parents, seeds = _tables({"a_wide": [0.1] * 10, "b_narrow": [0.2] * 10, "far": [0.3] * 10})
    parents["metrics.ate_coverage_rate"] = [1.0, 0.9, 0.7]
    board = build(parents, seeds, "ate_coverage_rate")
    assert board.set_index("estimator")["rank"].to_dict() == {"a_wide": 1, "b_narrow": 1, "far": 3}
    # Within the tie the configuration hash orders, not float noise (which put 0.9 first): best and the pick.
    assert board["estimator"].tolist()[:2] == ["a_wide", "b_narrow"] and board.at[0, "vs_best"] == "best"
    assert choose(board, Gates()).winner["estimator"] == "a_wide"


def test_promotion_gates_read_the_seeds_the_configuration_was_selected_on():
    # "a" was resumed to 13 seeds (0-12), "b" has 0-9: the board ranks on 0-9. a's own ATE coverage is 11/13
    # (0.846, passes a 0.82 gate), on the selection seeds 8/10 (fails): the promoted config re-runs 0-9.
    parents, seeds = _tables({"a": np.linspace(1.0, 1.5, 13), "b": BASE + 0.3})
    covered = {"d1-a": [1, 1, 1, 1, 0, 1, 1, 0, 1, 1, 1, 1, 1], "d1-b": [1] * 10}
    seeds["metrics.ate_covered"] = [float(covered[p][int(s)]) for p, s in zip(seeds["parent_id"], seeds["tags.seed"])]
    seeds["metrics.ate_bias"] = 0.1
    parents["metrics.ate_coverage_rate"] = [11 / 13, 1.0]
    board = build(parents, seeds)
    row = board.set_index("estimator").loc["a"]
    assert row["compared_on_seeds"] == row["context_seeds"] == "0-9"
    assert row["ate_coverage_rate"] == pytest.approx(0.8) and row["ate_bias_mean"] == pytest.approx(0.1)
    decision = choose(board, Gates(min_ate_coverage=0.82))
    assert decision.winner["estimator"] == "b"
    # A run without an ATE interval (ate_covered all NaN) still gets its other context on the compared seeds.
    seeds["metrics.ate_covered"] = np.where(seeds["parent_id"] == "d1-a", np.nan, seeds["metrics.ate_covered"])
    seeds["metrics.ate_bias"] = seeds["tags.seed"].astype(float)
    parents.loc[parents["tags.estimator"] == "a", "metrics.ate_coverage_rate"] = np.nan  # as its aggregate has it
    row = build(parents, seeds).set_index("estimator").loc["a"]
    assert row["context_seeds"] == "0-9" and row["ate_bias_mean"] == pytest.approx(4.5)
    assert np.isnan(row["ate_coverage_rate"])
    assert decision.reasons["a [hash-d1-a]"] == [
        "ATE coverage 0.8 (95% Wilson [0.4902, 0.9433], seeds 0-9) < 0.82"]


def test_a_coverage_board_shows_the_means_own_distance_beside_the_per_seed_one():
    from hte_bench.cli.compare import readable

    kinds = {name: {"tags.interval_kind": "per_unit"} for name in ("spread", "flat")}
    parents, seeds = _tables({"spread": [0.9, 1.0] * 3, "flat": [0.9] * 6}, metric="cate_coverage_test",
                             seed_tags=kinds)
    table = readable(build(parents, seeds, "cate_coverage_test"), "cate_coverage_test").set_index("estimator")
    cells = table["ranked by: mean per-seed distance to target"]
    assert cells["spread"] == "0.05 from 0.95 (the mean: 0)" and cells["flat"] == "0.05 from 0.95 (the mean: 0.05)"


def test_a_rate_board_does_not_describe_a_paired_test_it_did_not_make():
    from hte_bench.cli.compare import vs_best_note

    assert "no paired test is made" in vs_best_note(metric="ate_coverage_rate")
    assert "Wilcoxon signed-rank" in vs_best_note(metric="cate_rmse_test")


def test_confirmation_gates_name_the_fresh_seeds():
    from hte_bench.compare.promote import confirmation_gates

    summary = {"ate_coverage_rate": 0.75, "ate_coverage_rate_ci_lower": 0.3, "ate_coverage_rate_ci_upper": 0.95,
               "n_seeds_ok": 4, "n_seeds_failed": 0}
    failed, _ = confirmation_gates(summary, {"seeds": "10,11,12,13", "ate_interval_kind": "ate"},
                                   Gates(min_ate_coverage=0.9), 0.05)
    assert failed == ["ATE coverage 0.75 (95% Wilson [0.3, 0.95], seeds 10-13) < 0.9"]
