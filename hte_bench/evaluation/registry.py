"""The one table of metric metadata: name, direction or target, needs truth, split, level, headline, meaning.

Metrics, leaderboard, sweep callback, Optuna objective, promotion gates and UI curation all read it, so
adding a metric is one line here and one function where it is computed. Aggregates across seeds are
named ``<metric>_mean``, ``_std``, ``_ci_lower``, ``_ci_upper`` and inherit the metric's spec.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np

from hte_bench.errors import ConfigError

# How a metric is judged: lower or higher is better; "target" means closest to ``target`` is best
# (coverage aims at 1 - alpha: 100% means too wide); "info" is context, never ranked.
GOALS = ("lower", "higher", "target", "info")
AGG_STATS = ("mean", "std", "ci_lower", "ci_upper")


@dataclass(frozen=True)
class MetricSpec:
    """What one logged number means and how to judge it."""

    name: str
    goal: str
    needs_truth: bool
    split: str          # "train", "test", "both" or "-" (no split: times, counts)
    description: str
    level: str = "seed"  # "seed": per seed, aggregated on the configuration run; "config": only across seeds
    # Logged with mean and interval on configuration runs (≤ 40 metrics there, so the UI's charts stay
    # readable) and shown first on boards; every other aggregate stays in aggregate.json.
    headline: bool = False
    target: Optional[float | str] = None  # a number or "1-alpha"
    group: str = "core"  # core, interval, population, importance, insights, cost, validation, policy, oracle,
    #                      subgroups, interpretation, run
    # "package.module.function" computing the per-seed value from (truth, estimate); evaluate() calls it.
    # Built-in metrics are computed together in metrics.evaluate() and leave it empty.
    fn: Optional[str] = None
    # (low, high): the values the definition allows (a share, a correlation, an error); None: unbounded.
    # Boards flag interval bounds outside it (t-intervals on few seeds are not clipped).
    bounds: Optional[tuple[float, float]] = None
    # A configuration-level metric summarises a per-seed one: (that metric, "share") is the share of seeds where
    # it is 1 with a Wilson interval, (that metric, "rms") its root mean square, with no interval.
    of_seeds: Optional[tuple[str, str]] = None

    @property
    def rankable(self) -> bool:
        return self.goal != "info"

    @property
    def on_analysis_seeds(self) -> bool:
        """Computed by the analyses that fit models of their own, so only on the first ``analyses.seeds``
        seeds of a configuration (its run's tag ``analyses_seeds`` names them)."""
        return self.group in ANALYSIS_GROUPS

    def target_value(self, alpha: float = 0.05) -> float:
        """The numeric target (``1-alpha`` resolved)."""
        return 1.0 - alpha if self.target == "1-alpha" else float(self.target)

    def direction(self) -> str:
        """'lower', 'higher' or 'target=<value>' as people read it."""
        return f"target={self.target}" if self.goal == "target" else self.goal


def per_seed_source(name: str) -> str:
    """The per-seed metric behind ``name``: ``ate_covered`` for ``ate_coverage_rate``, ``ate_bias`` for
    ``ate_rmse``; the name itself for a per-seed metric (or one the registry does not know)."""
    spec = METRICS.get(name)
    return spec.of_seeds[0] if spec is not None and spec.of_seeds else name


def summarised_as(name: str) -> str:
    """How a metric is summarised across a configuration's seeds: ``share`` (of seeds; Wilson interval),
    ``rms`` (root mean square; no interval) or ``mean`` (t-interval of the mean)."""
    spec = METRICS.get(name)
    return spec.of_seeds[1] if spec is not None and spec.of_seeds else "mean"


def level_text(alpha: float) -> str:
    """An interval's level as people read it, from its alpha: ``95%``, ``97.5%`` (never rounded to ``98%``)."""
    return f"{100 * (1 - float(alpha)):g}%"


def levels_text(alphas) -> str:
    """The levels of several runs' intervals, e.g. ``90%/95%`` (``95%`` when there are none)."""
    return "/".join(sorted({level_text(a) for a in alphas})) or "95%"


def interval_words(name: str, level: str = "95%") -> str:
    """What the interval of ``name`` across seeds is, in words, at ``level`` (e.g. "95%")."""
    return {"share": f"{level} Wilson interval of the share of seeds",
            "rms": "root mean square over seeds (no interval)"}.get(summarised_as(name),
                                                                   f"{level} t-interval of the mean across seeds")


# Metric groups of the analyses that fit models of their own (evaluation/analyses.py FITTING).
ANALYSIS_GROUPS = ("insights", "validation", "policy", "oracle", "subgroups", "interpretation")


def on_analysis_seeds(name: str) -> bool:
    """Whether the registered metric ``name`` (or an aggregate of it) exists on the analysis seeds only
    (MetricSpec.on_analysis_seeds); False for a name the registry does not know."""
    spec = METRICS.get(split_name(name)[0]) or METRICS.get(name)
    return spec is not None and spec.on_analysis_seeds


def _specs(group: str, split: str, needs_truth: bool, rows: list[tuple]) -> list[MetricSpec]:
    """Rows of (name, goal, description[, options]) sharing group, split and needs_truth."""
    out = []
    for row in rows:
        name, goal, desc = row[:3]
        opts = row[3] if len(row) > 3 else {}
        out.append(MetricSpec(name=name, goal=goal, description=desc, group=group,
                              split=opts.pop("split", split), needs_truth=opts.pop("needs_truth", needs_truth),
                              **opts))
    return out


SHARE, CORR = (0.0, 1.0), (-1.0, 1.0)
NONNEG, AT_MOST_1 = (0.0, float("inf")), (float("-inf"), 1.0)  # errors, times, counts; R²-like scores
_ALL: list[MetricSpec] = [
    *_specs("core", "train", True, [
        ("ate_true", "info", "true average effect over the training sample"),
        ("ate_hat", "info", "estimated average effect over the training sample", {"needs_truth": False}),
        ("ate_bias", "target", "ATE estimate minus true ATE", {"target": 0.0, "headline": True}),
        ("cate_mse_train", "lower", "mean squared error of tau_hat, training units (PEHE²)", {"bounds": NONNEG}),
        ("cate_mse_test", "lower", "mean squared error of tau_hat, test units (PEHE²)",
         {"split": "test", "bounds": NONNEG}),
        ("cate_rmse_train", "lower", "√PEHE in sample", {"bounds": NONNEG}),
        ("cate_rmse_test", "lower", "√PEHE out of sample (the default ranking metric)",
         {"split": "test", "headline": True, "bounds": NONNEG}),
        ("calib_slope_test", "target", "slope of true tau on tau_hat (1 = calibrated)",
         {"split": "test", "target": 1.0, "headline": True}),
        ("calib_intercept_test", "target", "intercept of true tau on tau_hat", {"split": "test", "target": 0.0}),
        ("calib_rmse_test", "lower", "RMS gap of binned mean tau_hat vs mean tau",
         {"split": "test", "bounds": NONNEG}),
    ]),
    *_specs("interval", "train", True, [
        ("ate_ci_lower", "info", "lower end of the ATE interval (kind: tag ate_interval_kind)",
         {"needs_truth": False}),
        ("ate_ci_upper", "info", "upper end of the ATE interval", {"needs_truth": False}),
        ("ate_covered", "target", "1 if the ATE interval covers the true ATE",
         {"target": "1-alpha", "bounds": SHARE}),
        ("ate_ci_width", "info", "width of the ATE interval", {"needs_truth": False, "bounds": NONNEG}),
        ("cate_coverage_train", "target", "share of training units whose true tau is in their interval",
         {"target": "1-alpha", "bounds": SHARE}),
        ("cate_coverage_test", "target", "share of test units whose true tau is in their interval",
         {"split": "test", "target": "1-alpha", "headline": True, "bounds": SHARE}),
        ("cate_ci_width_train", "info", "mean per-unit interval width, training units",
         {"needs_truth": False, "bounds": NONNEG}),
        ("cate_ci_width_test", "info", "mean per-unit interval width, test units",
         {"needs_truth": False, "split": "test", "bounds": NONNEG}),
        ("ate_rmse", "lower", "root mean squared ATE error across seeds",
         {"level": "config", "headline": True, "bounds": NONNEG, "of_seeds": ("ate_bias", "rms")}),
        ("ate_coverage_rate", "target", "share of seeds whose ATE interval covers the true ATE (Wilson CI)",
         {"level": "config", "target": "1-alpha", "headline": True, "bounds": SHARE,
          "of_seeds": ("ate_covered", "share")}),
        ("ate_coverage_rate_ci_lower", "info", "Wilson interval of ate_coverage_rate, lower",
         {"level": "config", "bounds": SHARE}),
        ("ate_coverage_rate_ci_upper", "info", "Wilson interval of ate_coverage_rate, upper",
         {"level": "config", "bounds": SHARE}),
    ]),
    *_specs("population", "train", True, [
        ("ate_true_population", "info", "the generator's population ATE E[tau(X)] (only where it declares it)"),
        ("ate_covered_population", "target", "1 if the ATE interval covers the population ATE",
         {"target": "1-alpha", "bounds": SHARE}),
        ("ate_coverage_rate_population", "target", "share of seeds whose ATE interval covers the population ATE "
         "(Wilson CI)", {"level": "config", "target": "1-alpha", "bounds": SHARE,
                         "of_seeds": ("ate_covered_population", "share")}),
        ("ate_coverage_rate_population_ci_lower", "info", "Wilson interval of ate_coverage_rate_population, lower",
         {"level": "config", "bounds": SHARE}),
        ("ate_coverage_rate_population_ci_upper", "info", "Wilson interval of ate_coverage_rate_population, upper",
         {"level": "config", "bounds": SHARE}),
    ]),
    *_specs("importance", "test", True, [
        ("importance_rank_corr", "higher", "Spearman ρ of estimated vs true permutation importance",
         {"headline": True, "bounds": CORR}),
        ("importance_top_hit", "higher", "1 if the most important estimated feature is a true modifier",
         {"bounds": SHARE}),
    ]),
    *_specs("insights", "test", True, [
        ("insights_true_modifiers_named", "higher",
         "share of true modifiers insights.md names (best linear projection interval excludes 0)", {"bounds": SHARE}),
        ("insights_non_modifiers_named", "lower",
         "share of non-modifiers insights.md names (≈ alpha per feature under the null)", {"bounds": SHARE}),
    ]),
    *_specs("cost", "-", False, [
        ("fit_seconds", "lower", "seconds to fit (final stage only when the first stage was reused)",
         {"headline": True, "bounds": NONNEG}),
        ("predict_seconds", "lower", "seconds for effects and intervals on both splits", {"bounds": NONNEG}),
    ]),
    *_specs("validation", "test", False, [
        ("rscore", "higher", "econml RScorer R-score on the test split (truth-free)",
         {"headline": True, "bounds": AT_MOST_1}),
        ("r_loss", "lower", "R-loss of the model (truth-free)", {"bounds": NONNEG}),
        ("r_loss_baseline", "info", "R-loss of the constant-effect model (truth-free)", {"bounds": NONNEG}),
        ("dr_mse", "lower", "MSE of tau_hat against DR pseudo-outcomes (truth-free; ranks like PEHE)",
         {"headline": True, "bounds": NONNEG}),
        ("blp_coef", "target", "DRTester best linear predictor slope (1 = calibrated heterogeneity)",
         {"target": 1.0}),
        ("blp_se", "info", "standard error of blp_coef", {"bounds": NONNEG}),
        ("blp_pvalue", "info", "p-value of blp_coef = 0", {"bounds": SHARE}),
        ("cal_score", "higher", "DRTester calibration R²", {"bounds": AT_MOST_1}),
        ("qini", "higher", "DRTester Qini coefficient", {"headline": True}),
        ("qini_se", "info", "standard error of qini", {"bounds": NONNEG}),
        ("qini_ci_lower", "info", "normal interval of qini, lower"),
        ("qini_ci_upper", "info", "normal interval of qini, upper"),
        ("autoc", "higher", "DRTester area under the TOC curve"),
        ("autoc_se", "info", "standard error of autoc", {"bounds": NONNEG}),
        ("autoc_ci_lower", "info", "normal interval of autoc, lower"),
        ("autoc_ci_upper", "info", "normal interval of autoc, upper"),
    ]),
    *_specs("policy", "test", False, [
        ("policy_value_model", "higher", "DR value of 'treat if tau_hat > 0' vs treating nobody, per person"),
        ("policy_value_model_se", "info", "standard error of policy_value_model", {"bounds": NONNEG}),
        ("policy_value_treat_all", "info", "DR value of treating everybody"),
        ("policy_value_treat_all_se", "info", "standard error of policy_value_treat_all", {"bounds": NONNEG}),
        ("policy_value_treat_none", "info", "value of treating nobody (the reference, 0)"),
        ("policy_gain_vs_all", "higher", "model policy value minus treat-all value"),
        ("policy_gain_vs_all_se", "info", "paired standard error of policy_gain_vs_all", {"bounds": NONNEG}),
        ("targeting_gain_top25", "higher", "DR mean effect in the top quarter by tau_hat minus overall"),
        ("targeting_gain_top25_se", "info", "standard error of targeting_gain_top25", {"bounds": NONNEG}),
    ]),
    *_specs("oracle", "test", True, [
        ("oracle_policy_value", "info", "true value of treating exactly those who benefit"),
        ("policy_value_model_true", "higher", "true value of 'treat if tau_hat > 0'"),
        ("policy_regret", "lower", "oracle policy value minus the model policy's true value",
         {"headline": True, "bounds": NONNEG}),
        ("targeting_gain_top25_true", "higher", "true mean effect in the top quarter by tau_hat minus overall"),
    ]),
    *_specs("subgroups", "train", False, [
        ("aipw_ate", "info", "cross-fitted AIPW ATE on the training sample (seed 003)"),
        ("aipw_ate_se", "info", "standard error of aipw_ate", {"bounds": NONNEG}),
        ("aipw_ate_ci_lower", "info", "normal interval of aipw_ate, lower"),
        ("aipw_ate_ci_upper", "info", "normal interval of aipw_ate, upper"),
        ("aipw_ate_covered", "target", "1 if the AIPW interval covers the true ATE",
         {"target": "1-alpha", "needs_truth": True, "bounds": SHARE}),
        ("max_abs_smd_unweighted", "info", "largest |standardised mean difference| before weighting",
         {"bounds": NONNEG}),
        ("max_abs_smd_weighted", "lower", "largest |standardised mean difference| after AIPW weighting",
         {"bounds": NONNEG}),
    ]),
    *_specs("interpretation", "test", True, [
        ("cate_tree_leaf_rmse", "lower", "RMS over test units of (estimated - true) mean effect of their CATE-tree "
         "leaf (econml SingleTreeCateInterpreter of tau_hat, depth 3)", {"bounds": NONNEG}),
        ("policy_tree_value_true", "higher", "true value of the depth-2 policy tree of tau_hat (econml "
         "SingleTreePolicyInterpreter): mean of tau·treat"),
        ("policy_tree_regret", "lower", "oracle policy value minus the policy tree's true value", {"bounds": NONNEG}),
    ]),
    *_specs("run", "-", False, [
        ("n_seeds_ok", "info", "seeds that finished", {"level": "config", "bounds": NONNEG}),
        ("n_seeds_failed", "info", "seeds that failed (traceback in their run)",
         {"level": "config", "bounds": NONNEG}),
        ("n_configs", "info", "configurations in a sweep or board", {"level": "config", "bounds": NONNEG}),
    ]),
]
METRICS: dict[str, MetricSpec] = {s.name: s for s in _ALL}
assert len(METRICS) == len(_ALL), "a metric name is registered twice"
assert all(s.goal in GOALS for s in _ALL)
_LOADED: set[str] = set()


def load_modules(names) -> None:
    """Import the user's modules that register metrics (config ``metric_modules``, ``--metric-module``), once
    per process: every process that fits seeds or ranks runs must know the same metrics."""
    import importlib

    for name in module_names(names):
        if name in _LOADED:
            continue
        if name.endswith(".py"):
            from pathlib import Path

            stem, folder = Path(name).stem, str(Path(name).parent)
            where = "" if folder == "." else f", with {folder} on PYTHONPATH or run from {folder}"
            raise ConfigError(f"metric module {name!r}: give the module's name, not its file name: {stem} "
                              f"(metric_modules=[{stem}] / --metric-module {stem}{where})")
        try:
            importlib.import_module(name)
        except ConfigError:  # the module's own register() refused a spec: that line says why
            raise
        except ModuleNotFoundError as err:
            if err.name != name.split(".")[0] and err.name != name:
                raise ConfigError(f"metric module {name!r} could not import {err.name!r}: install it, or fix the "
                                  "import in the module") from err
            # On a cluster this runs on each node that fits seeds (Ray, SLURM), where "here" is that node.
            raise ConfigError(f"metric module {name!r} is not found: put {name}.py in the folder you run from, "
                              "or its folder on PYTHONPATH (on a cluster: of every node that fits seeds)") from err
        except Exception as err:  # a typo in the user's module: say where, in one line
            raise ConfigError(f"metric module {name!r} failed on import: {type(err).__name__}: {err}") from err
        _LOADED.add(name)
        for spec in computed():  # a misspelt fn is refused now, not after every seed has been fitted
            _check_fn(spec)


def _check_fn(spec: MetricSpec) -> None:
    """ConfigError unless ``spec.fn`` names a callable (with a did-you-mean from its module)."""
    import difflib
    import importlib

    module, _, attr = spec.fn.rpartition(".")
    try:
        mod = importlib.import_module(module)
    except ImportError as err:
        raise ConfigError(f"metric {spec.name!r}: fn={spec.fn!r}: module {module!r} cannot be imported ({err})") \
            from err
    if not callable(getattr(mod, attr, None)):
        close = difflib.get_close_matches(attr, [n for n in dir(mod) if callable(getattr(mod, n))], n=1)
        hint = f" (did you mean {module}.{close[0]}?)" if close else ""
        raise ConfigError(f"metric {spec.name!r}: fn={spec.fn!r}: {module} has no function {attr!r}{hint}")
    import inspect

    try:  # evaluate() calls fn(truth, estimate): a wrong signature is refused now, not after every fit
        inspect.signature(getattr(mod, attr)).bind(None, None)
    except TypeError:
        raise ConfigError(f"metric {spec.name!r}: fn={spec.fn!r} must take (truth, estimate); it takes "
                          f"{inspect.signature(getattr(mod, attr))}") from None
    except ValueError:  # a builtin without a signature: left to the first call
        pass


def module_names(names) -> list[str]:
    """``metric_modules`` as a sorted list of names (one name alone is that module)."""
    if isinstance(names, (str, int, float)) and not isinstance(names, bool):
        names = [names]  # metric_modules=my_metrics: that one module
    try:
        return sorted({str(n) for n in names or ()})
    except TypeError:
        raise ConfigError(f"metric_modules={names!r} is not allowed; give module names, e.g. "
                          "metric_modules=[my_metrics]") from None


def modules_hash(names) -> str:
    """Short hash of the sources of the metric modules (after ``load_modules``); '' for none. Resume matches
    on it: an edited metric function refits rather than keeping the values of the old one."""
    import hashlib
    import sys

    names = module_names(names)
    if not names:
        return ""
    digest = hashlib.sha256()
    for name in names:
        path = getattr(sys.modules.get(name), "__file__", None)
        digest.update(name.encode() + b"\0" + (Path(path).read_bytes() if path else b""))
    return digest.hexdigest()[:10]


def register(new: MetricSpec) -> MetricSpec:
    """Add a metric at run time (a user's module, named in ``metric_modules``); its name must be new and its
    ``fn`` say which function computes it. Registering the same spec again (a module imported twice) is a
    no-op. Returns the spec."""
    existing = METRICS.get(new.name)
    if existing is not None and existing in (new, dataclasses.replace(new, level="config")):
        return existing  # the same module imported twice
    if new.name in METRICS:
        raise ConfigError(f"metric {new.name!r} is already registered")
    if new.of_seeds is not None and (len(new.of_seeds) != 2 or new.of_seeds[1] != "share"):
        raise ConfigError(f"metric {new.name!r}: of_seeds={new.of_seeds!r} is not allowed; a metric of your own is "
                          "per seed (leave of_seeds out: its mean and t-interval are computed), or a share of seeds "
                          "of a per-seed 0/1 metric: of_seeds=('<that metric>', 'share')")
    if new.of_seeds is not None:
        # A share of seeds is computed from its per-seed metric, across seeds only: no fn of its own (it
        # would also be logged per seed under the same name, and its bounds overwritten by the Wilson ones).
        source = new.of_seeds[0]
        if new.fn:
            raise ConfigError(f"metric {new.name!r}: a share of seeds has no fn of its own (its value is the share "
                              f"of seeds where {source} is 1): leave fn out")
        if source not in METRICS or METRICS[source].level != "seed":
            raise ConfigError(f"metric {new.name!r}: of_seeds names {source!r}, which is not a registered per-seed "
                              "metric: register that 0/1 metric first (with its fn)")
        new = dataclasses.replace(new, level="config")
    elif not new.fn:
        raise ConfigError(f"metric {new.name!r}: fn is required: the dotted path of the function of "
                          "(truth, estimate) that computes it, e.g. fn='my_metrics.ate_abs_error'")
    if new.goal not in GOALS:
        raise ConfigError(f"metric {new.name!r}: goal={new.goal!r} is not allowed; allowed: {', '.join(GOALS)}")
    if new.goal == "target" and not _is_target(new.target):
        raise ConfigError(f"metric {new.name!r}: goal='target' needs target=<number> or target='1-alpha' (the "
                          f"value it aims at), got target={new.target!r}")
    if new.bounds is not None and not (len(new.bounds) == 2 and new.bounds[0] <= new.bounds[1]):
        raise ConfigError(f"metric {new.name!r}: bounds={new.bounds!r} is not allowed; give (low, high) with "
                          "low <= high, or None")
    _ALL.append(new)
    METRICS[new.name] = new
    return new


def _is_target(value) -> bool:
    """A usable ``target``: a real number, or "1-alpha"."""
    if value == "1-alpha":
        return True
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def computed() -> list[MetricSpec]:
    """Specs whose per-seed value comes from their own ``fn`` (metrics added after the built-in set)."""
    return [s for s in _ALL if s.fn]


def split_name(name: str) -> tuple[str, Optional[str]]:
    """(metric, statistic) of a logged name: ``cate_rmse_test_mean`` -> (``cate_rmse_test``, ``mean``)."""
    if name in METRICS:
        return name, None
    for stat in AGG_STATS:
        suffix = f"_{stat}"
        if name.endswith(suffix) and name[: -len(suffix)] in METRICS:
            return name[: -len(suffix)], stat
    if name.startswith("best_") and name[5:] and is_registered(name[5:]):  # the sweep run's best_<metric>
        return split_name(name[5:])
    return name, None


def is_registered(name: str) -> bool:
    """True when ``name`` is a registered metric or one of its aggregates."""
    return split_name(name)[0] in METRICS


def spec(name: str) -> MetricSpec:
    """The spec of a metric or of one of its aggregates; one-line ConfigError listing the rankable names."""
    base, _ = split_name(name)
    if base not in METRICS:
        import difflib

        stat = next((f"_{s}" for s in AGG_STATS if name.endswith(f"_{s}")), "")
        names = [m + stat for m in rankable()]
        # A name cut short (cate_rmse) means its longer forms (cate_rmse_test), not a near spelling (ate_rmse).
        longer = [n for n in names if n.startswith(name)]
        close = longer[:2] or difflib.get_close_matches(name, names, n=1)
        own = "a metric of your own? name the module that registers it: --metric-module / metric_modules=[...]"
        # A name only somewhat like a known one (ate_abs_error_mean ~ ate_bias_mean) is as likely the user's own
        # metric whose module was not named as a typo: say both.
        typo = longer or (close and difflib.SequenceMatcher(None, name, close[0]).ratio() >= 0.85)
        hint = f" (did you mean {' or '.join(close)}?{'' if typo else ' or ' + own})" if close else f" ({own})"
        raise ConfigError(f"metric {name!r} is not registered{hint}, so it cannot be ranked; "
                          f"rankable metrics: {', '.join(rankable())}")
    return METRICS[base]


def rankable() -> list[str]:
    """Names that can rank configurations (everything with a direction or a target)."""
    return [s.name for s in _ALL if s.rankable]


def names(group: Optional[str] = None, level: Optional[str] = None) -> tuple[str, ...]:
    """Registered names in table order, optionally of one group or level."""
    return tuple(s.name for s in _ALL if (group is None or s.group == group) and (level is None or s.level == level))


def headline() -> tuple[str, ...]:
    """The metrics shown first on configuration runs and boards."""
    return tuple(s.name for s in _ALL if s.headline)


def value_range(name: str) -> Optional[tuple[float, float]]:
    """The registered ``bounds`` of a metric or of its aggregates (None: unbounded or not registered)."""
    base = split_name(name)[0]
    return METRICS[base].bounds if base in METRICS else None


OUTSIDE_MARK = "†"
OUTSIDE_NOTE = (f"{OUTSIDE_MARK} t-intervals on few seeds are wide: bounds outside the metric's possible range "
                "are shown as computed, not clipped.")


def leaves_range(name: str, lo, hi) -> bool:
    """True when a bound of an interval leaves the values ``name`` can take (a t-interval on few seeds)."""
    import math

    bounds = value_range(name)
    vals = [float(v) for v in (lo, hi) if v is not None and math.isfinite(float(v))]
    return bounds is not None and any(v < bounds[0] or v > bounds[1] for v in vals)


def loss(name: str, values, alpha: float = 0.05) -> np.ndarray:
    """Values as a loss (lower is better): as is, negated, or the distance to the target."""
    s = spec(name)
    v = np.asarray(values, dtype=float)
    if s.goal == "lower":
        return v
    if s.goal == "higher":
        return -v
    if s.goal == "target":
        return np.abs(v - s.target_value(alpha))
    raise ConfigError(f"metric {name!r} is context ({s.description}) and cannot be ranked; "
                      f"rankable metrics: {', '.join(rankable())}")


def objective(name: str) -> tuple[str, str]:
    """How a sweeper optimises the aggregate ``name``: (``minimize``|``maximize``, explanation).

    Spread (``_std``) is minimised; a target metric is minimised as its distance to the target; context
    metrics are refused in one line.
    """
    s = spec(name)
    _, stat = split_name(name)
    if stat is None and s.level == "seed":  # a per-seed name: the configuration run has no such value
        raise ConfigError(f"optimized_metric={name} is a per-seed metric; a sweep optimises a configuration's "
                          f"aggregate across its seeds: did you mean optimized_metric={name}_mean?")
    if stat == "std":
        return "minimize", f"{name}: spread across seeds, lower is better"
    if s.goal == "info":
        loss(name, [])  # raises the one-line refusal
    if s.goal == "target":
        return "minimize", f"{name}: distance to its target {s.target}"
    return ("maximize" if s.goal == "higher" else "minimize"), f"{name}: {s.goal} is better"


def objective_value(name: str, summary: dict, alpha: float = 0.05) -> float:
    """The number a sweeper should optimise for ``name`` from a configuration's aggregate metrics."""
    value = float(summary.get(name, float("nan")))
    s = spec(name)
    if s.goal == "target" and split_name(name)[1] != "std":
        return float(abs(value - s.target_value(alpha)))
    return value


def aggregate_loss(name: str, value: float, alpha: float = 0.05) -> float:
    """An aggregate's value as a loss (lower is better): spread as is, else the metric's own loss."""
    if split_name(name)[1] == "std":
        return float(value)
    return float(loss(name, [value], alpha)[0])
