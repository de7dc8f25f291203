"""The tracking store: one-line errors a new user hits, SQLite URI parsing, resume across code versions."""
import logging
import socket
import time
from pathlib import Path

import pytest

from conftest import all_runs, client, compose, run_composed
from hte_bench.errors import ConfigError
from hte_bench.tracking import Tracker
from hte_bench.tracking.store import code_version, resume_versions, source_hash, sqlite_path
from in_process import run_here

TINY = ["estimator=interaction_ols", "data.n=200", "data.n_test=100", "analyses.truth_free=false",
        "analyses.subgroups=false", "tracking.plots=false", "importance_repeats=1", "n_jobs=1"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _error_lines(proc):
    return [line for line in proc.stderr.splitlines() if line.startswith("hte-bench: error:")]


def _nothing_stored(cwd: Path) -> bool:
    """No store and no artifacts: only Hydra's own log folder may exist under mlruns/."""
    return not (cwd / "mlruns").exists() or [p.name for p in (cwd / "mlruns").iterdir()] == ["hydra"]


@pytest.mark.parametrize("uri_of, expected", [
    (lambda tmp: f"http://127.0.0.1:{_free_port()}",
     "no MLflow server answers there within 10 s (connection refused); start one with "
     "'mlflow server --host 127.0.0.1 --port "),
    (lambda tmp: f"sqlite:///{tmp / 'a_file'}/x.db", "a_file is a file, not a folder; name a database file"),
], ids=["dead-server", "file-as-folder"])
def test_unusable_store_is_one_line_fast_and_writes_nothing(tmp_path, uri_of, expected):
    (tmp_path / "a_file").write_text("not a folder")
    uri = uri_of(tmp_path)
    start = time.monotonic()
    proc = run_here([*TINY, "n_seeds=1", f"tracking.uri={uri}"], cwd=tmp_path)  # a process: test_new_user.py
    elapsed = time.monotonic() - start
    assert proc.returncode == 2
    lines = _error_lines(proc)
    assert len(lines) == 1 and f"tracking.uri={uri!r}: " in lines[0] and expected in lines[0], proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr and "Retrying" not in proc.stderr
    assert elapsed <= 12, f"took {elapsed:.1f} s"
    assert _nothing_stored(tmp_path)


def test_a_server_that_never_answers_fails_after_tracking_timeout():
    # Accepts connections (the kernel's backlog) but never replies, like a hung server.
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(4)
        uri = f"http://127.0.0.1:{listener.getsockname()[1]}"
        start = time.monotonic()
        with pytest.raises(ConfigError, match=r"within 1 s \(timed out\).*tracking.timeout sets the wait"):
            Tracker.from_config({"uri": uri, "experiment": "x", "timeout": 1})
        assert time.monotonic() - start < 5


@pytest.mark.parametrize("timeout", [0, -3, "soon", True])
def test_timeout_must_be_positive_seconds(timeout):
    with pytest.raises(ConfigError, match=r"^tracking.timeout=.* is not allowed; tracking.timeout must be seconds > 0"):
        Tracker.from_config({"uri": "sqlite:///unused.db", "experiment": "x", "timeout": timeout})


def test_a_new_sqlite_store_is_announced_once(tmp_path, caplog):
    db = tmp_path / "new" / "dir" / "mlflow.db"
    with caplog.at_level(logging.INFO, logger="hte_bench.tracking"):
        Tracker.from_config({"uri": f"sqlite:///{db}", "experiment": "x"})
        Tracker.from_config({"uri": f"sqlite:///{db}", "experiment": "x"})
    notes = [r.getMessage() for r in caplog.records if "new MLflow store" in r.getMessage()]
    assert notes == [f"tracking: creating a new MLflow store at {db}"] and db.is_file()


def test_a_file_that_is_not_sqlite_is_refused(tmp_path):
    (tmp_path / "notes.db").write_text("hello")
    with pytest.raises(ConfigError, match="notes.db exists and is not a SQLite database"):
        Tracker.from_config({"uri": f"sqlite:///{tmp_path / 'notes.db'}", "experiment": "x"})


@pytest.mark.parametrize("uri, path", [
    ("sqlite:///mlruns/mlflow.db", "mlruns/mlflow.db"),
    ("sqlite:////abs/dir/x.db", "/abs/dir/x.db"),
    ("sqlite+pysqlite:///rel.db?timeout=5", "rel.db"),
    ("sqlite:///:memory:", None), ("sqlite://", None), ("http://127.0.0.1:5000", None), (None, None),
])
def test_sqlite_path(uri, path):
    assert sqlite_path(uri) == (Path(path) if path else None)


def test_code_version_names_the_source_and_resume_matches_the_source_hash():
    version = code_version()
    assert "+dirty." in version or "+src." in version or len(version) == 12
    # Not the commit: one that changes docs or tests only must not stop a study from resuming.
    assert resume_versions()["code_hash"] == source_hash() and "code_version" not in resume_versions()


def _parents(uri):
    return [r for r in all_runs(uri, "hte-bench") if r.data.tags.get("hte_bench.kind") == "config"]


def test_resume_joins_only_a_parent_of_the_same_sources_and_libraries(store, caplog):
    args = [*TINY, f"tracking.uri={store}"]
    first = run_composed([*args, "n_seeds=2"])["_parent_run_id"]
    assert client(store).get_run(first).data.tags["code_version"] == code_version()
    # A later commit that changed docs or tests only (same sources): the configuration resumes.
    client(store).set_tag(first, "code_version", "0123456789ab")
    assert run_composed([*args, "n_seeds=2"])["_parent_run_id"] == first and len(_parents(store)) == 1
    # As if fitted by an older checkout with another econml.
    for key, value in (("code_version", "0123456789ab"), ("code_hash", "fedcba9876"), ("version.econml", "0.0.1")):
        client(store).set_tag(first, key, value)

    forced = run_composed([*args, "n_seeds=3", "resume=force"])
    assert forced["_parent_run_id"] == first and forced["n_seeds_ok"] == 3
    kids = [r for r in all_runs(store, "hte-bench") if r.data.tags.get("mlflow.parentRunId") == first]
    assert sorted(r.data.tags["seed"] for r in kids) == ["0", "1", "2"]
    assert {r.data.tags["code_version"] for r in kids} == {code_version()}

    with caplog.at_level(logging.WARNING, logger="hte_bench.runner"):
        fresh = run_composed([*args, "n_seeds=2"])
    assert fresh["_parent_run_id"] != first and len(_parents(store)) == 2
    notes = [r.getMessage() for r in caplog.records if r.getMessage().startswith("resume:")]
    econml = resume_versions()["version.econml"]
    assert notes == [f"resume: run {first} was fitted with code 0123456789ab (source fedcba9876)/econml 0.0.1, "
                     f"now code {code_version()} (source {source_hash()})/econml {econml}; starting a new parent "
                     "(resume=force joins it anyway)"]
    # The new parent matches this code: a rerun resumes it, silently.
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="hte_bench.runner"):
        again = run_composed([*args, "n_seeds=2"])
    assert again["_parent_run_id"] == fresh["_parent_run_id"] and len(_parents(store)) == 2
    assert not [r for r in caplog.records if r.getMessage().startswith("resume:")]


