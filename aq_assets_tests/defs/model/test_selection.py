"""What `forecast_model` logs beside its gate: the backtest table."""

import pandas as pd
import pytest

from aq_assets.defs.model.selection import recent_backtest
from aq_assets.ml.backtest import pooled_rmse
from aq_assets.ml.evaluation import judge_candidate
from aq_assets.ml.features import FeatureSpec, build_features
from aq_assets.ml.model import Forecaster
from aq_assets_tests.hourly import diurnal, readings

SPEC = FeatureSpec(horizons=(1, 3)).with_sensors([1, 2])


def test_the_backtest_scores_the_candidate_on_the_held_out_days_and_refits_only_before(
    monkeypatch,
):
    hours = 24 * 30
    hourly = pd.concat(
        [
            readings(diurnal(hours, 40, 25, 1.0, seed=11), sensor_id=1),
            readings(diurnal(hours, 25, 15, 1.0, seed=12), sensor_id=2),
        ],
        ignore_index=True,
    )
    frame = build_features(hourly, SPEC)
    judged = judge_candidate(frame, SPEC, holdout_days=3, validation_days=5, max_rounds=100)
    registered = judged.on_every_day(frame)
    refits: list[pd.Timestamp] = []
    refit = Forecaster.refit

    def counted(self: Forecaster, rows: pd.DataFrame) -> Forecaster:
        refits.append(rows["datetime_utc"].max())
        return refit(self, rows)

    monkeypatch.setattr(Forecaster, "refit", counted)

    # By default, the held-out fortnight alone, at no fit's cost: the gate's own numbers.
    held_out = recent_backtest(judged, registered, frame, origins=0)
    start = judged.holdout["datetime_utc"].min()
    assert list(held_out["origin"].unique()) == [start]
    assert refits == []
    pooled = pooled_rmse(held_out, [])
    gate = judged.scores.set_index(["forecaster", "horizon"])["rmse"]
    for h in SPEC.horizons:
        assert pooled.loc[h, "model"] == pytest.approx(gate["model", h])
        assert pooled.loc[h, "persistence"] == pytest.approx(gate["persistence", h])

    # Each earlier fortnight trains the registered settings again on the days before it.
    both = recent_backtest(judged, registered, frame, origins=1)
    earlier = start - pd.Timedelta(days=14)
    assert sorted(both["origin"].unique()) == [earlier, start]
    assert len(refits) == 1 and refits[0] < earlier
