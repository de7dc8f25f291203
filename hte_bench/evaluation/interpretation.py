"""Trees that say who benefits: econml's SingleTreeCateInterpreter and SingleTreePolicyInterpreter on any estimate.

Both interpreters fit a shallow tree to the estimator's tau_hat on the test split (rows the estimator never
saw): the CATE tree summarises tau_hat in a few segments, the policy tree picks whom to treat to maximise
the mean of tau_hat over the treated. With the truth, each leaf's true mean effect stands beside the estimated
one, and the policy tree's true value (mean over units of tau·treat, as ``oracle_policy_value``) and its
regret against treating exactly those with tau > 0 are measured.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Callable, Optional

import numpy as np
import pandas as pd

if TYPE_CHECKING:
    from hte_bench.data.base import Dataset, Truth
    from hte_bench.estimators.base import Estimate
    from hte_bench.evaluation.analyses import AnalysisResult, Settings

NAN = float("nan")
CATE_DEPTH = 3     # at most 8 segments: readable, still shows the main modifiers
POLICY_DEPTH = 2   # at most 4 segments, econml's documented example depth
MIN_LEAF_SHARE = 0.05  # a leaf holds at least 5% of the test rows (and 10 rows), so its means are not single units

INTERPRETATION_METRICS = ("cate_tree_leaf_rmse", "policy_tree_value_true", "policy_tree_regret")


class _EffectOf:
    """The fitted effect function as the 'CATE estimator' econml's interpreters query (const_marginal_effect)."""

    def __init__(self, effect_fn: Callable[[pd.DataFrame], np.ndarray], columns: list):
        self.effect_fn, self.columns, self._d_y = effect_fn, columns, ()

    def const_marginal_effect(self, X) -> np.ndarray:
        return np.ravel(self.effect_fn(pd.DataFrame(np.asarray(X, dtype=float), columns=self.columns)))


def leaf_rules(tree, feature_names: list[str]) -> dict[int, str]:
    """Every leaf's path as 'feature <= threshold and ...' (sklearn's and econml's trees share tree_ arrays)."""
    t = tree.tree_
    rules: dict[int, str] = {}

    def walk(node: int, path: list[str]) -> None:
        left, right = t.children_left[node], t.children_right[node]
        if left < 0:
            rules[node] = " and ".join(path) or "everyone"
            return
        name, thr = feature_names[t.feature[node]], t.threshold[node]
        walk(left, path + [f"{name} <= {thr:.6g}"])
        walk(right, path + [f"{name} > {thr:.6g}"])

    walk(0, [])
    return rules


def leaf_table(leaves: np.ndarray, rules: dict[int, str], tau_hat: np.ndarray,
               tau_true: Optional[np.ndarray], treat: Optional[np.ndarray] = None) -> pd.DataFrame:
    """One row per leaf: its rule, size, mean estimated and (if known) true effect, and the policy's choice."""
    rows = []
    for leaf, rule in rules.items():
        mask = leaves == leaf
        row = {"leaf": int(leaf), "rule": rule, "n": int(mask.sum()),
               "tau_hat_mean": float(tau_hat[mask].mean()) if mask.any() else NAN,
               "tau_true_mean": float(tau_true[mask].mean()) if tau_true is not None and mask.any() else NAN}
        if treat is not None:
            row["treat"] = int(round(float(treat[mask].mean()))) if mask.any() else -1
        rows.append(row)
    return pd.DataFrame(rows)


def _text(title: str, table: pd.DataFrame, lines: list[str]) -> str:
    out = [title, "", *lines, ""]
    for _, r in table.iterrows():
        true = "" if np.isnan(r["tau_true_mean"]) else f", true mean {r['tau_true_mean']:.4g}"
        act = "" if "treat" not in r else f" -> {'TREAT' if r['treat'] == 1 else 'do not treat'}"
        out.append(f"if {r['rule']}: n={r['n']}, estimated mean effect {r['tau_hat_mean']:.4g}{true}{act}")
    return "\n".join(out) + "\n"