def test_an_edited_adapter_of_the_users_is_refitted_not_resumed(store, user_module, caplog):
    # The user's own adapter is hashed like hte_bench's sources: edited, its seeds are refitted (a new parent
    # of the same configuration), never kept from the old code. Libraries' files are not: their versions are.
    from hte_bench import config as C

    module = user_module("my_adapter", "from hte_bench.estimators.baselines import ZeroEffect\n\n"
                                       "class Mine(ZeroEffect):\n    pass\n")
    args = [*TINY, "estimator=zero_effect", "estimator._target_=my_adapter.Mine", f"tracking.uri={store}", "n_seeds=1"]
    first = run_composed(args)["_parent_run_id"]
    tag = client(store).get_run(first).data.tags["user_code_hash"]
    assert run_composed(args)["_parent_run_id"] == first  # unchanged: resumed
    module.write_text(module.read_text() + "    # edited\n")
    with caplog.at_level(logging.WARNING, logger="hte_bench.runner"):
        second = run_composed(args)["_parent_run_id"]
    assert second != first and client(store).get_run(second).data.tags["user_code_hash"] != tag
    assert any(f"run {first} was fitted with user_code_hash {tag}, now user_code_hash" in r.getMessage()
               for r in caplog.records)
    assert C.config_hash(compose(args)) == client(store).get_run(first).data.tags["config_hash"]  # same configuration
    # Only the user's code: econml's, scikit-learn's and hte_bench's files are never read for it.
    assert C.user_code_hash(compose(["estimator=linear_dml"])) == ""
    # A target that is a class's method names the class's module (a generator's file too).
    assert C.module_file("my_adapter.Mine.fit") == module and C.user_file("econml.dml.LinearDML") is None
    from hte_bench.data.conditions import source_hash as data_source

    assert data_source({"_target_": "my_adapter.Mine.fit"}) != ""
    # A registered model of it ships the user's module and requires the libraries its estimator comes from.
    assert C.model_dependencies(compose(args)) == ([], [str(module)])
    assert "DoubleML" in C.model_dependencies(compose(["estimator=doubleml_irm"]))[0]
    assert "econml" in C.model_dependencies(compose(["estimator=linear_dml"]))[0]


