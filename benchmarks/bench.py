"""Speed and memory of hte-bench, as ratios measured in one run on this machine.

    python benchmarks/bench.py                 # OLS and forest overhead, shared nuisances, parallel, grid, --help
    python benchmarks/bench.py --only ols,forest,sweep   # the goals of issue 11 only
    python benchmarks/bench.py --only big      # one seed of a causal forest at n = 100 000
    python benchmarks/bench.py --seeds 10      # more seeds: steadier ratios, longer run

Every timing is the wall time of a whole command (a fresh process, imports included), as a user sees it;
each ratio divides two commands run one after the other in this run (harness ÷ bare library loop).
"""
from __future__ import annotations

import argparse
import math
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
EXE = shutil.which("hte-bench") or "hte-bench"


LAST_CPU: list[float] = []  # CPU seconds of the last timed command and the processes it waited for


def timed(cmd: list[str], cwd: Path) -> float:
    """Wall seconds of one command (its CPU seconds, worker processes included, go to LAST_CPU); fails loudly."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True,
                          env={**os.environ, "MLFLOW_TRACKING_URI": ""})
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        sys.exit(f"benchmark command failed: {' '.join(cmd)}\n{proc.stderr[-3000:]}")
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    LAST_CPU[:] = [(after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)]
    return wall


def last_cpu() -> str:
    """' (CPU x s)' of the last timed command: on 2 cores, the harness's CPU ÷ 2 bounds its wall time."""
    return f" (CPU {LAST_CPU[0]:.1f} s)" if LAST_CPU else ""


def hte(args: list[str], cwd: Path, store: str) -> float:
    """Wall seconds of one hte-bench command into its own store folder (so no run reads another's cache).

    The store's tables are created before the clock starts: MLflow's migrations (≈ 3 s, once per store, not
    per seed) are no part of the per-seed cost these ratios measure."""
    folder = cwd / Path(store).stem
    folder.mkdir(parents=True, exist_ok=True)
    (cwd / store).symlink_to(folder / "mlflow.db")  # child_metrics() and sweep() read cwd / store
    subprocess.run([sys.executable, "-c", "import sys; from mlflow import MlflowClient; "
                    "MlflowClient(tracking_uri=sys.argv[1]).search_experiments(max_results=1)",
                    f"sqlite:///{folder / 'mlflow.db'}"], check=True, capture_output=True)
    return timed([EXE, *args, f"tracking.uri=sqlite:///{folder / 'mlflow.db'}", "hydra.run.dir=hydra",
                  "hydra.sweep.dir=hydra_sweep"], cwd)


def child_metrics(uri: str) -> dict:
    """(config_hash, seed) -> metrics without timings, to check that two runs computed the same numbers."""
    from mlflow import MlflowClient

    c = MlflowClient(tracking_uri=uri)
    exp = c.get_experiment_by_name("hte-bench")
    runs = c.search_runs([exp.experiment_id], "tags.`hte_bench.kind` = 'seed'", max_results=5000)
    return {(r.data.tags["config_hash"], r.data.tags["seed"]):
            {k: v for k, v in r.data.metrics.items() if not k.endswith("_seconds")} for r in runs}


def same(a: dict, b: dict) -> bool:
    def eq(x, y):
        return x == y or (math.isnan(x) and math.isnan(y))
    return a.keys() == b.keys() and all(eq(a[k][m], b[k][m]) for k in a for m in a[k])


def ols(work: Path, seeds: int, n: int) -> list[tuple]:
    """Goal 1: many seeds of a cheap estimator, hte-bench defaults ÷ the bare statsmodels loop."""
    bare = timed([sys.executable, str(HERE / "bare_statsmodels.py"), str(seeds), str(n)], work)
    bare_cpu = last_cpu()
    full = hte(["estimator=interaction_ols", f"n_seeds={seeds}", f"data.n={n}", f"data.n_test={n}"], work,
               "ols.db")
    full_cpu = last_cpu()
    # The floor: no model-fitting analyses, no figures: the metrics, importance, files and one MLflow run a seed.
    floor = hte(["estimator=interaction_ols", f"n_seeds={seeds}", f"data.n={n}", f"data.n_test={n}",
                 "analyses.seeds=0", "tracking.plots=false"], work, "ols_floor.db")
    return [("0. interaction_ols: hte-bench defaults ÷ bare statsmodels", f"{seeds} seeds, engagement n={n}",
             f"{full:.1f} s{full_cpu} ÷ {bare:.1f} s{bare_cpu}", full / bare, "≤ 3"),
            ("0b. the same, analyses.seeds=0 tracking.plots=false ÷ bare", "metrics, importance, files, MLflow",
             f"{floor:.1f} s{last_cpu()} ÷ {bare:.1f} s{bare_cpu}", floor / bare, "(no goal)")]


def overhead(work: Path, seeds: int, n: int, lean_too: bool = True) -> list[tuple]:
    """Goal 2: the causal forest, hte-bench defaults ÷ a bare econml loop (econml's default n_jobs=-1)."""
    bare = timed([sys.executable, str(HERE / "bare_econml.py"), str(seeds), str(n), "1000"], work)
    base = ["estimator=causal_forest_dml", f"n_seeds={seeds}", f"data.n={n}", f"data.n_test={n}"]
    # The bare script fits and predicts; the harness also measures against the truth, runs importance,
    # insights and the truth-free validation analyses, draws the first seeds' figures and logs to MLflow.
    full = hte(base, work, "overhead_full.db")
    rows = [("1a. causal forest: hte-bench defaults ÷ bare econml", f"{seeds} seeds, n={n}, 1000 trees",
             f"{full:.1f} s ÷ {bare:.1f} s", full / bare, "≤ 1.10")]
    if lean_too:
        lean = hte([*base, "analyses.truth_free=false", "tracking.plots=false"], work, "overhead_lean.db")
        rows.append(("1b. hte-bench, truth-free and plots off ÷ bare econml", "importance and insights stay on",
                     f"{lean:.1f} s ÷ {bare:.1f} s", lean / bare, "(no goal)"))
    return rows


