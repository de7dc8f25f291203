"""Writes the files logged with each run (predictions, plots, tables, texts) into a local folder."""
from __future__ import annotations

import json
import math
import shutil
from pathlib import Path
from typing import Optional

import numpy as np
import pandas as pd
from omegaconf import DictConfig, OmegaConf


def seed_plots(cfg, seed: int) -> bool:
    """Whether this seed draws figures: ``tracking.plots`` true (every seed), false or 0 (none), or k (the
    first k seeds of the configuration's seed list)."""
    from hte_bench.config import on_first_seeds

    return on_first_seeds(cfg, "tracking.plots", seed)


def _save(fig, path: Path, title: str = "") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if title:  # a downloaded PNG still says which estimator on which data it shows
        own = fig.get_suptitle()  # e.g. the heatmap's: kept under the name
        fig.suptitle(f"{title}\n{own}" if own else title, fontsize="small", wrap=True)
    fig.savefig(path, dpi=100, bbox_inches="tight")


def predictions_columns(dataset, truth, est) -> dict[str, np.ndarray]:
    """One row per unit of both splits: truth, estimate, interval, propensity, observed T, Y and features."""
    n_train, n_test = len(dataset.X_train), len(dataset.X_test)

    def both(train, test) -> np.ndarray:
        # An absent array (no true tau, no interval) is a column of NaN, as a present one would be.
        return np.concatenate([np.full(n, np.nan) if a is None else np.asarray(a).ravel()
                               for a, n in ((train, n_train), (test, n_test))])

    columns = {"split": np.array(["train"] * n_train + ["test"] * n_test, dtype=object),
               "tau_true": both(truth.tau_train, truth.tau_test), "tau_hat": both(est.tau_hat_train, est.tau_hat_test),
               "tau_lower": both(est.lower_train, est.lower_test), "tau_upper": both(est.upper_train, est.upper_test),
               "propensity_true": both(truth.propensity_train, truth.propensity_test),
               "T": both(dataset.T_train, dataset.T_test), "Y": both(dataset.Y_train, dataset.Y_test)}
    for name in dataset.X_train.columns:
        columns[f"x_{name}"] = np.concatenate([dataset.X_train[name].to_numpy(), dataset.X_test[name].to_numpy()])
    return columns


def write_predictions(path: Path, dataset, truth, est) -> None:
    """predictions.parquet straight from the arrays: pandas' conversion cost more than the OLS fit it records."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.table(predictions_columns(dataset, truth, est)), path)


def write_seed(out: Path, dataset, truth, est, plots: bool = True, title: str = "") -> None:
    """Seed-run files of the fit itself: predictions.parquet, summary.txt and the truth-vs-estimate plots."""
    out = Path(out)
    write_predictions(out / "predictions.parquet", dataset, truth, est)
    if est.summary:
        (out / "summary.txt").write_text(est.summary)
    if not (plots and truth.known):  # both figures need the true tau
        return
    from hte_bench import plots as P

    _save(P.calibration_plot(truth.tau_test, est.tau_hat_test, title="Calibration on the test split"),
          out / "plots" / "calibration_test.png", title)
    _save(P.scatter_plot(truth.tau_test, est.tau_hat_test, est.lower_test, est.upper_test,
                         title="Estimated vs true tau (test)"), out / "plots" / "tau_scatter_test.png", title)


def write_report(out: Path, tables: dict, figures: dict, notes: list[str], texts: Optional[dict] = None,
                 title: str = "") -> None:
    """Files of the analyses: tables as CSV (keys may contain sub-folders), texts as given, figures under plots/."""
    out = Path(out)
    for name, table in tables.items():
        path = out / f"{name}.csv"
        path.parent.mkdir(parents=True, exist_ok=True)
        table.to_csv(path, index=not isinstance(table.index, pd.RangeIndex))
    for name, text in (texts or {}).items():
        if title and name.endswith(".md") and text.startswith("# "):  # a downloaded file says whose it is
            first, _, rest = text.partition("\n")
            text = f"{first}: {title}\n{rest}"
        (out / name).write_text(text)
    for name, fig in figures.items():
        _save(fig, out / "plots" / name, title)
    if notes:
        (out / "analysis_notes.txt").write_text("\n".join(notes) + "\n")


def _jsonable(d: dict) -> dict:
    return {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in d.items()}


def write_parent(out: Path, cfg: DictConfig, per_seed: pd.DataFrame, summary: dict, failed: list[int],
                 job_log: Optional[str], plots: bool = True, title: str = "", interval: str = "ATE interval") -> None:
    """Parent-run files: config.yaml, per_seed.csv, aggregate.json, the ATE-across-seeds plot (``interval``
    names its intervals' level and kind), the job log."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    # Interpolations kept: models' random_state stays ${seed}, so the file re-runs every seed as logged.
    composed = OmegaConf.to_container(cfg, resolve=False)
    composed.pop("hydra", None)
    (out / "config.yaml").write_text(OmegaConf.to_yaml(OmegaConf.create(composed)))
    per_seed.to_csv(out / "per_seed.csv", index=False)
    (out / "aggregate.json").write_text(json.dumps({**_jsonable(summary), "failed_seeds": failed}, indent=2))
    if job_log and Path(job_log).is_file():
        shutil.copy(job_log, out / Path(job_log).name)
    if plots and len(per_seed):
        from hte_bench import plots as P

        _save(P.ate_across_seeds_plot(per_seed, title=f"ATE estimate and {interval} per seed vs truth"),
              out / "ate_across_seeds.png", title)
