"""Coverage of per-unit CATE intervals and of the modifier slopes, per estimator, over many seeds.

    python benchmarks/slope_coverage.py --estimators linear_dml,interaction_ols --seeds 100 --n-jobs 2

Every number comes from a real fit through the harness's own pieces (config → generator → adapter →
metrics), one fit per estimator and seed: the per-unit interval coverage is the metric the runner logs
(``cate_coverage_*``); the slope of each feature is the adapter's coefficient inference (the table its
insights are written from), checked against the generator's true slope.
"""
from __future__ import annotations

import argparse
import sys

import pandas as pd

# True CATE slopes of the engagement generator (tau = 2 + 3·heterogeneity·engagement).
TRUE_SLOPES = {"engagement": 3.0, "age": 0.0}


def compose(overrides: list[str]):
    """The config ``hte-bench`` would build from these overrides."""
    from hydra import compose as hydra_compose, initialize_config_dir

    from hte_bench.cli.run import conf_dir

    with initialize_config_dir(str(conf_dir()), version_base="1.3"):
        return hydra_compose("config", overrides=overrides)


def one(estimator: str, seed: int, overrides: list[str], alpha: float) -> dict:
    """Fit one estimator on one seed; per-unit coverage on both splits and each slope's interval."""
    from hte_bench.evaluation.metrics import interval_coverage
    from hte_bench.seed import make_data, make_estimator

    cfg = compose([f"estimator={estimator}", f"alpha={alpha}", *overrides])
    ds, truth = make_data(cfg, seed)
    adapter = make_estimator(cfg, seed).fit(ds.X_train, ds.T_train, ds.Y_train)
    row = {"estimator": estimator, "seed": seed}
    for split, X, tau in (("train", ds.X_train, truth.tau_train), ("test", ds.X_test, truth.tau_test)):
        lo, hi = adapter.effect_interval(X, alpha)
        row[f"cate_coverage_{split}"] = interval_coverage(tau, lo, hi)
    # The adapters' coefficient tables (econml's coef__inference; statsmodels' T:x contrasts).
    table = adapter._coef_table(alpha) if hasattr(adapter, "_coef_table") else adapter._interaction_table(alpha)
    for feature, true in TRUE_SLOPES.items():
        est, lo, hi = table.loc[feature, ["point_estimate", "ci_lower", "ci_upper"]].astype(float)
        row.update({f"{feature}_slope": est, f"{feature}_lo": lo, f"{feature}_hi": hi,
                    f"{feature}_covered": float(lo <= true <= hi)})
    return row


def summarise(rows: pd.DataFrame, alpha: float) -> pd.DataFrame:
    """Per estimator: mean per-unit coverage (t-interval over seeds), slope coverage (Wilson), mean slope."""
    from statsmodels.stats.proportion import proportion_confint

    from hte_bench.compare.study import t_interval

    out = []
    for name, g in rows.groupby("estimator", sort=False):
        rec = {"estimator": name, "seeds": len(g)}
        for split in ("train", "test"):
            m, lo, hi, _ = t_interval(g[f"cate_coverage_{split}"])
            rec[f"cate_coverage_{split}"] = f"{m:.3f} [{lo:.3f}, {hi:.3f}]"
        for feature in TRUE_SLOPES:
            k, n = int(g[f"{feature}_covered"].sum()), len(g)
            lo, hi = proportion_confint(k, n, alpha=alpha, method="wilson")
            rec[f"{feature}_slope_coverage"] = f"{k / n:.2f} [{lo:.2f}, {hi:.2f}]"
            m, lo, hi, _ = t_interval(g[f"{feature}_slope"])
            rec[f"{feature}_slope_mean"] = f"{m:.3f} [{lo:.3f}, {hi:.3f}]"
            rec[f"{feature}_slope_sd"] = f"{g[f'{feature}_slope'].std():.3f}"
            rec[f"{feature}_ci_halfwidth"] = f"{((g[f'{feature}_hi'] - g[f'{feature}_lo']) / 2).mean():.3f}"
        out.append(rec)
    return pd.DataFrame(out).set_index("estimator").T


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--estimators", default="linear_dml,interaction_ols")
    p.add_argument("--seeds", type=int, default=100)
    p.add_argument("--n-jobs", type=int, default=2)
    p.add_argument("--alpha", type=float, default=0.05)
    p.add_argument("--out", default="coverage_per_seed.csv")
    p.add_argument("overrides", nargs="*", help="Hydra overrides, e.g. data.n=2000")
    args = p.parse_args(argv)
    from joblib import Parallel, delayed

    jobs = [(e, s) for e in args.estimators.split(",") for s in range(args.seeds)]
    rows = Parallel(n_jobs=args.n_jobs)(delayed(one)(e, s, args.overrides, args.alpha) for e, s in jobs)
    frame = pd.DataFrame(rows)
    frame.to_csv(args.out, index=False)
    print(f"engagement, seeds 0-{args.seeds - 1}, level {1 - args.alpha:.0%}; per-unit coverage: mean over seeds "
          f"[95% t-interval]; slope coverage: share of seeds [Wilson interval]; per seed rows in {args.out}")
    print(summarise(frame, args.alpha).to_string())


if __name__ == "__main__":
    sys.exit(main())
