"""The metric registry is the one source of metric metadata: everything logged is in it, directions hold."""
import math
import sys

import pytest

from conftest import LEAN, SMALL, all_runs, run_composed
from hte_bench.errors import ConfigError
from hte_bench.evaluation import registry


def test_every_metric_a_run_logs_is_registered(store):
    """A workforce run with every analysis on (truth-free scores, subgroup tables) logs only registered names."""
    summary = run_composed([*SMALL, "data=workforce", "data.n=400", "estimator=linear_dml", "n_seeds=2",
                            "analyses.truth_free=true", "analyses.subgroups=true", "tracking.plots=false",
                            f"tracking.uri={store}", "tracking.experiment=reg"])
    runs = all_runs(store, "reg")
    logged = {name for run in runs for name in run.data.metrics}
    assert {"rscore", "aipw_ate", "cate_rmse_test", "cate_rmse_test_mean", "n_seeds_ok"} <= logged
    assert sorted(n for n in logged if not registry.is_registered(n)) == []
    assert summary["n_seeds_ok"] == 2
    # The registered bounds hold for every value and mean (only t-interval bounds may leave them).
    outside = [(name, value) for run in runs for name, value in run.data.metrics.items()
               if registry.split_name(name)[1] in (None, "mean") and registry.value_range(name)
               and not registry.value_range(name)[0] <= value <= registry.value_range(name)[1]]
    assert outside == []
    assert registry.value_range("cate_coverage_test_ci_upper") == (0.0, 1.0)
    assert registry.value_range("ate_bias") is None and registry.value_range("not_a_metric") is None


def test_aggregate_names_inherit_the_spec():
    assert registry.split_name("cate_rmse_test_ci_upper") == ("cate_rmse_test", "ci_upper")
    assert registry.spec("rscore_mean").goal == "higher"
    assert registry.spec("best_rscore_mean").name == "rscore"


@pytest.mark.parametrize("name, direction", [
    ("cate_rmse_test_mean", "minimize"), ("rscore_mean", "maximize"), ("qini_mean", "maximize"),
    ("policy_value_model_mean", "maximize"), ("ate_coverage_rate", "minimize"),  # distance to 1 - alpha
    ("cate_rmse_test_std", "minimize"),
])
def test_objective_follows_direction(name, direction):
    assert registry.objective(name)[0] == direction


def test_target_metric_is_optimised_as_distance_and_context_is_refused():
    assert registry.objective_value("ate_coverage_rate", {"ate_coverage_rate": 0.90}, alpha=0.05) == \
        pytest.approx(0.05)
    assert registry.objective_value("calib_slope_test_mean", {"calib_slope_test_mean": 1.2}) == pytest.approx(0.2)
    assert registry.objective_value("rscore_mean", {"rscore_mean": 0.3}) == 0.3
    with pytest.raises(ConfigError, match="cannot be ranked") as info:
        registry.objective("ate_hat_mean")
    assert "\n" not in str(info.value)
    with pytest.raises(ConfigError, match="not registered"):
        registry.spec("cate_rmse_tset")
    # A per-seed name: the configuration runs have no such value, so a sweep would rank nothing.
    with pytest.raises(ConfigError, match=r"optimized_metric=rscore is a per-seed metric.*optimized_metric=rscore_mean\?"):
        registry.objective("rscore")
    # A target metric must say its target, else the first board fails in float(None).
    with pytest.raises(ConfigError, match=r"^metric 'near_one': goal='target' needs target=<number> or target='1-alpha'"):
        registry.register(registry.MetricSpec("near_one", goal="target", needs_truth=True, split="train",
                                              description="x", fn="m.f"))
    assert "near_one" not in registry.METRICS
    # An interval's level is said as computed: 97.5%, not rounded to 98%.
    assert (registry.level_text(0.05), registry.level_text(0.1), registry.level_text(0.025)) == ("95%", "90%", "97.5%")
    # Every rankable metric that exists only across seeds says how the boards get it from the seeds.
    assert all(spec.of_seeds for spec in registry.METRICS.values() if spec.level == "config" and spec.rankable)


def test_loss_orders_every_goal():
    assert list(registry.loss("cate_rmse_test", [1.0, 2.0])) == [1.0, 2.0]
    assert list(registry.loss("rscore", [0.1, 0.2])) == [-0.1, -0.2]
    assert list(registry.loss("cate_coverage_test", [0.95, 0.80], alpha=0.05)) == pytest.approx([0.0, 0.15])
    assert math.isnan(registry.aggregate_loss("cate_rmse_test_mean", float("nan")))


def ate_abs_error(truth, estimate):
    """The README's "Extending" example: |ATE estimate − true ATE| on the training sample."""
    import numpy as np

    return abs(float(estimate.ate_hat) - float(np.mean(truth.tau_train)))


