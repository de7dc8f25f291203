"""Leaderboard and promotion end to end against a real SQLite store and real fits."""
import json

import numpy as np
import pandas as pd
import pytest

from conftest import SMALL, all_runs, client, compose, run_cli, run_composed
from hte_bench.cli.compare import leaderboard_main, promote_main
from hte_bench.seed import make_data, make_estimator

ESTIMATORS = ["interaction_ols", "constant_effect", "zero_effect"]


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    """Eight seeds of three cheap configurations: enough for Wilcoxon + Holm to separate clear losers."""
    root = tmp_path_factory.mktemp("study")
    uri = f"sqlite:///{root / 'mlruns' / 'mlflow.db'}"
    for name in ESTIMATORS:
        run_composed([f"estimator={name}", "n_seeds=8", *SMALL, f"tracking.uri={uri}"])
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
    c = client(uri)
    files = {f.path for f in c.list_artifacts(report[0].info.run_id)}
    assert {"leaderboard.csv", "leaderboard.md", "leaderboard.html", "plots"} <= files
    plots = {f.path for f in c.list_artifacts(report[0].info.run_id, "plots")}
    assert {"plots/engagement_cate_rmse_test_by_config.png", "plots/engagement_ate_error_by_config.png",
            "plots/engagement_calibration_by_config.png"} == plots
    board = pd.read_csv(c.download_artifacts(report[0].info.run_id, "leaderboard.csv", str(root)))
    assert board.loc[board.estimator == "zero_effect", "p_vs_best_adj"].item() < 0.05


def test_leaderboard_filters_and_other_metrics(study, capsys):
    _, uri = study
    _lb(uri, "--estimator", "zero_effect,constant_effect", "--metric", "ate_rmse", "--no-log")
    out = capsys.readouterr().out
    assert "interaction_ols" not in out and "ate_rmse (lower)" in out


@pytest.mark.parametrize("args, message", [
    (["--experiment", "nope"], "experiment='nope' does not exist"),
    (["--metric", "ate_hat"], "cannot be ranked; rankable metrics:"),
    (["--estimator", "forest"], "no finished runs for ['forest']; available: constant_effect"),
])
def test_leaderboard_bad_input(study, capsys, args, message):
    _, uri = study
    with pytest.raises(SystemExit) as info:
        _lb(uri, *args, "--no-log")
    assert info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0]


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
    promote_main(["--tracking-uri", uri, "--name", "eng_cate", "--config-out", str(conf)])
    assert c.get_model_version_by_alias("eng_cate", "champion").tags["previous_champion_version"] == "1"

    # The written config re-runs with one override and reproduces every logged metric exactly.
    path = conf / "promoted_eng_cate.yaml"
    assert path.read_text().startswith("# @package _global_")
    proc = run_cli(["+experiment=promoted_eng_cate", f"tracking.uri={uri}", "tracking.experiment=rerun"], cwd=root)
    assert proc.returncode == 0, proc.stderr[-2000:]

    def seed_metrics(experiment):
        runs = [r for r in all_runs(uri, experiment) if r.data.tags.get("config_hash") == winner["config_hash"]
                and r.data.tags.get("hte_bench.kind") == "seed"]
        return {r.data.tags["seed"]: {k: v for k, v in r.data.metrics.items() if not k.endswith("_seconds")}
                for r in runs}

    original, rerun = seed_metrics("hte-bench"), seed_metrics("rerun")
    assert len(original) == 8 and original == rerun


def test_promotion_gates_that_nothing_passes(study, capsys):
    _, uri = study
    with pytest.raises(SystemExit) as info:
        promote_main(["--tracking-uri", uri, "--name", "never", "--min-ate-coverage", "1.01"])
    assert info.value.code == 1
    out = capsys.readouterr()
    assert "nothing qualified" in out.err and "ATE coverage rate" in out.out
    from mlflow.exceptions import MlflowException
    with pytest.raises(MlflowException):
        client(uri).get_registered_model("never")


def test_promotion_refits_on_a_user_csv(study, tmp_path, capsys):
    _, uri = study
    dataset, _ = make_data(compose(SMALL), 1)
    path = tmp_path / "mine.csv"
    dataset.X_train.assign(treated=dataset.T_train, outcome=dataset.Y_train).to_csv(path, index=False)
    promote_main(["--tracking-uri", uri, "--name", "from_csv", "--config-out", str(tmp_path),
                  "--csv", str(path), "--outcome", "outcome", "--treatment", "treated"])
    version = client(uri).get_model_version_by_alias("from_csv", "champion")
    assert version.tags["refit_on"] == f"csv {path}"
    with pytest.raises(SystemExit):
        promote_main(["--tracking-uri", uri, "--name", "bad_csv", "--config-out", str(tmp_path),
                      "--csv", str(path), "--outcome", "nope", "--treatment", "treated"])
    assert "column(s) ['nope'] not in mine.csv" in capsys.readouterr().err
