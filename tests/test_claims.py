"""Claims with leases: two runs of one sweep at once fit each (configuration, seed) once, under one parent.

(A holder killed mid-sweep, whose claims the rerun takes over, is test_resume.py's SIGKILL test.)"""
import shutil
import sqlite3
import subprocess
import time
from collections import Counter

from conftest import LEAN, TEST_CONF, all_runs, cli_env
from in_process import run_here

SWEEP = ["-m", "estimator=interaction_ols,constant_effect", "n_seeds=4", *LEAN]


def _cli(args, cwd):
    exe = shutil.which("hte-bench")
    return subprocess.Popen([exe, *args, "--config-dir", str(TEST_CONF)], cwd=cwd, env=cli_env(),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _two_at_once(args, cwd, claims_db, process_args=()):
    """The sweep as a process (with ``process_args``) and, once that process has opened the claims database
    (its sweep is starting), in this process too (tests/in_process.py): two holders, one process's start-up
    less. Their outputs, joined."""
    proc = _cli([*args, *process_args], cwd)
    deadline = time.time() + 120
    while not claims_db.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    here = run_here([*args, "--config-dir", str(TEST_CONF)], cwd=cwd)
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err[-3000:]
    assert here.returncode == 0, here.stderr[-3000:]
    return "\n".join([out, err, here.stdout, here.stderr])


def _check_once_each(uri, n_configs=2, n_seeds=4, experiment="hte-bench"):
    runs = all_runs(uri, experiment)
    assert not [r.info.run_name for r in runs if r.info.status == "RUNNING"]
    parents = [r for r in runs if r.data.tags.get("hte_bench.kind") == "config"]
    assert Counter(p.data.tags["config_hash"] for p in parents) == Counter(
        {h: 1 for h in {p.data.tags["config_hash"] for p in parents}}) and len(parents) == n_configs
    seeds = [r for r in runs if r.data.tags.get("hte_bench.kind") == "seed"]
    pairs = Counter((r.data.tags["config_hash"], r.data.tags["seed"]) for r in seeds)
    assert len(pairs) == n_configs * n_seeds and set(pairs.values()) == {1}, pairs  # fitted once, by either
    assert all(r.info.status == "FINISHED" for r in seeds)
    by_id = {p.info.run_id: p for p in parents}
    assert all(r.data.tags["mlflow.parentRunId"] in by_id for r in seeds)  # no orphan second parent
    assert all(p.info.status == "FINISHED" and p.data.metrics["n_seeds_ok"] == n_seeds for p in parents)
    return runs


def test_two_identical_sweeps_at_once_fit_each_seed_once(tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlruns' / 'mlflow.db'}"
    # On a new store: they also take turns creating it. The process runs its jobs in parallel worker
    # processes (joblib launcher): parallel writers to one SQLite store, none locked out.
    out = _two_at_once(SWEEP, tmp_path, tmp_path / "mlruns" / "coordination.db",
                       process_args=["hydra/launcher=joblib", "hydra.launcher.n_jobs=2"])
    runs = _check_once_each(uri)
    assert "database is locked" not in out
    sweeps = [r for r in runs if r.data.tags.get("hte_bench.kind") == "sweep"]
    assert len(sweeps) == 2 and all(r.info.status == "FINISHED" for r in sweeps)
    assert (tmp_path / "mlruns" / "coordination.db").exists()
    with sqlite3.connect(tmp_path / "mlruns" / "coordination.db") as con:  # nothing left claimed
        assert con.execute("select count(*) from hte_bench_claims").fetchone()[0] == 0
    assert "being fitted by" in out or "already finished" in out


def test_two_identical_sweeps_at_once_against_a_tracking_server(tmp_path, mlflow_server):
    coordination = f"sqlite:///{tmp_path / 'coordination.db'}"
    experiment = "claims_server"  # the server is the session's: this test's runs are this experiment's
    args = [*SWEEP, f"tracking.uri={mlflow_server}", f"tracking.experiment={experiment}",
            f"tracking.coordination_uri={coordination}"]
    _two_at_once(args, tmp_path, tmp_path / "coordination.db")
    _check_once_each(mlflow_server, experiment=experiment)


def test_a_tracking_server_without_a_coordination_uri_warns_and_runs_uncoordinated(tmp_path):
    # No claims database can be derived from a server's URL: one warning, then the run goes on (here it
    # meets no server at all and stops on that, in one line). In this process: its output is the subject.
    proc = run_here(["estimator=interaction_ols", "n_seeds=1", *LEAN, "tracking.uri=http://127.0.0.1:9"], tmp_path)
    out, err = proc.stdout, proc.stderr
    assert proc.returncode == 2
    assert "runs against http://127.0.0.1:9 are not coordinated" in out + err
    assert [line for line in err.splitlines() if line.startswith("hte-bench: error:")] == \
        [line for line in err.splitlines() if line.strip() and "WARNING" not in line and "not coordinated" not in line]
    assert "no MLflow server answers there" in err
    assert not (tmp_path / "mlruns" / "coordination.db").exists()


def test_a_seed_run_that_finishes_while_its_parent_is_read_is_not_closed_killed(store, tmp_path):
    # The CI flake, replayed in order: a job reading a parent saw seed 2's run RUNNING (another process was
    # writing it); that process then finished the run and released its claim; the job, finding no claim,
    # closed the run KILLED, so seed 2 looked undone and was fitted a second time.
    from hte_bench.tracking import Tracker
    from hte_bench.tracking.claims import Leases
    from hte_bench.tracking.shared import ConfigClaims, finished_seeds

    tracker = Tracker(store, "claims_race")
    url = f"sqlite:///{tmp_path / 'coordination.db'}"
    writer, reader = Leases(url, 60), Leases(url, 60)  # two holders, as two processes would be
    parent = tracker.start_parent("p", params={}, tags={})

    def child(seed):
        return tracker.client.create_run(tracker.experiment_id, tags={"mlflow.parentRunId": parent,
                                                                      "seed": str(seed)}).info.run_id

    assert writer.take("cfg", "2")[0]
    written, dead = child(2), child(3)  # seed 3's writer died: its run is RUNNING with no claim
    holdings = reader.holdings

    def writer_finishes_first(key):  # the writer's last two steps land between the job's two reads
        tracker.client.set_terminated(written, "FINISHED")
        writer.release("cfg", "2")
        return holdings(key)

    reader.holdings = writer_finishes_first
    done = finished_seeds(tracker, parent, [0, 1, 2, 3], ConfigClaims(reader, "cfg", "label"))
    assert tracker.client.get_run(written).info.status == "FINISHED" and list(done) == [2]
    assert tracker.client.get_run(dead).info.status == "KILLED"


def test_only_sweeps_leased_in_this_claims_database_are_closed_as_expired(tmp_path, store):
    """A RUNNING sweep without a lease here is killed only if its lease would live here: one run without claims
    (or against another machine's claims database) may be alive, and is left alone."""
    from hte_bench.tracking import Tracker
    from hte_bench.tracking.claims import Leases, claims_tag
    from hte_bench.tracking.shared import close_expired_sweeps

    tracker = Tracker(store, "expired_sweeps")
    here, elsewhere = Leases(f"sqlite:///{tmp_path / 'a.db'}", 0.5), Leases(f"sqlite:///{tmp_path / 'b.db'}", 0.5)
    dead = tracker.start_sweep([], "s", "m", claims=claims_tag(here))  # killed before it took its lease
    unclaimed = tracker.start_sweep([], "s", "m", claims=claims_tag(None))
    other = tracker.start_sweep([], "s", "m", claims=claims_tag(elsewhere))
    time.sleep(1)
    close_expired_sweeps(tracker, here)
    status = {run_id: tracker.client.get_run(run_id).info.status for run_id in (dead, unclaimed, other)}
    assert status == {dead: "KILLED", unclaimed: "RUNNING", other: "RUNNING"}
