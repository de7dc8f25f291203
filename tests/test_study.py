"""Data conditions and study tables/figures (pure: no store, no fits)."""
import numpy as np
import pandas as pd

from hte_bench.compare.study import fresh_seeds, t_interval, with_conditions
from hte_bench.config import seed_list
from hte_bench.data.conditions import condition_of

ENGAGEMENT = "hte_bench.data.engagement.generate"


def test_a_condition_is_the_generator_and_every_knob_labelled_by_what_differs_from_its_defaults():
    default, label = condition_of({"_target_": ENGAGEMENT}, "engagement")
    assert label == "engagement"
    # The generator's defaults filled in: given or implied, the same condition; 3 and 3.0 are one value.
    assert condition_of({"_target_": ENGAGEMENT, "noise": 1.0, "n": 1000}, "engagement")[0] == default
    noisy = condition_of({"_target_": ENGAGEMENT, "noise": 3}, "engagement")
    assert noisy == condition_of({"_target_": ENGAGEMENT, "noise": 3.0}, "engagement")
    assert noisy[1] == "engagement noise=3.0" and noisy[0] != default
    assert condition_of({"_target_": "hte_bench.data.nie_wager.generate", "setup": "B"}, "nie_wager")[1] == \
        "nie_wager setup=B"
    # A generator that cannot be imported here still gets a condition: every knob is in its label.
    assert condition_of({"_target_": "not.a.module.generate", "k": 2}, "mine")[1] == "mine k=2"


def test_runs_logged_before_condition_tags_get_them_from_their_params():
    parents = pd.DataFrame({"tags.data": ["engagement"] * 2, "params.data._target_": [ENGAGEMENT] * 2,
                            "params.data.noise": ["1.0", "3.0"]})
    out = with_conditions(parents)
    assert out["tags.condition"].tolist() == ["engagement", "engagement noise=3.0"]
    assert out["tags.condition_hash"].tolist()[1] == condition_of({"_target_": ENGAGEMENT, "noise": 3.0},
                                                                  "engagement")[0]


def test_seed_helpers():
    assert seed_list(["3", "0", "1", "2"]) == "0-3" and seed_list([0, 5, 9]) == "0,5,9"
    assert fresh_seeds(["0", "7", "3"], 3) == [8, 9, 10] and fresh_seeds([], 2) == [0, 1]
    mean, lo, hi, n = t_interval([1.0, 2.0, 3.0, np.nan])
    assert (mean, n) == (2.0, 3) and lo < 2.0 < hi
    assert np.isnan(t_interval([4.0])[1:3]).all()  # one seed: no interval


def test_study_plot_draws_numeric_and_categorical_knobs():
    from hte_bench.plots import study_plot

    rows = [{"config": c, "data.setup": s, "mean": m, "ci_lower": m - 0.1, "ci_upper": m + 0.1, "n_seeds": 5}
            for c, base in (("ols", 1.0), ("forest", 0.5)) for s, m in zip("ABCD", base + np.arange(4))]
    fig = study_plot(pd.DataFrame(rows), "data.setup", "cate_rmse_test")
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_xticklabels()] == list("ABCD") and len(ax.get_legend().texts) == 2
    numeric = pd.DataFrame(rows).assign(**{"data.n": lambda f: f["data.setup"].map(dict(zip("ABCD", [250, 500, 1000, 2000])))})
    assert "n = 5 seeds" in study_plot(numeric, "data.n", "cate_rmse_test").axes[0].get_ylabel()
    # The level the table was computed at (runs with alpha=0.1), not a fixed 95%.
    label = study_plot(numeric, "data.n", "cate_rmse_test", level=0.9).axes[0].get_ylabel()
    assert "90% t-interval" in label and "95%" not in label
    # A coverage study: the target line, a configuration without intervals named under the axes (no empty
    # legend entry), a bound past 1 marked, n counted over the cells with a value.
    cover = pd.DataFrame([{"config": "ols", "data.n": n, "mean": 0.97, "ci_lower": 0.9, "ci_upper": 1.04, "n_seeds": 5}
                          for n in (250, 500)] + [{"config": "t_learner", "data.n": 250, "mean": np.nan,
                                                   "ci_lower": np.nan, "ci_upper": np.nan, "n_seeds": 0}])
    fig = study_plot(cover, "data.n", "cate_coverage_test")
    ax = fig.axes[0]
    assert sorted(t.get_text() for t in ax.get_legend().texts) == ["ols †", "target 0.95"]
    assert "n = 5 seeds" in ax.get_ylabel() and any("no value: t_learner" in t.get_text().replace("\n", " ") for t in fig.texts)
    from hte_bench.compare.study import runs_level

    assert runs_level(pd.DataFrame({"params.alpha": ["0.1", "0.1"]})) == 0.9
    assert runs_level(pd.DataFrame({"params.alpha": ["0.1", "0.05"]})) == 0.95 == runs_level(pd.DataFrame())
