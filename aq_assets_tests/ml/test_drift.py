"""Drift: Evidently's per-column verdicts, the share of drifted columns we measure from them
(never Evidently's configured `drift_share`), the error ratio, too little data, NaN columns,
the HTML report, and the plain SciPy K-S baseline. Small synthetic frames, fixed seeds."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from aq_assets.ml.drift import (
    DriftThresholds,
    column_distances,
    drift_summary,
    ks_drift,
    ks_drift_frame,
    ordinary_limit,
    reference_rows_and_distances,
)

COLUMNS = ["pm25_lag_1", "temperature_now", "no2_now", "mean_24"]
REFERENCE_ROWS, CURRENT_ROWS = 2000, 200


def frame(rows: int, seed: int, shift: dict[str, float] | None = None) -> pd.DataFrame:
    """Standard normal columns, each column's mean moved by `shift` (in standard deviations)."""
    rng = np.random.default_rng(seed)
    shift = shift or {}
    return pd.DataFrame({c: rng.normal(shift.get(c, 0.0), 1.0, rows) for c in COLUMNS})


@pytest.fixture(scope="module")
def reference() -> pd.DataFrame:
    return frame(REFERENCE_ROWS, seed=1)


@pytest.fixture(scope="module")
def same() -> pd.DataFrame:
    return frame(CURRENT_ROWS, seed=9)


@pytest.fixture(scope="module")
def one_shifted() -> pd.DataFrame:
    return frame(CURRENT_ROWS, seed=3, shift={"no2_now": 1.5})


def test_same_distribution_is_not_drift(reference, same):
    summary = drift_summary(reference, same, COLUMNS, DriftThresholds())

    assert summary.columns == COLUMNS
    assert summary.drifted_columns == []
    assert summary.share_drifted == 0.0
    assert summary.enough_data
    assert not summary.drift_detected
    assert (summary.rows_reference, summary.rows_current) == (REFERENCE_ROWS, CURRENT_ROWS)
    for score in summary.scores.values():
        assert score["method"] == "Wasserstein distance (normed)"  # Evidently's pick above 1,000
        assert score["threshold"] == 0.1
        assert not score["drifted"]
        assert score["score"] < score["threshold"]
    assert summary.error_ratio is None
    json.dumps(summary.as_metadata())


def test_shifted_mean_in_three_of_four_columns_is_drift(reference):
    shifted = {"pm25_lag_1": 1.0, "temperature_now": -1.0, "mean_24": 2.0}
    current = frame(CURRENT_ROWS, seed=4, shift=shifted)

    summary = drift_summary(reference, current, COLUMNS, DriftThresholds())

    assert summary.drifted_columns == ["pm25_lag_1", "temperature_now", "mean_24"]
    assert summary.share_drifted == 0.75
    assert summary.drift_detected
    assert not summary.scores["no2_now"]["drifted"]
    assert "share 0.75" in summary.reasons[0]
    assert "above the limit 0.50" in summary.reasons[0]


@pytest.mark.parametrize(
    ("max_drifted_share", "detected"),
    [(0.5, False), (0.2, True)],
)
@pytest.mark.parametrize("with_html", [False, True])
def test_share_is_measured_not_evidentlys_configured_drift_share(
    reference, one_shifted, tmp_path, max_drifted_share, detected, with_html
):
    # One column of four drifts. Evidently's dataset-level `drift_share` is a threshold: 0.5
    # by default, and set to max_drifted_share in the HTML report; neither equals 0.25.
    html_path = tmp_path / "drift.html" if with_html else None
    thresholds = DriftThresholds(max_drifted_share=max_drifted_share)

    summary = drift_summary(reference, one_shifted, COLUMNS, thresholds, html_path=html_path)

    assert summary.drifted_columns == ["no2_now"]
    assert summary.share_drifted == 0.25
    assert summary.drift_detected is detected
    assert summary.share_drifted not in (0.5, max_drifted_share)
    metadata = summary.as_metadata()
    assert metadata["share_drifted"] == 0.25
    assert metadata["max_drifted_share"] == max_drifted_share
    assert ("above" if detected else "within") in summary.reasons[0]


