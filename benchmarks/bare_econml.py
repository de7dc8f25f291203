"""The baseline for the overhead benchmark: the same causal-forest fits as hte-bench, bare, in one process.

Per seed: draw the engagement data, fit CausalForestDML with the harness's default settings, and compute
effects and intervals on both splits and the ATE interval — what hte-bench computes before its metrics.
``n_jobs`` is econml's default (-1: the forest's trees on every core), as a user's own loop would leave it;
``1`` pins one thread as hte-bench does per fit (it runs seeds in parallel processes instead).
"""
import sys
import time

from econml.dml import CausalForestDML
from sklearn.ensemble import RandomForestRegressor
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from hte_bench.data import engagement


def main(n_seeds: int, n: int, n_estimators: int, n_jobs: int = -1) -> None:
    t0 = time.perf_counter()
    for seed in range(n_seeds):
        data, _ = engagement.generate(seed=seed, n=n, n_test=n)
        X, Xt = data.X_train.to_numpy(float), data.X_test.to_numpy(float)
        est = CausalForestDML(model_t=make_pipeline(StandardScaler(), LogisticRegression()),
                              model_y=RandomForestRegressor(random_state=seed), n_estimators=n_estimators,
                              min_samples_leaf=10, max_depth=10, discrete_treatment=True, random_state=seed,
                              n_jobs=n_jobs)
        est.fit(data.Y_train, data.T_train, X=X, inference="auto")
        est.effect(X), est.effect(Xt)
        est.effect_interval(X, alpha=0.05), est.effect_interval(Xt, alpha=0.05)
        est.ate(X), est.ate_interval(X, alpha=0.05)
    print(f"bare econml: {n_seeds} seeds in {time.perf_counter() - t0:.1f} s", file=sys.stderr)


if __name__ == "__main__":
    main(*(int(a) for a in sys.argv[1:5]))
