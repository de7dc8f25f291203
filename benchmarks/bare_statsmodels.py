"""The baseline of the OLS benchmark: the same interaction OLS fits as hte-bench, bare, in one process.

Per seed: draw the engagement data, fit ``Y ~ T * (age + engagement)`` with statsmodels' formula API, and
compute the CATE contrasts with their pointwise intervals on both splits and the ATE — what hte-bench's
InteractionOLS computes before its metrics, analyses and logging.
"""
import sys
import time

import numpy as np
import statsmodels.formula.api as smf
from scipy import stats

from hte_bench.data import engagement


def main(n_seeds: int, n: int) -> None:
    t0 = time.perf_counter()
    for seed in range(n_seeds):
        data, _ = engagement.generate(seed=seed, n=n, n_test=n)
        df = data.X_train.assign(T=np.asarray(data.T_train, float), Y=np.asarray(data.Y_train, float))
        features = list(data.X_train.columns)
        res = smf.ols(f"Y ~ T * ({' + '.join(features)})", data=df).fit()
        names, beta, V = list(res.params.index), res.params.to_numpy(), np.asarray(res.cov_params())
        q = stats.t.ppf(0.975, res.df_resid)
        for split, X in (("train", data.X_train), ("test", data.X_test)):
            C = np.zeros((len(X), len(names)))
            C[:, names.index("T")] = 1.0
            for f in features:
                C[:, names.index(f"T:{f}")] = X[f].to_numpy(float)
            tau, se = C @ beta, np.sqrt(np.einsum("ij,jk,ik->i", C, V, C))
            tau - q * se, tau + q * se
            if split == "train":  # the ATE: the contrast at the mean training row
                c = C.mean(axis=0)
                c @ beta, np.sqrt(c @ V @ c)
    print(f"bare statsmodels: {n_seeds} seeds in {time.perf_counter() - t0:.1f} s", file=sys.stderr)


if __name__ == "__main__":
    main(int(sys.argv[1]), int(sys.argv[2]))
