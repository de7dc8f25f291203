"""The runner against a real temporary SQLite store: nesting, failure isolation, reproducibility, bad input."""
import math

import pytest

from conftest import LEAN, SMALL, all_runs, client, run_composed
from hte_bench.errors import ConfigError
from hte_bench.evaluation.metrics import CHILD_METRICS, WITHOUT_TRUTH
from hte_bench.evaluation.validation import TRUTH_FREE_METRICS

TIMING = {"fit_seconds", "predict_seconds"}


def _run(store, experiment, overrides, small=LEAN):
    return run_composed([*small, f"tracking.uri={store}", f"tracking.experiment={experiment}", *overrides])


def _children(store, experiment, parent_id):
    return sorted((r for r in all_runs(store, experiment)
                   if r.data.tags.get("mlflow.parentRunId") == parent_id), key=lambda r: int(r.data.tags["seed"]))


def test_failed_fit_is_isolated(store):
    summary = _run(store, "iso", ["estimator=fail_on_seed", "n_seeds=3"])
    assert summary["n_seeds_ok"] == 2 and summary["n_seeds_failed"] == 1
    kids = _children(store, "iso", summary["_parent_run_id"])
    assert [k.info.status for k in kids] == ["FINISHED", "FAILED", "FINISHED"]
    failed = kids[1]
    assert "deliberate failure on seed 1" in failed.data.tags["error"]
    files = [f.path for f in client(store).list_artifacts(failed.info.run_id)]
    assert files == ["traceback.txt"]
    text = client(store).download_artifacts(failed.info.run_id, "traceback.txt")
    assert "RuntimeError: deliberate failure on seed 1" in open(text).read()
    parent = client(store).get_run(summary["_parent_run_id"])
    assert parent.info.status == "FINISHED" and parent.data.metrics["n_seeds_failed"] == 1
    # Every seed run says in its description what it is, and a failed one why.
    assert "**FAILED:** " in failed.data.tags["mlflow.note.content"] and "deliberate failure on seed 1" in \
        failed.data.tags["mlflow.note.content"]
    assert kids[0].data.tags["mlflow.note.content"].startswith("Seed **0** of the configuration run [fail_on_seed ")
    assert "√PEHE on the test sample" in kids[0].data.tags["mlflow.note.content"]


def test_nan_effects_fail_their_seed_instead_of_thinning_the_means(store):
    # An estimator that fits but returns NaN for a few units: its metrics would be NaN and the configuration's
    # means would stand on fewer seeds than "seeds ok" says.
    summary = _run(store, "nan", ["estimator=fail_on_seed", "++estimator.how=nan_effects", "n_seeds=2"])
    assert summary["n_seeds_ok"] == 1 and summary["n_seeds_failed"] == 1
    failed = _children(store, "nan", summary["_parent_run_id"])[1]
    assert failed.info.status == "FAILED"
    assert "FailOnSeed gave 5 of 300 effects on the training sample as NaN or inf" in failed.data.tags["error"]


def test_a_seed_whose_worker_process_dies_fails_alone(store):
    # os._exit in one seed's fit stands for a worker killed for memory or a crash in native code: the pool
    # breaks; that seed is retried alone, fails, and the configuration's other seeds finish.
    summary = _run(store, "died", ["estimator=fail_on_seed", "++estimator.how=exit", "n_seeds=2", "n_jobs=2"])
    assert summary["n_seeds_ok"] == 1 and summary["n_seeds_failed"] == 1
    kids = _children(store, "died", summary["_parent_run_id"])
    assert [k.info.status for k in kids] == ["FINISHED", "FAILED"]
    assert kids[1].data.tags["error"].startswith("worker process: its process died while fitting this seed")


@pytest.fixture
def user_metric_module():
    """metric_modules=[user_metrics] for the test; afterwards this process and its workers forget it."""
    import sys

    from hte_bench.evaluation import registry
    from in_process import _end_worker_pool

    yield "metric_modules=[user_metrics]"
    _end_worker_pool()  # the workers registered it too
    spec = registry.METRICS.pop("user_ate_abs_error", None)
    if spec is not None:
        registry._ALL.remove(spec)
    registry._LOADED.discard("user_metrics")
    sys.modules.pop("user_metrics", None)


