"""Large samples: a forest's intervals are asked in blocks of rows (bounded memory), with the same numbers."""
import numpy as np
import pytest

from conftest import SMALL, compose
from hte_bench import seed as S
from hte_bench.estimators import econml_adapter


@pytest.mark.parametrize("overrides", [["estimator=cf_small"], ["estimator=cf_small", "data=nie_wager"],
                                       ["estimator=cf_small", "data=workforce"],
                                       ["estimator=forest_dr", "++estimator.model.n_estimators=40"],  # README's
                                       ["estimator=linear_dml", "data=workforce"]])
def test_intervals_in_blocks_are_the_intervals_of_one_call(overrides, monkeypatch):
    cfg = compose([*overrides, *SMALL])
    dataset, _ = S.make_data(cfg, 0)
    adapter = S.make_estimator(cfg, 0).fit(dataset.X_train, dataset.T_train, dataset.Y_train)
    whole = adapter.effect_interval(dataset.X_train, 0.05)  # 300 rows: one block
    monkeypatch.setattr(econml_adapter, "INTERVAL_ROWS", 37)  # 9 blocks, the last one short
    blocks = adapter.effect_interval(dataset.X_train, 0.05)
    assert all(np.array_equal(a, b) for a, b in zip(whole, blocks))
    assert len(blocks[0]) == len(dataset.X_train)
