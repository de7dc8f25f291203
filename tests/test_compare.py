"""Leaderboard and promotion end to end against a real SQLite store and real fits."""
import json

import numpy as np
import pandas as pd
import pytest

from conftest import LEAN, SMALL, all_runs, client, compose, run_composed
from hte_bench.cli.compare import leaderboard_main, promote_main
from hte_bench.seed import make_data, make_estimator
from in_process import run_here

ESTIMATORS = ["interaction_ols", "constant_effect", "zero_effect"]


@pytest.fixture(scope="module")
def study(tmp_path_factory, migrated_mlruns):
    """Eight seeds of three cheap configurations: enough for Wilcoxon + Holm to separate clear losers."""
    root = tmp_path_factory.mktemp("study")
    uri = migrated_mlruns(root)
    for name in ESTIMATORS:
        run_composed([f"estimator={name}", *LEAN, "n_seeds=8", f"tracking.uri={uri}"])
    return root, uri


def _lb(uri, *extra):
    return leaderboard_main(["--tracking-uri", uri, *extra])


def test_leaderboard_ranks_and_logs_a_report_run(study, capsys):
    root, uri = study
    _lb(uri)
    out = capsys.readouterr().out
    lines = [line.split() for line in out.splitlines() if line.strip()[:1].isdigit()]
    assert [parts[1] for parts in lines] == ["interaction_ols", "constant_effect", "zero_effect"]
    assert "best" in lines[0] and lines[2][2] == "worse"
    report = [r for r in all_runs(uri, "hte-bench") if r.data.tags.get("hte_bench.kind") == "leaderboard"]
    assert len(report) == 1 and report[0].data.params["metric"] == "cate_rmse_test"
    note = report[0].data.tags["mlflow.note.content"]  # the metric's own mean and interval, not the ranking loss
    assert "| cate_rmse_test mean [interval] | seeds |" in note and "with its 95% t-interval of the mean" in note
    # The paired test that decided 'vs best', with its adjusted p-value: the CLI printed them, the run did not.
    assert "Wilcoxon signed-rank" in note and "adjusted by holm" in note and "| worse (p=" in note
    c = client(uri)
    files = {f.path for f in c.list_artifacts(report[0].info.run_id)}
    assert {"leaderboard.csv", "leaderboard.md", "leaderboard.html", "plots"} <= files
    plots = {f.path for f in c.list_artifacts(report[0].info.run_id, "plots")}
    # One set per data condition, named after it (here the small test data: n=300 n_test=200).
    cond = "engagement_n-300_n_test-200"
    assert {f"plots/{cond}_cate_rmse_test_by_config.png", f"plots/{cond}_ate_error_by_config.png",
            f"plots/{cond}_calibration_by_config.png"} == plots
    board = pd.read_csv(c.download_artifacts(report[0].info.run_id, "leaderboard.csv", str(root)))
    assert board.loc[board.estimator == "zero_effect", "p_vs_best_adj"].item() < 0.05


def test_leaderboard_filters_and_other_metrics(study, capsys):
    _, uri = study
    _lb(uri, "--estimator", "zero_effect,constant_effect", "--metric", "ate_rmse", "--no-log")
    out = capsys.readouterr().out
    assert "interaction_ols" not in out and "ate_rmse (lower)" in out
    chash = next(r for r in all_runs(uri, "hte-bench") if r.data.tags.get("hte_bench.kind") == "config"
                 ).data.tags["condition_hash"]
    _lb(uri, "--condition", chash[:6], "--no-log")  # the hash as the board's header prints it
    assert f"[condition {chash[:6]}]" in capsys.readouterr().out