def test_same_config_and_seed_give_identical_metrics_serial_or_parallel(store, user_metric_module):
    # A user's metric module (metric_modules) is registered in the worker processes too.
    args = ["estimator=cf_small", "n_seeds=2", user_metric_module]
    # Analyses on (their DR nuisances too), figures off: every logged number is compared.
    a = _run(store, "repro_a", args, [*SMALL, "tracking.plots=false", "tracking.cache=false"])
    b = _run(store, "repro_b", [*args, "n_jobs=-1"], [*SMALL, "tracking.plots=false", "tracking.cache=false"])
    ka = _children(store, "repro_a", a["_parent_run_id"])
    kb = _children(store, "repro_b", b["_parent_run_id"])
    for x, y in zip(ka, kb):
        mx = {k: v for k, v in x.data.metrics.items() if k not in TIMING}
        my = {k: v for k, v in y.data.metrics.items() if k not in TIMING}
        assert mx.keys() == my.keys() and all(mx[k] == my[k] or (math.isnan(mx[k]) and math.isnan(my[k]))
                                              for k in mx)
        assert x.data.tags["data_hash"] == y.data.tags["data_hash"]
    assert a["cate_rmse_test_mean"] == b["cate_rmse_test_mean"]
    assert ka[0].data.tags["config_hash"] == kb[0].data.tags["config_hash"]  # n_jobs is not part of it
    assert all(k.data.metrics["user_ate_abs_error"] == pytest.approx(abs(k.data.metrics["ate_bias"]))
               for k in ka + kb)
    # Its mean and interval are on the configuration run beside the headline ones (for boards and sweeps).
    logged = client(store).get_run(a["_parent_run_id"]).data.metrics
    assert {"user_ate_abs_error_mean", "user_ate_abs_error_ci_upper", "rscore_mean"} <= set(logged)
    assert len(logged) <= 40


def test_child_metrics_and_tags(store):
    summary = _run(store, "names", ["estimator=zero_effect", "n_seeds=2"])
    kid = _children(store, "names", summary["_parent_run_id"])[0]
    assert set(CHILD_METRICS) <= set(kid.data.metrics)
    assert math.isnan(kid.data.metrics["cate_coverage_test"])  # no invented interval
    assert "no interval" in kid.data.tags["interval_reason"]
    assert kid.data.metrics["ate_bias"] == pytest.approx(-kid.data.metrics["ate_true"])
    for tag in ("data", "estimator", "seed", "config_hash", "data_hash"):
        assert kid.data.tags[tag]
    assert kid.inputs.dataset_inputs[0].dataset.name == "engagement-seed0"


@pytest.mark.parametrize("overrides, message", [
    (["estimator=interaction_ols", "data.p_treat=0.0"], "treatment is constant"),
    (["estimator=cf_small", "estimator.model.n_estimators=41"], "n_estimators"),
    (["estimator=interaction_ols", "+estimator.not_a_param=1"], "not_a_param"),
    (["estimator=interaction_ols", "data.n=0"], "data.n=0 is not allowed"),
    (["estimator=interaction_ols", "alpha=1.5"], "alpha"),
    (["estimator=interaction_ols", "tracking.plots=-1"], "tracking.plots"),
])
def test_bad_input_raises_one_line_and_writes_nothing(store, overrides, message):
    with pytest.raises(ConfigError, match=message) as info:
        _run(store, "bad", overrides)
    assert "\n" not in str(info.value)
    assert all_runs(store, "bad") == []


def test_without_truth_only_truth_free_metrics_are_logged(store, tmp_path):
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(0)
    frame = pd.DataFrame({"a": rng.normal(size=300), "t": rng.binomial(1, 0.5, 300)})
    frame["y"] = frame.t * (1 + frame.a) + rng.normal(size=300)
    frame.to_csv(tmp_path / "real.csv", index=False)
    summary = run_composed(["estimator=interaction_ols", "data=csv", f"data.path={tmp_path / 'real.csv'}",
                            "data.outcome=y", "data.treatment=t", "n_seeds=2", "importance_repeats=1", "n_jobs=1",
                            "tracking.plots=false",  # figures log no metric
                            f"tracking.uri={store}", "tracking.experiment=real"])
    kid = _children(store, "real", summary["_parent_run_id"])[0]
    # Truth metrics are absent (not zero or NaN); the truth-free validation scores are there.
    assert set(kid.data.metrics) == set(WITHOUT_TRUTH) | set(TRUTH_FREE_METRICS)
    assert kid.data.tags["truth"].startswith("absent")
    assert "cate_rmse_test_mean" not in summary and "ate_hat_mean" in summary


def test_seeds_run_serially_by_default_under_a_parallel_joblib_launcher():
    # Its pool times the seeds' pool overloaded the cores (8 processes on 2); an explicit n_jobs is kept.
    from hydra.core.hydra_config import HydraConfig
    from omegaconf import OmegaConf

    from hte_bench.runner import _seed_jobs

    hydra = HydraConfig.instance()
    before = hydra.cfg
    try:
        for mode, launcher, n_jobs, trials, expected in (
                ("MULTIRUN", "JoblibLauncher", -1, None, 1), ("MULTIRUN", "JoblibLauncher", 1, None, -1),
                ("MULTIRUN", "BasicLauncher", -1, None, -1), ("RUN", "JoblibLauncher", -1, None, -1),
                ("MULTIRUN", "JoblibLauncher", -1, 1, -1), ("MULTIRUN", "JoblibLauncher", -1, 2, 1)):
            sweeper = {} if trials is None else {"n_jobs": trials}  # an Optuna search's trials per batch
            hydra.cfg = OmegaConf.create({"hydra": {"mode": mode, "sweeper": sweeper,
                                                    "launcher": {"_target_": f"x.{launcher}", "n_jobs": n_jobs}}})
            assert _seed_jobs(-1) == expected and _seed_jobs(2) == 2, (mode, launcher, n_jobs, trials)
    finally:
        hydra.cfg = before