def test_evidently_drift_share_is_a_threshold_and_our_share_its_measured_value(
    reference, one_shifted
):
    """The trap, shown in Evidently's own terms: DriftedColumnsCount's config carries the
    configured drift_share (0.5), its value the measured share, which is ours."""
    from evidently import DataDefinition, Dataset, Report
    from evidently.presets import DataDriftPreset

    definition = DataDefinition(numerical_columns=COLUMNS)
    snapshot = Report([DataDriftPreset(columns=COLUMNS)]).run(
        current_data=Dataset.from_pandas(one_shifted, data_definition=definition),
        reference_data=Dataset.from_pandas(reference, data_definition=definition),
    )
    (count,) = [
        m
        for m in snapshot.dict()["metrics"]
        if m["config"]["type"] == "evidently:metric_v2:DriftedColumnsCount"
    ]

    summary = drift_summary(reference, one_shifted, COLUMNS, DriftThresholds())

    assert count["config"]["drift_share"] == 0.5
    assert count["value"] == {"count": 1.0, "share": 0.25}
    assert summary.share_drifted == count["value"]["share"]
    assert summary.share_drifted != count["config"]["drift_share"]
    assert not summary.drift_detected


@pytest.mark.parametrize(
    ("current_error", "detected", "verb"),
    [(4.0, True, "above"), (2.4, False, "within")],
)
def test_error_ratio(reference, same, current_error, detected, verb):
    summary = drift_summary(
        reference,
        same,
        COLUMNS,
        DriftThresholds(),
        reference_error=2.0,
        current_error=current_error,
    )

    assert summary.error_ratio == pytest.approx(current_error / 2.0)
    assert summary.share_drifted == 0.0
    assert summary.drift_detected is detected
    (reason,) = [r for r in summary.reasons if r.startswith("error ratio")]
    assert f"{verb} the limit 1.50" in reason


def test_error_ratio_is_none_without_both_errors(reference, same):
    summary = drift_summary(reference, same, COLUMNS, DriftThresholds(), reference_error=2.0)
    assert summary.error_ratio is None
    assert not summary.drift_detected


@pytest.mark.parametrize(("reference_rows", "current_rows"), [(2000, 10), (10, 200)])
def test_too_few_rows_is_not_decided(reference_rows, current_rows):
    reference = frame(reference_rows, seed=5)
    current = frame(current_rows, seed=6, shift=dict.fromkeys(COLUMNS, 5.0))

    summary = drift_summary(
        reference, current, COLUMNS, DriftThresholds(), reference_error=1.0, current_error=9.0
    )

    assert not summary.enough_data
    assert not summary.drift_detected
    assert summary.columns == []
    assert summary.reasons[0].startswith("insufficient data")
    assert f"{current_rows} current rows" in summary.reasons[0]


def test_nan_only_columns_are_skipped_and_html_is_written(reference, same, tmp_path):
    reference = reference.assign(co_now=np.nan, so2_now=np.linspace(0, 1, len(reference)))
    current = same.assign(co_now=1.0, so2_now=np.nan)
    current.loc[current.index[:50], "pm25_lag_1"] = np.nan  # some NaNs: still tested
    current.loc[current.index[50], "mean_24"] = np.inf  # counts as missing
    html_path = tmp_path / "reports" / "drift.html"

    summary = drift_summary(
        reference, current, [*COLUMNS, "co_now", "so2_now"], DriftThresholds(), html_path=html_path
    )

    assert summary.columns == COLUMNS
    assert summary.skipped_columns == {
        "co_now": "no reference values",
        "so2_now": "no current values",
    }
    assert any("co_now (no reference values)" in r for r in summary.reasons)
    assert summary.enough_data
    assert not summary.drift_detected
    assert summary.html_path == str(html_path)
    assert "<html" in html_path.read_text(encoding="utf-8").lower()


def test_all_columns_skipped_is_not_decided(reference, same):
    summary = drift_summary(
        reference.assign(co_now=np.nan), same.assign(co_now=1.0), ["co_now"], DriftThresholds()
    )
    assert not summary.enough_data
    assert not summary.drift_detected
    assert "no column has enough values" in summary.reasons[0]


def test_evidentlys_default_test_depends_on_the_sample_size():
    """Why `method` is exposed: above 1,000 reference rows Evidently's default is the normed
    Wasserstein distance with a fixed 0.1 threshold, which a small current sample from the
    SAME distribution exceeds by sampling noise alone (~0.24 expected at 24 rows; ~35% of
    columns at 200 rows). K-S, a test with a p-value, does not."""
    reference, current = frame(REFERENCE_ROWS, seed=1), frame(24, seed=8)

    by_default = drift_summary(reference, current, COLUMNS, DriftThresholds())
    by_ks = drift_summary(reference, current, COLUMNS, DriftThresholds(method="ks"))

    assert by_default.share_drifted == 1.0
    assert by_ks.share_drifted == 0.0


