"""The command line beyond single mistakes (those are the table in test_new_user.py): sweeps and --help."""
from conftest import LEAN, TEST_CONF, all_runs, run_cli
from hte_bench.cli.run import group_options
from in_process import run_here


def _error_lines(proc):
    return [line for line in proc.stderr.splitlines() if line.startswith("hte-bench: error:")]


def test_a_bad_job_in_a_sweep_does_not_stop_the_others(tmp_path, migrated_mlruns):
    store = migrated_mlruns(tmp_path)  # the folder's default store, already migrated
    proc = run_here(["-m", "estimator=zero_effect", "data.p_treat=0.0,0.5", "n_seeds=1", *LEAN], cwd=tmp_path)
    assert proc.returncode != 0
    assert len(_error_lines(proc)) == 1 and "treatment is constant" in _error_lines(proc)[0]
    runs = all_runs(store, "hte-bench")
    kinds = sorted(r.data.tags["hte_bench.kind"] for r in runs)
    assert kinds == ["config", "seed", "sweep"]  # the good job's parent and child, under the sweep run
    assert all(r.info.status == "FINISHED" for r in runs)


def test_a_sweep_whose_summary_fails_exits_non_zero_and_keeps_its_runs(tmp_path, migrated_mlruns, monkeypatch):
    # Hydra only warns about a callback that raises, and exited 0 with no summary printed (a new-user pass saw
    # it with a bug in the summary): the sweep's answer is missing, so the command fails, in one line.
    from hte_bench import callbacks

    def broken(self, config, run_id):
        raise RuntimeError("boom")

    monkeypatch.setattr(callbacks.SweepRun, "_end_sweep", broken)
    store = migrated_mlruns(tmp_path)
    proc = run_here(["-m", "estimator=zero_effect", "data.noise=0.5,2.0", "n_seeds=1", *LEAN], cwd=tmp_path)
    assert proc.returncode == 1, proc.stderr[-2000:]
    assert _error_lines(proc) == ["hte-bench: error: the sweep's summary failed (RuntimeError: boom); its "
                                  "configuration runs are kept: hte-bench-leaderboard ranks them"]
    status = {r.data.tags["hte_bench.kind"]: r.info.status for r in all_runs(store, "hte-bench")}
    assert status == {"sweep": "FAILED", "config": "FINISHED", "seed": "FINISHED"}


