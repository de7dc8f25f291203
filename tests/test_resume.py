"""Resuming: finished (config, seed) pairs are never refitted; killed runs are closed and redone."""
import signal
import subprocess
import time

from conftest import LEAN, TEST_CONF, all_runs, cli_env, client, run_composed
from in_process import run_here


def _children(uri, experiment="hte-bench"):
    return [r for r in all_runs(uri, experiment) if r.data.tags.get("hte_bench.kind") == "seed"]


def _finished_seed_runs(db) -> int:
    """FINISHED seed runs, read straight from SQLite: an MlflowClient here could race the sweep's migrations."""
    import sqlite3

    if not db.exists():
        return 0
    try:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=1) as con:
            return con.execute("select count(*) from runs r join tags t on r.run_uuid = t.run_uuid "
                               "where t.key = 'hte_bench.kind' and t.value = 'seed' "
                               "and r.status = 'FINISHED'").fetchone()[0]
    except sqlite3.OperationalError:  # tables not created yet, or a write in progress
        return 0


def test_rerun_skips_finished_seeds_and_extends_the_same_parent(store):
    args = ["estimator=interaction_ols", *LEAN, f"tracking.uri={store}"]
    first = run_composed([*args, "n_seeds=2"])
    before = {r.data.tags["seed"]: r.info.run_id for r in _children(store)}
    more = run_composed([*args, "n_seeds=4"])
    assert more["_parent_run_id"] == first["_parent_run_id"] and more["n_seeds_ok"] == 4
    after = _children(store)
    assert sorted(r.data.tags["seed"] for r in after) == ["0", "1", "2", "3"]
    assert {r.data.tags["seed"]: r.info.run_id for r in after if r.data.tags["seed"] in before} == before
    # Everything finished: nothing is fitted or logged again.
    again = run_composed([*args, "n_seeds=4"])
    assert len(_children(store)) == 4 and again["cate_rmse_test_mean"] == more["cate_rmse_test_mean"]
    # Other seeds asked for: nothing refitted, the configuration run summarises exactly those, and says so.
    one = run_composed([*args, "seeds=[1]"])
    parent = client(store).get_run(first["_parent_run_id"])
    assert len(_children(store)) == 4 and one["n_seeds_ok"] == 1 and parent.data.tags["seeds"] == "1"
    back = run_composed([*args, "n_seeds=4"])  # no longer "already finished": summarised over 0-3 again
    assert back["cate_rmse_test_mean"] == more["cate_rmse_test_mean"] and len(_children(store)) == 4
    assert client(store).get_run(first["_parent_run_id"]).data.tags["seeds"] == "0-3"
    # Another objective is no other configuration: the same run, nothing refitted, its value for the sweeper
    # read from the run's aggregate (a sweep also logs it on the run: Tracker.attach_to_sweep).
    other = run_composed([*args, "n_seeds=4", "optimized_metric=predict_seconds_std"])
    assert other["_parent_run_id"] == first["_parent_run_id"] and len(_children(store)) == 4
    assert other["predict_seconds_std"] >= 0
    # resume=false forces a fresh parent with its own children.
    fresh = run_composed([*args, "n_seeds=2", "resume=false"])
    assert fresh["_parent_run_id"] != first["_parent_run_id"] and len(_children(store)) == 6


def test_a_summary_over_other_seeds_keeps_no_metric_of_the_seeds_it_left(store):
    # Seeds 1-2 were fitted past analyses.seeds=1 (no R-score). Summarised alone, although seed 1 is now the
    # first seed of the list, the run must not keep seed 0's R-score mean or name them as analysed seeds.
    import math

    args = ["estimator=interaction_ols", *LEAN, "analyses.truth_free=true", "analyses.seeds=1", f"tracking.uri={store}"]
    first = run_composed([*args, "n_seeds=3"])
    parent = first["_parent_run_id"]
    assert math.isfinite(client(store).get_run(parent).data.metrics["rscore_mean"])
    assert client(store).get_run(parent).data.tags["analyses_seeds"] == "0"
    later = run_composed([*args, "seeds=[1,2]"])
    run = client(store).get_run(parent)
    assert later["_parent_run_id"] == parent and run.data.tags["seeds"] == "1,2"
    assert math.isnan(run.data.metrics["rscore_mean"]) and "rscore_mean" not in later
    assert run.data.tags["analyses_seeds"] == "none"
    back = run_composed([*args, "n_seeds=3"])  # all three again: the R-score of seed 0 is back
    assert client(store).get_run(parent).data.metrics["rscore_mean"] == back["rscore_mean"] == first["rscore_mean"]