def test_forced_ks_matches_scipy(reference, one_shifted):
    summary = drift_summary(reference, one_shifted, COLUMNS, DriftThresholds(method="ks"))

    for column, score in summary.scores.items():
        p_value, drifted = ks_drift(reference[column].to_numpy(), one_shifted[column].to_numpy())
        assert score["threshold"] == 0.05
        assert score["score"] == pytest.approx(p_value)
        assert score["drifted"] is drifted
    assert summary.share_drifted == ks_drift_frame(reference, one_shifted, COLUMNS) == 0.25


def test_ks_drift_agrees_with_evidentlys_default_verdict(reference, one_shifted):
    summary = drift_summary(reference, one_shifted, COLUMNS, DriftThresholds())

    for column in ("no2_now", "temperature_now"):  # clearly shifted, clearly not
        _, drifted = ks_drift(reference[column].to_numpy(), one_shifted[column].to_numpy())
        assert summary.scores[column]["drifted"] is drifted is (column == "no2_now")


def test_ks_drift_drops_nan():
    rng = np.random.default_rng(7)
    reference = np.concatenate([rng.normal(size=500), [np.nan] * 100])
    current = np.concatenate([rng.normal(3.0, 1.0, 100), [np.nan, np.inf]])

    p_value, drifted = ks_drift(reference, current)

    assert drifted
    assert 0.0 <= p_value < 1e-6
    with pytest.raises(ValueError, match="finite"):
        ks_drift(reference, np.array([np.nan]))


def test_drift_summary_rejects_bad_columns(reference, same):
    with pytest.raises(KeyError, match="lacks columns"):
        drift_summary(reference, same, ["nope"], DriftThresholds())
    with pytest.raises(TypeError, match="not numeric"):
        drift_summary(
            reference.assign(name="a"), same.assign(name="b"), ["name"], DriftThresholds()
        )


def test_module_imports_neither_evidently_nor_dagster_at_load():
    """The code location imports this module; Evidently takes seconds to import."""
    import ast
    import inspect

    import aq_assets.ml.drift as drift

    top_level = [
        node.module if isinstance(node, ast.ImportFrom) else alias.name
        for node in ast.parse(inspect.getsource(drift)).body
        if isinstance(node, ast.Import | ast.ImportFrom)
        for alias in node.names
    ]
    assert not [m for m in top_level if m and m.split(".")[0] in ("evidently", "dagster")]
    assert "dagster" not in inspect.getsource(drift)


@pytest.mark.parametrize(
    ("days", "expected"),
    [
        (7, 7.0),  # too few for a 99% limit: the largest
        (98, 98.0),
        (99, 99.0),  # ceil(100 × 0.99) = 99
        (199, 198.0),  # ceil(200 × 0.99) = 198
    ],
)
def test_a_columns_limit_is_the_conformal_order_statistic_of_its_days(days, expected):
    distances = pd.Series(np.arange(1.0, days + 1.0)).sample(frac=1.0, random_state=0)
    assert ordinary_limit(distances, 0.99) == expected


def test_a_column_with_fewer_than_seven_judged_days_has_no_limit():
    assert np.isnan(ordinary_limit(pd.Series([0.1, 0.2, np.nan, 0.3, 0.4, 0.5, 0.6, np.nan])))


def test_each_reference_day_is_measured_against_the_other_days():
    rng = np.random.default_rng(0)
    days = pd.Series(np.repeat(pd.date_range("2025-01-01", periods=10), 24))
    view = pd.DataFrame({"x": rng.normal(size=len(days))})
    odd = days.iloc[-1]
    view.loc[days == odd, "x"] += 3.0  # one unusual day in ten
    rows, distances = reference_rows_and_distances(view, days)
    assert len(rows) == len(view)
    others = column_distances(view[days != odd], view[days == odd], ["x"])["x"]
    assert distances.loc[odd, "x"] == pytest.approx(others)
    # Measured against a reference holding itself, it looked a third nearer than it is.
    assert column_distances(view, view[days == odd], ["x"])["x"] < 0.8 * others