def test_readme_example_new_metric_is_one_registry_line_and_one_function(store):
    """README "Extending hte-bench": a metric registered with its function is computed, logged, aggregated, rankable."""
    from hte_bench.evaluation.registry import MetricSpec, register

    spec = MetricSpec(name="ate_abs_error", goal="lower", needs_truth=True, split="train",
                      description="absolute ATE error", fn="test_registry.ate_abs_error", bounds=(0, float("inf")))
    with pytest.raises(ConfigError, match=r"bounds=\(1.0, 0.0\) is not allowed"):
        register(MetricSpec(name="inverted", goal="lower", needs_truth=True, split="train", description="",
                            fn="test_registry.ate_abs_error", bounds=(1.0, 0.0)))
    with pytest.raises(ConfigError, match="fn is required"):
        register(MetricSpec(name="no_function", goal="lower", needs_truth=True, split="train", description=""))
    register(spec)
    try:
        summary = run_composed([*LEAN, "estimator=interaction_ols", "n_seeds=2", f"tracking.uri={store}",
                                "tracking.experiment=ext"])
        kids = [r for r in all_runs(store, "ext") if r.data.tags.get("hte_bench.kind") == "seed"]
        assert all(k.data.metrics["ate_abs_error"] == pytest.approx(abs(k.data.metrics["ate_bias"])) for k in kids)
        assert summary["ate_abs_error_mean"] >= 0 and registry.objective("ate_abs_error_mean")[0] == "minimize"
        assert registry.leaves_range("ate_abs_error_mean", -0.1, 0.5)
    finally:
        registry._ALL.remove(spec)
        del registry.METRICS["ate_abs_error"]


def ate_hit(truth, estimate):
    return float(abs(estimate.ate_hat - truth.tau_train.mean()) < 0.1)


def test_a_users_share_of_seeds_is_a_wilson_rate_of_its_per_seed_metric():
    """of_seeds=(per-seed 0/1 metric, "share"): computed across seeds only, never per seed under its own name."""
    import pandas as pd

    from hte_bench.compare.leaderboard import parent_only
    from hte_bench.evaluation.aggregate import aggregate
    from hte_bench.evaluation.registry import MetricSpec, register

    with pytest.raises(ConfigError, match="of_seeds names 'my_hit', which is not a registered per-seed metric"):
        register(MetricSpec("my_hit_rate", goal="higher", needs_truth=True, split="train", description="",
                            of_seeds=("my_hit", "share")))
    hit = register(MetricSpec("my_hit", goal="higher", needs_truth=True, split="train", description="",
                              fn="test_registry.ate_hit", bounds=(0.0, 1.0)))
    try:
        with pytest.raises(ConfigError, match="a share of seeds has no fn of its own"):
            register(MetricSpec("my_hit_rate", goal="higher", needs_truth=True, split="train", description="",
                                fn="test_registry.ate_hit", of_seeds=("my_hit", "share")))
        rate = register(MetricSpec("my_hit_rate", goal="higher", needs_truth=True, split="train", description="",
                                   of_seeds=("my_hit", "share"), bounds=(0.0, 1.0)))
        assert rate.level == "config" and parent_only("my_hit_rate") and rate not in registry.computed()
        per_seed = pd.DataFrame({"seed": [0, 1, 2, 3], "ate_true": [0.0] * 4, "ate_hat": [0.05, 0.2, 0.01, 0.3],
                                 "my_hit": [1.0, 0, 1, 0]})
        out = aggregate(per_seed, 0)
        assert out["my_hit_rate"] == 0.5 and "my_hit_rate_mean" not in out
        assert 0 < out["my_hit_rate_ci_lower"] < 0.5 < out["my_hit_rate_ci_upper"] < 1  # Wilson, not a t-interval
    finally:
        for spec in (hit, registry.METRICS.get("my_hit_rate")):
            if spec is not None:
                registry._ALL.remove(spec)
                del registry.METRICS[spec.name]


def says_oops(truth, estimate):
    return "oops"


def test_a_metric_that_returns_no_number_is_an_error_not_a_silent_nan():
    import numpy as np

    from hte_bench.estimators.base import Estimate
    from hte_bench.evaluation.metrics import _computed
    from hte_bench.evaluation.registry import MetricSpec, register

    spec = register(MetricSpec(name="oops", goal="lower", needs_truth=False, split="train", description="",
                               fn="test_registry.says_oops"))
    try:
        estimate = Estimate(tau_hat_train=np.zeros(3), tau_hat_test=np.zeros(3), ate_hat=0.0)
        with pytest.raises(TypeError, match=r"metric 'oops' \(test_registry.says_oops\) returned 'oops' \(str\), "
                                            "not a number"):
            _computed(None, estimate)
    finally:
        registry._ALL.remove(spec)
        del registry.METRICS["oops"]


def test_metric_modules_name_one_configuration_and_their_source_is_a_resume_key(tmp_path, monkeypatch):
    from conftest import compose
    from hte_bench import config as C

    base = ["estimator=zero_effect"]
    assert C.config_hash(compose([*base, "metric_modules=user_metrics"])) == \
        C.config_hash(compose([*base, "metric_modules=[user_metrics]"])) != C.config_hash(compose(base))
    assert C.config_hash(compose([*base, "metric_modules=[]"])) == C.config_hash(compose(base))
    with pytest.raises(ConfigError, match="metric_modules=.*not allowed"):
        registry.module_names(object())
    # An edited metric module is another resume key (its seeds are refitted, not kept with old values).
    monkeypatch.syspath_prepend(str(tmp_path))
    (tmp_path / "edited_metrics.py").write_text("X = 1\n")
    registry.load_modules(["edited_metrics"])
    try:
        before = registry.modules_hash("edited_metrics")
        (tmp_path / "edited_metrics.py").write_text("X = 2\n")
        assert registry.modules_hash(["edited_metrics"]) != before and registry.modules_hash([]) == ""
    finally:
        registry._LOADED.discard("edited_metrics")
        sys.modules.pop("edited_metrics", None)