def test_seeds_fitted_under_another_version_of_the_estimators_library_are_not_resumed(store, caplog):
    # DoubleML, CausalML, LightGBM… are resume keys too (beyond econml/scikit-learn/statsmodels/numpy): an
    # upgrade refits instead of mixing seeds of two versions in one configuration.
    import importlib.metadata

    from hte_bench import config as C

    args = [*TINY, "estimator=causalml_s_learner", f"tracking.uri={store}", "n_seeds=1"]
    first = run_composed(args)["_parent_run_id"]
    now = f"causalml={importlib.metadata.version('causalml')}"
    assert client(store).get_run(first).data.tags["library_versions"] == now
    assert run_composed(args)["_parent_run_id"] == first
    client(store).set_tag(first, "library_versions", "causalml=0.0.1")
    with caplog.at_level(logging.WARNING, logger="hte_bench.runner"):
        assert run_composed(args)["_parent_run_id"] != first
    assert any(f"run {first} was fitted with library_versions causalml=0.0.1, now library_versions {now}"
               in r.getMessage() for r in caplog.records)
    assert C.library_versions(compose(["estimator=doubleml_irm"])).startswith("doubleml=")
    assert C.library_versions(compose(["estimator=linear_dml"])) == ""  # econml's version is a key already


def test_resume_must_be_true_false_or_force(store):
    with pytest.raises(ConfigError, match=r"^resume='sometimes' is not allowed; resume must be true, false or force$"):
        run_composed([*TINY, "n_seeds=1", f"tracking.uri={store}", "resume=sometimes"])


def test_a_dataset_row_created_by_another_writer_meanwhile_is_retried_not_fatal(store):
    # CI, Ray launcher: two configurations logged seed 1's data draw at once; both found no dataset row, the
    # second insert broke MLflow's unique key and failed its whole job. The error as the store raises it:
    import sqlite3

    from mlflow.entities import Dataset, DatasetInput

    from hte_bench.tracking.store import is_duplicate_dataset

    tracker = Tracker(store, "datasets")
    run = tracker.client.create_run(tracker.experiment_id).info.run_id
    tracker.client.log_inputs(run, [DatasetInput(Dataset(name="engagement-seed1", digest="d1", source_type="code",
                                                         source="{}"))])
    db = sqlite_path(store)
    with sqlite3.connect(db) as con, pytest.raises(sqlite3.IntegrityError) as raised:
        con.execute("insert into datasets (dataset_uuid, experiment_id, name, digest, dataset_source_type, "
                    "dataset_source) select 'x', experiment_id, name, digest, dataset_source_type, dataset_source "
                    "from datasets")
    assert is_duplicate_dataset("log_inputs", raised.value)
    assert not is_duplicate_dataset("log_batch", raised.value)  # only a dataset's get-or-create is retried