@pytest.mark.parametrize("args, message", [
    (["--experiment", "nope"], "experiment='nope' does not exist"),
    (["--metric", "ate_hat"], "cannot be ranked; rankable metrics:"),
    (["--estimator", "forest"], "no finished runs for 'forest'; available: constant_effect"),
    (["--condition", "engagment n=300 n_test=200"], "(did you mean 'engagement n=300 n_test=200'?)"),
    (["--estimator", "interaction_ol"], "no finished runs for 'interaction_ol' (did you mean 'interaction_ols'?)"),
    (["--metric", "cate_rmse_test_mean"], "did you mean cate_rmse_test? (the board ranks per-seed metrics"),
    (["--by", "data.noize"], "--by=data.noize is not a data knob of these runs (did you mean data.noise?)"),
    (["--by", "data.n"], "--by=data.n does not vary among these runs (every one has data.n=300)"),
])
def test_leaderboard_bad_input(study, capsys, args, message):
    _, uri = study
    with pytest.raises(SystemExit) as info:
        _lb(uri, *args, "--no-log")
    assert info.value.code == 2
    captured = capsys.readouterr()
    err = captured.err.strip().splitlines()
    assert len(err) == 1 and message in err[0] and not captured.out  # nothing printed before the error


def test_promotion_registers_champion_and_writes_a_reproducing_config(study, capsys):
    import mlflow

    root, uri = study
    conf = root / "conf" / "experiment"
    promote_main(["--tracking-uri", uri, "--name", "eng_cate", "--config-out", str(conf),
                  "--max-failed-seeds", "0", "--require-significance"])
    out = capsys.readouterr().out
    assert "as models:/eng_cate@champion (version 1; previous champion: none)" in out
    c = client(uri)
    version = c.get_model_version_by_alias("eng_cate", "champion")
    assert version.tags["previous_champion_version"] == "none"
    # How clearly it won, as the terminal said it: in the version's tags and description.
    assert version.tags["board_verdict"].startswith("winner: interaction_ols") and \
        "On the board it was chosen from: winner: interaction_ols" in version.description
    # What the served interval columns are: level and kind, in the version and in the model's own metadata.
    assert (version.tags["interval_kind"], version.tags["interval_level"]) == ("per_unit", "95%")
    assert "tau_lower and tau_upper: 95% intervals of kind **per_unit**" in version.description
    mlflow.set_tracking_uri(uri)
    assert mlflow.models.get_model_info("models:/eng_cate@champion").metadata == {
        "interval_kind": "per_unit", "interval_level": "95%"}

    # Picked on seeds 0-7, confirmed on 8 fresh seeds in its own run, which no later ranking uses.
    selection = version.tags["selection_seeds"].split(",")
    confirmation = version.tags["confirmation_seeds"].split(",")
    assert selection == [str(s) for s in range(8)] and confirmation == [str(s) for s in range(8, 16)]
    for key in ("selection_cate_rmse_test", "confirmation_cate_rmse_test"):
        assert "t-interval" in version.tags[key] and "n=8" in version.tags[key]
    run = c.get_run(version.tags["confirmation_run_id"])
    assert run.data.tags["hte_bench.kind"] == "confirmation" and run.data.tags["estimator"] == "interaction_ols"
    kids = [r for r in all_runs(uri, "hte-bench") if r.data.tags.get("mlflow.parentRunId") == run.info.run_id]
    assert sorted(int(k.data.tags["seed"]) for k in kids) == list(range(8, 16))
    assert "confirmation cate_rmse_test:" in out and "fresh seeds" in out
    _lb(uri, "--no-log")
    board_out = capsys.readouterr().out
    assert "confirmation runs of promoted configurations" in board_out
    winner = json.loads(version.tags["metric_summary"])
    assert winner["estimator"] == "interaction_ols" and version.tags["config_hash"] == winner["config_hash"]
    assert winner["parent_run_id"] in version.tags["source_parent_run_ids"]

    # The registered model predicts exactly what the refit estimator predicts, with intervals.
    mlflow.set_tracking_uri(uri)
    model = mlflow.pyfunc.load_model("models:/eng_cate@champion")
    cfg = compose(["estimator=interaction_ols", *SMALL])
    dataset, _ = make_data(cfg, 0)
    refit = make_estimator(cfg, 0).fit(dataset.X_train, dataset.T_train, dataset.Y_train)
    pred = model.predict(dataset.X_test)
    np.testing.assert_allclose(pred["tau_hat"], refit.effect(dataset.X_test))
    assert (pred["tau_lower"] < pred["tau_hat"]).all() and (pred["tau_hat"] < pred["tau_upper"]).all()

    # A second promotion moves the alias and remembers the previous champion (the registry keeps no history).
    promote_main(["--tracking-uri", uri, "--name", "eng_cate", "--config-out", str(conf), "--confirm-seeds", "0"])
    again = c.get_model_version_by_alias("eng_cate", "champion")
    assert again.tags["previous_champion_version"] == "1" and again.tags["confirmation_seeds"] == "none (skipped)"
    # The confirmation run did not replace the selection run on the board.
    assert json.loads(again.tags["metric_summary"])["parent_run_id"] == winner["parent_run_id"]

    # The written config re-runs with one override and reproduces every logged metric exactly — also in
    # the experiment it came from (resume: false), rather than reporting "already finished".
    path = conf / "promoted_eng_cate.yaml"
    assert path.read_text().startswith("# @package _global_")
    assert "seeds:\n- 0\n- 1\n" in path.read_text()  # the seeds it was selected on, whatever ran later
    proc = run_here(["+experiment=promoted_eng_cate", f"tracking.uri={uri}"], cwd=root)
    assert proc.returncode == 0 and "already finished" not in proc.stderr + proc.stdout, proc.stderr[-2000:]
    parents = sorted((r for r in all_runs(uri, "hte-bench") if r.data.tags.get("hte_bench.kind") == "config"
                      and r.data.tags.get("config_hash") == winner["config_hash"]), key=lambda r: r.info.start_time)
    assert len(parents) == 2

    def seed_metrics(parent):
        runs = [r for r in all_runs(uri, "hte-bench") if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
        return {r.data.tags["seed"]: {k: v for k, v in r.data.metrics.items() if not k.endswith("_seconds")}
                for r in runs}

    original, rerun = seed_metrics(parents[0]), seed_metrics(parents[1])
    assert len(original) == 8 and original == rerun


def test_promotion_gates_that_nothing_passes(study, capsys):
    _, uri = study
    with pytest.raises(SystemExit) as info:
        promote_main(["--tracking-uri", uri, "--name", "never", "--min-ate-coverage", "0.99", "--min-seeds", "9"])
    assert info.value.code == 1
    out = capsys.readouterr()
    assert "nothing qualified" in out.err and "seeds 0-7) < 0.99" in out.out and "95% Wilson [" in out.out
    assert "8 seeds compared on (0-7) < 9" in out.out
    assert "zero_effect [" in out.out and "no ATE interval (interval kind none), so no ATE coverage" in out.out
    from mlflow.exceptions import MlflowException
    with pytest.raises(MlflowException):
        client(uri).get_registered_model("never")


def test_promotion_refits_on_a_user_csv(study, tmp_path, capsys):
    _, uri = study
    dataset, _ = make_data(compose(SMALL), 1)
    path = tmp_path / "mine.csv"
    dataset.X_train.assign(treated=dataset.T_train, outcome=dataset.Y_train).to_csv(path, index=False)
    promote_main(["--tracking-uri", uri, "--name", "from_csv", "--config-out", str(tmp_path), "--confirm-seeds", "0",
                  "--csv", str(path), "--outcome", "outcome", "--treatment", "treated"])
    version = client(uri).get_model_version_by_alias("from_csv", "champion")
    assert version.tags["refit_on"] == f"csv {path}"
    with pytest.raises(SystemExit):
        promote_main(["--tracking-uri", uri, "--name", "bad_csv", "--config-out", str(tmp_path), "--confirm-seeds",
                      "0", "--csv", str(path), "--outcome", "nope", "--treatment", "treated"])
    assert "column(s) ['nope'] not in mine.csv" in capsys.readouterr().err
    # A file with other features than the runs it was ranked on: the model would take the wrong columns.
    dataset.X_train.assign(treated=dataset.T_train, outcome=dataset.Y_train, extra=1.0).to_csv(path, index=False)
    with pytest.raises(SystemExit):
        promote_main(["--tracking-uri", uri, "--name", "bad_csv", "--config-out", str(tmp_path), "--confirm-seeds",
                      "0", "--csv", str(path), "--outcome", "outcome", "--treatment", "treated"])
    assert "are not the ['age', 'engagement'] the winner was ranked on; pass --features age,engagement" in \
        capsys.readouterr().err


def _sweep(cwd, uri, *overrides):
    given = {o.split("=")[0] for o in overrides}
    fast = [o for o in [*LEAN, "n_seeds=2"] if o.split("=")[0] not in given]
    proc = run_here(["-m", *overrides, *fast, f"tracking.uri={uri}"], cwd=cwd)
    assert proc.returncode == 0, proc.stderr[-2000:]
    runs = all_runs(uri, "hte-bench")
    sweep = next(r for r in runs if r.data.tags.get("hte_bench.kind") == "sweep")
    parents = [r for r in runs if r.data.tags.get("sweep_run_id") == sweep.info.run_id]
    return sweep, parents


def test_a_knob_sweep_is_two_conditions_never_pooled(tmp_path, capsys, migrated_mlruns):
    """data.noise=1.0,3.0: two conditions, a best and a board section each, and a study figure."""
    uri = migrated_mlruns(tmp_path)
    sweep, parents = _sweep(tmp_path, uri, "data.noise=1.0,3.0", "estimator=interaction_ols,zero_effect")
    small = "engagement n=300 n_test=200"  # the generator plus every knob that differs from its defaults
    assert {p.data.tags["condition"] for p in parents} == {small, f"{small} noise=3.0"}
    c = client(uri)
    for p in parents:  # seed runs carry the condition of their configuration
        kids = [r for r in all_runs(uri, "hte-bench") if r.data.tags.get("mlflow.parentRunId") == p.info.run_id]
        assert {k.data.tags["condition_hash"] for k in kids} == {p.data.tags["condition_hash"]}
    # The sweep names the best of each condition (lowest √PEHE), none pooled across conditions.
    assert "best_parent_run_id" not in sweep.data.tags and sweep.data.tags["n_conditions"] == "2"
    for chash in {p.data.tags["condition_hash"] for p in parents}:
        mine = [p for p in parents if p.data.tags["condition_hash"] == chash]
        top = min(mine, key=lambda p: p.data.metrics["cate_rmse_test_mean"])
        assert top.info.run_id in sweep.data.tags[f"best_config/{chash}"]
    files = {f.path for f in c.list_artifacts(sweep.info.run_id)} | \
        {f.path for f in c.list_artifacts(sweep.info.run_id, "plots")}
    assert {"best_per_condition.csv", "leaderboard.csv", "plots/study_engagement_data_noise.png"} <= files

    _lb(uri, "--by", "data.noise", "--metric", "cate_rmse_test")
    out = capsys.readouterr().out
    assert f"== {small} [condition" in out and f"== {small} noise=3.0 [condition" in out
    assert ("cate_rmse_test by data.noise: mean, 95% t-interval and seeds; each cell one data condition "
            "(data.noise of its column, any other varying knob named in its row)") in out
    report = next(r for r in all_runs(uri, "hte-bench") if r.data.tags.get("hte_bench.kind") == "leaderboard")
    # The study figure has the sweep run's file name (the README's), on the leaderboard run too.
    assert "plots/study_engagement_data_noise.png" in {f.path for f in c.list_artifacts(report.info.run_id, "plots")}
    board = pd.read_csv(c.download_artifacts(report.info.run_id, "leaderboard.csv", str(tmp_path)))
    assert sorted(board["condition"].unique()) == [small, f"{small} noise=3.0"]
    assert board.groupby("condition")["rank"].apply(sorted).tolist() == [[1, 2], [1, 2]]
    _lb(uri, "--condition", f"{small} noise=3", "--no-log")  # 3 and 3.0 name one condition
    assert f"== {small} noise=3.0 [condition" in capsys.readouterr().out
    _lb(uri, "--condition", "noise=3", "--no-log")  # a part of the label: the conditions that have it
    out = capsys.readouterr().out
    assert f"== {small} noise=3.0 [condition" in out and f"== {small} [condition" not in out
    _lb(uri, "--condition", "noise=1.0", "--no-log")  # the default, not in the label: the knob as logged
    out = capsys.readouterr().out
    assert f"== {small} [condition" in out and "noise=3.0 [condition" not in out
    with pytest.raises(SystemExit):
        promote_main(["--tracking-uri", uri, "--name", "pooled", "--config-out", str(tmp_path)])
    assert "promotion needs one data condition" in capsys.readouterr().err


def test_rscore_sweep_tags_the_highest_as_best(tmp_path, migrated_mlruns):
    uri = migrated_mlruns(tmp_path)
    sweep, parents = _sweep(tmp_path, uri, "estimator=interaction_ols,zero_effect", "optimized_metric=rscore_mean",
                            "analyses.truth_free=true", "analyses.seeds=1", "n_seeds=2")
    scores = {p.info.run_id: p.data.metrics["rscore_mean"] for p in parents}
    assert len(scores) == 2 and len(set(scores.values())) == 2
    assert sweep.data.tags["best_parent_run_id"] == max(scores, key=scores.get)
    assert sweep.data.tags["best_condition"] == "engagement n=300 n_test=200"


def test_real_data_board_logs_and_its_promotion_says_the_confirmation_is_a_resplit(tmp_path, capsys, migrated_mlruns):
    """A CSV without a true effect: the board is logged with the plots it can draw (no ATE error, no calibration
    against tau); promotion's 'fresh' seeds are other splits of the same rows, and the model version says so."""
    dataset, _ = make_data(compose(SMALL), 0)
    path = tmp_path / "mine.csv"
    dataset.X_train.assign(treated=dataset.T_train, outcome=dataset.Y_train).to_csv(path, index=False)
    uri = migrated_mlruns(tmp_path)
    real = ["data=csv", f"data.path={path}", "data.outcome=outcome", "data.treatment=treated",
            *[o for o in LEAN if o != "analyses.truth_free=false" and not o.startswith("data.")], "analyses.seeds=2"]
    for name in ("interaction_ols", "zero_effect"):
        run_composed([f"estimator={name}", *real, "n_seeds=2", f"tracking.uri={uri}"])
    _lb(uri, "--metric", "rscore")
    assert "data=csv: the seeds are other train/test splits of the same rows" in capsys.readouterr().out
    board = next(r for r in all_runs(uri, "hte-bench") if r.data.tags.get("hte_bench.kind") == "leaderboard")
    plots = [a.path for a in client(uri).list_artifacts(board.info.run_id, "plots")]
    assert len(plots) == 1 and plots[0].endswith("_rscore_by_config.png")
    promote_main(["--tracking-uri", uri, "--name", "real", "--metric", "rscore", "--config-out", str(tmp_path),
                  "--confirm-seeds", "3"])
    assert "this is no independent confirmation" in capsys.readouterr().out
    version = client(uri).get_model_version_by_alias("real", "champion")
    # Fresh seeds 2-4, the R-score (an analysis) on the first analyses.seeds=2 of them: the figure says those.
    assert version.tags["confirmation_seeds"] == "2,3" and "(mean over seeds 2,3, n=2" in version.tags["confirmation_rscore"]
    assert version.tags["confirmation_caveat"].startswith("data=csv: fresh seeds are other splits of the same rows")
    assert "| confirmation (data=csv: fresh seeds are other splits" in version.description


def test_a_sweep_on_a_non_headline_metric_shows_its_interval(tmp_path, migrated_mlruns):
    # The optimized mean is logged with its interval whatever the headline set: the summary said "no interval;
    # one seed" for calib_rmse_test_mean over two seeds, although aggregate.json had it.
    uri = migrated_mlruns(tmp_path)
    proc = run_here(["-m", "estimator=interaction_ols,zero_effect", "optimized_metric=calib_rmse_test_mean",
                     *LEAN, "n_seeds=2", f"tracking.uri={uri}"], cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    parents = [r for r in all_runs(uri, "hte-bench") if r.data.tags.get("hte_bench.kind") == "config"]
    assert all({"calib_rmse_test_ci_lower", "calib_rmse_test_ci_upper"} <= r.data.metrics.keys() for r in parents)
    # ...and the seed counts are never the ones pushed out of the 40 (the sweep ranks lost seeds by them).
    assert all({"n_seeds_ok", "n_seeds_failed"} <= r.data.metrics.keys() for r in parents)
    summary = proc.stdout[proc.stdout.index("sweep summary"):]
    assert "one seed, no interval" not in summary and summary.count("[") >= 2


def test_a_sweep_over_alpha_ranks_each_configuration_at_its_own_level(tmp_path, migrated_mlruns):
    # Hydra hands the sweep's end the un-swept config: its alpha was used for every row's level and target.
    uri = migrated_mlruns(tmp_path)
    proc = run_here(["-m", "alpha=0.05,0.3", "estimator=interaction_ols", "optimized_metric=cate_coverage_test_mean",
                     *LEAN, "n_seeds=2", f"tracking.uri={uri}"], cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    summary = proc.stdout[proc.stdout.index("sweep summary"):]
    assert "(interval: each row's own (level column) t-interval" in summary
    rows = [line.split() for line in summary.splitlines() if line.strip()[:1].isdigit()]
    assert sorted(r[-1] for r in rows) == ["70%", "95%"]
    from hte_bench.compare import study

    parents = pd.DataFrame([{"run_id": r.info.run_id, "run_name": r.info.run_name, "params.alpha": r.data.params["alpha"],
                             "metrics.cate_coverage_test_mean": r.data.metrics["cate_coverage_test_mean"],
                             **{f"tags.{k}": v for k, v in r.data.tags.items()}}
                            for r in all_runs(uri, "hte-bench") if r.data.tags.get("hte_bench.kind") == "config"])
    # Each at its own target (0.95, 0.7): the best is the one nearer its own, not the one nearer 0.95.
    distance = {float(a): abs(v - (1 - float(a))) for a, v in zip(parents["params.alpha"],
                                                                  parents["metrics.cate_coverage_test_mean"])}
    best = study.best_per_condition(parents, "cate_coverage_test_mean")
    assert float(parents.set_index("run_id").loc[best["parent_run_id"].item(), "params.alpha"]) == \
        min(distance, key=distance.get)


def test_promotion_checks_its_gates_again_on_the_fresh_seeds(tmp_path, capsys, migrated_mlruns):
    # Passed on the seeds it was chosen on (0-2), the failed-seed gate fails on the fresh ones (seed 3 fails):
    # no champion, exit 1, both figures said.
    uri = migrated_mlruns(tmp_path)
    run_composed(["estimator=fail_on_seed", "estimator.fail_seed=3", *LEAN, "n_seeds=3", f"tracking.uri={uri}"])
    with pytest.raises(SystemExit) as stop:
        promote_main(["--tracking-uri", uri, "--name", "fresh_gate", "--config-out", str(tmp_path),
                      "--max-failed-seeds", "0"])
    assert stop.value.code == 1
    out, err = capsys.readouterr()
    assert "passes every gate: 0 failed seeds ≤ 0" in out
    assert "confirmation gate failed: 1 failed seeds > 0" in err
    assert "not promoted: it passed the gates on the seeds it was selected on (0-2), not on the fresh seeds 4,5" in err
    assert client(uri).search_registered_models() == [] and not (tmp_path / "promoted_fresh_gate.yaml").exists()