def sweep(work: Path, seeds: int, n: int) -> list[tuple]:
    """Goal 3: a 6-estimator sweep fits the analyses' DR nuisances once per seed, not once per configuration."""
    import sqlite3

    estimators = "interaction_ols,constant_effect,zero_effect,s_learner,t_learner,linear_dml"
    wall = hte(["-m", f"estimator={estimators}", f"n_seeds={seeds}", f"data.n={n}", f"data.n_test={n}",
                "analyses.truth_free=false", "tracking.plots=false"], work, "sweep.db")
    with sqlite3.connect(work / "sweep.db") as con:
        counts = dict(con.execute("select value, count(*) from tags where key = 'dr_nuisances_cached' "
                                  "group by value").fetchall())
    fitted, reused = counts.get("false", 0), counts.get("true", 0)
    return [("2b. DR nuisances in a 6-estimator sweep", f"{seeds} seeds, n={n}; {wall:.0f} s",
             f"fitted {fitted}, from cache {reused}", fitted / seeds, "fits per seed = 1")]


def parallel(work: Path, seeds: int, n: int) -> list[tuple]:
    args = ["estimator=causal_forest_dml", f"n_seeds={seeds}", f"data.n={n}", f"data.n_test={n}",
            "analyses.truth_free=false", "tracking.cache=false"]
    serial = hte([*args, "n_jobs=1"], work, "serial.db")
    par = hte([*args, "n_jobs=2"], work, "parallel.db")
    ok = same(child_metrics(f"sqlite:///{work / 'serial.db'}"), child_metrics(f"sqlite:///{work / 'parallel.db'}"))
    return [("2. seeds in parallel: serial ÷ n_jobs=2", f"{seeds} seeds; identical metrics: {ok}",
             f"{serial:.1f} s ÷ {par:.1f} s", serial / par, "≥ 1.7")]


def grid(work: Path, seeds: int, n: int) -> list[tuple]:
    rows = []
    for label, extra in (("default nuisance (RF 100 trees)", []),
                         ("heavier nuisance (RF 500 trees)", ["++outcome_model.n_estimators=500"])):
        args = ["-m", "grid=causal_forest_leaf_depth", f"n_seeds={seeds}", f"data.n={n}", f"data.n_test={n}",
                "estimator.model.n_estimators=400", "analyses.truth_free=false", *extra]
        tag = "heavy" if extra else "default"
        without = hte([*args, "nuisance_cache=0"], work, f"grid_{tag}_off.db")
        with_reuse = hte(args, work, f"grid_{tag}_on.db")
        ok = same(child_metrics(f"sqlite:///{work / f'grid_{tag}_off.db'}"),
                  child_metrics(f"sqlite:///{work / f'grid_{tag}_on.db'}"))
        rows.append(("3. 6-point CF grid: no reuse ÷ nuisance reuse", f"{label}, {seeds} seeds; identical: {ok}",
                     f"{without:.1f} s ÷ {with_reuse:.1f} s", without / with_reuse, "≥ 2"))
    return rows


def help_startup(work: Path) -> list[tuple]:
    times = [timed([EXE, "--help"], work) for _ in range(5)]
    med = statistics.median(times)
    return [("4. hte-bench --help start-up ÷ 1.5 s goal", "median of 5", f"{med:.2f} s", med / 1.5, "≤ 1.0")]


def big(work: Path) -> list[tuple]:
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    wall = hte(["estimator=causal_forest_dml", "n_seeds=1", "data.n=100000", "data.n_test=10000",
                "analyses.truth_free=false"], work, "big.db")
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss  # KiB on Linux, largest child so far
    return [("5. causal forest, n = 100 000, one seed", f"peak RSS {max(peak, before) / 2**20:.1f} GiB",
             f"{wall:.0f} s", float("nan"), "completes")]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=6)
    parser.add_argument("--n", type=int, default=1000)
    parser.add_argument("--ols-seeds", type=int, default=200)
    parser.add_argument("--forest-seeds", type=int, default=5)
    parser.add_argument("--no-lean", action="store_true", help="skip the forest with analyses trimmed")
    parser.add_argument("--only", default="ols,overhead,sweep,parallel,grid,help",
                        help="comma list of: ols, overhead (the forest), sweep, parallel, grid, help, big")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="hte-bench-bench-"))
    steps = {"ols": lambda: ols(work, args.ols_seeds, args.n),
             "overhead": lambda: overhead(work, args.forest_seeds, args.n, not args.no_lean),
             "sweep": lambda: sweep(work, max(2, args.seeds // 2), args.n),
             "parallel": lambda: parallel(work, 2 * args.seeds, args.n),
             "grid": lambda: grid(work, max(2, args.seeds // 3), args.n),
             "help": lambda: help_startup(work), "big": lambda: big(work)}
    rows = []
    for name in args.only.split(","):
        new = steps[{"forest": "overhead"}.get(name.strip(), name.strip())]()
        rows += new
        print(f"done: {name}: {new}", file=sys.stderr, flush=True)
    print("\n| measure | setting | times | ratio | goal |\n|---|---|---|---|---|")
    for measure, setting, times, ratio, goal in rows:
        print(f"| {measure} | {setting} | {times} | {'–' if math.isnan(ratio) else f'{ratio:.2f}'} | {goal} |")
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
