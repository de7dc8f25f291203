"""A user's metric module, as README "A new metric" shows it: importing it registers the metric."""
from hte_bench.evaluation.registry import MetricSpec, register


def ate_abs_error(truth, estimate):
    return abs(estimate.ate_hat - truth.tau_train.mean())


SPEC = register(MetricSpec("user_ate_abs_error", goal="lower", needs_truth=True, split="train",
                           description="|ATE estimate - true ATE|", fn="user_metrics.ate_abs_error",
                           bounds=(0.0, float("inf"))))