def test_a_finished_run_stopped_while_seeds_are_added_stays_finished(store, user_module):
    # Ctrl-C while n_seeds=4 adds seeds 2-3 to a finished run of seeds 0-1: the run still holds its summary of
    # 0-1, so it stays FINISHED (boards keep it) instead of becoming KILLED; seed 2's run stays for next time.
    import pytest

    user_module(
        "stops_at_3", "from hte_bench.data import engagement\n\n"
        "def generate(seed, n=200, n_test=100, **knobs):\n"
        "    if seed == 3:\n        raise KeyboardInterrupt  # as Ctrl-C would, while seed 3 is drawn\n"
        "    return engagement.generate(seed, n=n, n_test=n_test, **knobs)\n")
    args = ["estimator=interaction_ols", *LEAN, "data._target_=stops_at_3.generate", "n_jobs=1", f"tracking.uri={store}"]
    first = run_composed([*args, "n_seeds=2"])
    with pytest.raises(KeyboardInterrupt):
        run_composed([*args, "n_seeds=4"])
    run = client(store).get_run(first["_parent_run_id"])
    assert run.info.status == "FINISHED" and run.data.tags["seeds"] == "0,1"
    assert sorted(r.data.tags["seed"] for r in _children(store) if r.info.status == "FINISHED") == ["0", "1", "2"]


def _seed_claims(db) -> list:
    """Claims on seeds (not on a sweep or a configuration) in the claims database, read-only."""
    import sqlite3

    try:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=1) as con:
            rows = con.execute("select claim_key, claim_part, holder from hte_bench_claims").fetchall()
    except sqlite3.OperationalError:
        return []
    return [row for row in rows if row[1].isdigit()]


def test_sigkill_mid_sweep_then_rerun_finishes_every_pair_exactly_once(tmp_path, migrated_mlruns):
    uri = migrated_mlruns(tmp_path)  # the default store of the folder, already migrated
    # A short lease: the killed run's claim on the seed it was fitting is taken over as soon as the rerun
    # reaches it (with the default 60 s the rerun would wait for that lease to expire).
    cmd = ["hte-bench", "-m", "estimator=cf_small,interaction_ols", "n_seeds=4", *LEAN, "claims.lease_seconds=2",
           "--config-dir", str(TEST_CONF)]
    env = cli_env()
    proc = subprocess.Popen(cmd, cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    db, claims = tmp_path / "mlruns" / "mlflow.db", tmp_path / "mlruns" / "coordination.db"
    deadline = time.time() + 300
    # Killed while it holds a claim on the seed it fits, with two seeds finished before it.
    while time.time() < deadline and proc.poll() is None and (_finished_seed_runs(db) < 2 or not _seed_claims(claims)):
        time.sleep(0.1)  # lean seeds take about a second: a long nap could miss the window before the end
    assert proc.poll() is None, "the sweep ended before it could be killed"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    finished_before = {r.info.run_id for r in _children(uri) if r.info.status == "FINISHED"}
    assert 2 <= len(finished_before) < 8, f"not killed mid-way: {len(finished_before)} finished"
    assert _seed_claims(claims), "the killed run left no claim on a seed to take over"

    # The rerun starts while the dead claim's lease may still run: it waits for it, then takes it over.
    rerun = run_here(cmd[1:], cwd=tmp_path)  # the killed one was the process; the rerun may be this one
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    assert "taking it over" in rerun.stdout + rerun.stderr
    runs = all_runs(uri, "hte-bench")
    assert not [r for r in runs if r.info.status == "RUNNING"]
    kids = [r for r in runs if r.data.tags.get("hte_bench.kind") == "seed"]
    finished = [r for r in kids if r.info.status == "FINISHED"]
    pairs = [(r.data.tags["config_hash"], r.data.tags["seed"]) for r in finished]
    assert len(pairs) == len(set(pairs)) == 8  # every (config, seed) exactly once
    assert finished_before <= {r.info.run_id for r in finished}  # nothing finished was refitted
    parents = [r for r in runs if r.data.tags.get("hte_bench.kind") == "config"]
    assert len(parents) == 2 and all(p.info.status == "FINISHED" for p in parents)
    assert all(p.data.metrics["n_seeds_ok"] == 4 for p in parents)
    assert all(r.data.tags["mlflow.parentRunId"] in {p.info.run_id for p in parents} for r in finished)
    # The killed sweep's run is closed KILLED once its lease has expired; the rerun's FINISHED.
    sweeps = [r for r in runs if r.data.tags.get("hte_bench.kind") == "sweep"]
    assert sorted(r.info.status for r in sweeps) == ["FINISHED", "KILLED"]