def test_a_configuration_whose_every_seed_failed_exits_non_zero(tmp_path, migrated_mlruns):
    # The seed runs are kept (FAILED, with their tracebacks), but a script must see that nothing was fitted.
    store = migrated_mlruns(tmp_path)
    conf = f"hydra.searchpath=[file://{TEST_CONF}]"
    proc = run_here([conf, "estimator=fail_on_seed", "seeds=[1]", *LEAN], cwd=tmp_path)
    assert proc.returncode == 1, proc.stderr[-2000:]
    assert len(_error_lines(proc)) == 1 and "every seed failed in 1 configuration(s)" in _error_lines(proc)[0]
    assert sorted(r.info.status for r in all_runs(store, "hte-bench")) == ["FAILED", "FAILED"]
    # In a sweep beside a refused job (exit 2) it is still said; its summary row lists it without a rank.
    proc = run_here(["-m", conf, "estimator=fail_on_seed,zero_effect", "data.p_treat=0.0,0.5", "seeds=[1]", *LEAN],
                    cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr[-2000:]
    lines = _error_lines(proc)
    assert len(lines) == 3 and sum("treatment is constant" in line for line in lines) == 2
    assert "every seed failed in 1 configuration(s): engagement/fail_on_seed" in lines[-1]
    summary = proc.stdout[proc.stdout.index("sweep summary"):]
    assert "none finished" in summary and "a rank of –: no value" in summary


def test_a_configuration_that_lost_a_seed_is_not_the_sweeps_best(tmp_path, migrated_mlruns):
    # fail_on_seed (an interaction OLS) beats zero_effect on every seed it fits, but its mean leaves out seed 1:
    # it ranks after the configuration that fitted all three, and the sweeper gets no value from it.
    store = migrated_mlruns(tmp_path)
    conf = f"hydra.searchpath=[file://{TEST_CONF}]"
    proc = run_here(["-m", conf, "estimator=fail_on_seed,zero_effect", "n_seeds=3", *LEAN], cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    sweep = next(r for r in all_runs(store, "hte-bench") if r.data.tags["hte_bench.kind"] == "sweep")
    assert sweep.data.tags["best_config"].startswith("engagement/zero_effect/")
    summary = proc.stdout[proc.stdout.index("sweep summary"):]
    ranks = [line.split()[:2] for line in summary.splitlines() if line.strip()[:1].isdigit()]
    assert [r[1].split("/")[1] for r in ranks] == ["zero_effect", "fail_on_seed"]
    assert "a configuration with failed seeds ranks after every one that fitted all of its seeds" in summary
    assert "none returned to the sweeper — 1 of the configuration's seeds failed" in proc.stdout
    # Asked again on the seeds it fitted only, it lost none: summarised anew, it is the best (not ranked on the
    # failed count of the earlier command).
    proc = run_here(["-m", conf, "estimator=fail_on_seed,zero_effect", "seeds=[0,2]", *LEAN], cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    summary = proc.stdout[proc.stdout.index("sweep summary"):]
    ranks = [line.split() for line in summary.splitlines() if line.strip()[:1].isdigit()]
    assert [(r[1].split("/")[1], r[-1]) for r in ranks] == [("fail_on_seed", "2/0"), ("zero_effect", "2/0")]


def test_help_lists_the_groups(tmp_path):
    # A real process: what `hte-bench --help` imports at start-up is part of what this checks.
    proc = run_cli(["--help"], cwd=tmp_path)
    assert proc.returncode == 0
    assert "estimator: causal_forest_dml" in proc.stdout
    assert f"data: {', '.join(group_options('data'))}" in proc.stdout
    assert list(tmp_path.iterdir()) == []


def test_a_run_in_the_test_process_leaves_the_process_as_it_was(tmp_path):
    """tests/in_process.py: what most CLI tests use must give the process's answer and restore what it changed."""
    import logging
    import os
    import sys

    before = (os.getcwd(), dict(os.environ), sys.argv[:], sys.path[:], logging.getLogger().handlers[:])
    proc = run_here(["data=engagment"], cwd=tmp_path)
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr.startswith("hte-bench: error: data=engagment is not an option") and proc.stderr.count("\n") == 1
    assert (os.getcwd(), dict(os.environ), sys.argv, sys.path, logging.getLogger().handlers) == before
    assert list(tmp_path.iterdir()) == []


def test_options_may_come_after_overrides(tmp_path):
    # Hydra's argparse stopped reading overrides at the first option: "unrecognized arguments: estimator=...".
    proc = run_here(["n_seeds=7", "--config-dir", str(TEST_CONF), "estimator=cf_small", "--cfg", "job", "alpha=0.1"],
                    cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "n_seeds: 7" in proc.stdout and "alpha: 0.1" in proc.stdout and "n_estimators: 40" in proc.stdout


def test_options_first_keeps_what_hydra_would_have_read():
    from hydra._internal.utils import get_args_parser

    from hte_bench.cli.run import options_first

    def parsed(args):
        got = vars(get_args_parser().parse_args(options_first(args)))
        return got["overrides"], got["info"], got["config_dir"], got["cfg"]

    assert parsed(["data.n=5", "-i"]) == (["data.n=5"], "all", None, None)  # a bare --info takes no override
    assert parsed(["x=1", "--info", "defaults", "y=2"]) == (["x=1", "y=2"], "defaults", None, None)
    assert parsed(["x=1", "--config-di", "my_conf", "y=2"]) == (["x=1", "y=2"], None, "my_conf", None)  # abbreviated
    assert parsed(["x='a=b'", "--cfg", "job", "-m", "y=a,b"]) == (["x='a=b'", "y=a,b"], None, None, "job")