def interpretation(dataset: "Dataset", estimate: "Estimate", truth: Optional["Truth"],
                   settings: "Settings") -> "AnalysisResult":
    """CATE tree and policy tree of tau_hat on the test split, with true leaf means and policy regret when known."""
    from econml.cate_interpreter import SingleTreeCateInterpreter, SingleTreePolicyInterpreter

    from hte_bench.evaluation.analyses import AnalysisResult, _effect_fn

    X = dataset.X_test
    names = [str(c) for c in X.columns]
    Xa = X.to_numpy(dtype=float)
    model = _EffectOf(_effect_fn(estimate, "interpretation"), list(X.columns))
    tau_hat = np.asarray(estimate.tau_hat_test, dtype=float)
    tau = None if truth is None else np.asarray(truth.tau_test, dtype=float)
    leaf_min = max(10, int(MIN_LEAF_SHARE * len(X)))

    cate = SingleTreeCateInterpreter(max_depth=CATE_DEPTH, min_samples_leaf=leaf_min, random_state=settings.seed)
    cate.interpret(model, Xa)
    cate_leaves = cate.tree_model_.apply(Xa)
    cate_table = leaf_table(cate_leaves, leaf_rules(cate.tree_model_, names), tau_hat, tau)

    policy = SingleTreePolicyInterpreter(max_depth=POLICY_DEPTH, min_samples_leaf=leaf_min,
                                         random_state=settings.seed)
    policy.interpret(model, Xa)
    treat = np.asarray(policy.treat(Xa)).ravel().astype(int)
    policy_table = leaf_table(policy.tree_model_.apply(Xa), leaf_rules(policy.tree_model_, names), tau_hat, tau, treat)

    # Metrics only with the truth: the tree's own value by tau_hat is context, kept in policy_tree.txt.
    out = AnalysisResult()
    lines = [f"Policy tree (depth {POLICY_DEPTH}) on the {len(X)} test rows: treats {treat.mean():.1%}; "
             f"its value by tau_hat (mean gain over treating no one) {policy.policy_value_:.4g}."]
    if tau is not None:
        # Each unit's estimated leaf mean against its true leaf mean: how far the segments' story is off.
        leaf_hat = cate_table.set_index("leaf")["tau_hat_mean"]
        leaf_true = cate_table.set_index("leaf")["tau_true_mean"]
        gap = leaf_hat.loc[cate_leaves].to_numpy() - leaf_true.loc[cate_leaves].to_numpy()
        value_true = float(np.mean(tau * treat))
        oracle = float(np.mean(tau * (tau > 0)))
        out.metrics.update(cate_tree_leaf_rmse=float(np.sqrt(np.mean(gap ** 2))),
                           policy_tree_value_true=value_true, policy_tree_regret=oracle - value_true)
        lines.append(f"True value {value_true:.4g}; oracle (treat exactly those with tau > 0) {oracle:.4g}; "
                     f"regret {oracle - value_true:.4g}.")
    out.tables = {"interpretation/cate_tree_leaves": cate_table, "interpretation/policy_tree_leaves": policy_table}
    out.texts = {
        "interpretation/cate_tree.txt": _text(
            f"CATE tree (econml SingleTreeCateInterpreter, depth {CATE_DEPTH}, leaves >= {leaf_min} rows) of "
            f"tau_hat on the {len(X)} test rows", cate_table, []),
        "interpretation/policy_tree.txt": _text(
            f"Policy tree (econml SingleTreePolicyInterpreter, depth {POLICY_DEPTH}, leaves >= {leaf_min} rows)",
            policy_table, lines)}
    if settings.plots:
        from hte_bench import plots

        out.figures["interpretation/cate_tree.png"] = plots.interpreter_tree_figure(
            cate, names, "CATE tree of tau_hat (test split)")
        out.figures["interpretation/policy_tree.png"] = plots.interpreter_tree_figure(
            policy, names, "Policy tree of tau_hat (test split)")
    return out
