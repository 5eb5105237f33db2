"""The compiled tree evaluator gives XGBoost's numbers to the bit, and refuses what it cannot."""

from __future__ import annotations

import numpy as np
import pytest
import xgboost as xgb
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from serving.trees import MAX_DEPTH, TreeEnsemble

N_FEATURES = 6
CATEGORY = 5  # the categorical column
PARAMS = {"nthread": 1, "tree_method": "hist", "max_cat_to_onehot": 1, "min_child_weight": 1}


def training_rows(seed: int, n: int = 600) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.normal(10, 5, size=(n, N_FEATURES)).astype(np.float32)
    x[:, 1] = np.round(x[:, 1])  # many ties: values land exactly on split points
    x[:, CATEGORY] = rng.integers(0, 40, size=n)
    x[rng.random(x.shape) < 0.1] = np.nan
    y = np.nan_to_num(x[:, 0]) * 0.5 + np.sin(np.nan_to_num(x[:, CATEGORY])) * 3
    return x, y + rng.normal(0, 0.5, size=n)


def train(seed: int, rounds: int, **params) -> xgb.Booster:
    x, y = training_rows(seed)
    data = xgb.DMatrix(
        x, label=y, feature_types=["q"] * CATEGORY + ["c"], enable_categorical=True, nthread=1
    )
    booster = xgb.train({**PARAMS, **params}, data, num_boost_round=rounds)
    booster.set_param({"nthread": 1})
    return booster


@pytest.fixture(scope="module")
def boosters() -> list[xgb.Booster]:
    """Three outputs with different depths and base scores, as the forecaster's horizons."""
    return [
        train(0, 30, max_depth=3),
        train(1, 20, max_depth=6, eta=0.3),
        train(2, 25, max_depth=4, objective="reg:absoluteerror"),
    ]


@pytest.fixture(scope="module")
def ensemble(boosters) -> TreeEnsemble:
    return TreeEnsemble.from_boosters(boosters)


def xgboost_outputs(boosters: list[xgb.Booster], rows: np.ndarray) -> np.ndarray:
    return np.column_stack([b.inplace_predict(rows) for b in boosters])


def test_every_output_is_its_boosters_prediction_on_training_rows(boosters, ensemble):
    rows, _ = training_rows(7)

    got = ensemble.predict(rows)

    assert got.dtype == np.float32 and got.shape == (len(rows), len(boosters))
    np.testing.assert_array_equal(got, xgboost_outputs(boosters, rows))


def test_edge_rows_put_features_on_split_values_and_categories_in_and_out_of_sets(ensemble):
    rows = ensemble.edge_rows(N_FEATURES)
    numeric_splits = ensemble.splits & (ensemble.category_set < 0)
    split_values = set(ensemble.value[numeric_splits & (ensemble.feature == 0)].tolist())

    assert split_values & set(rows[:, 0].tolist())  # exactly on a split value
    assert np.isnan(rows).any()
    categories = set(rows[:, CATEGORY].tolist())
    assert {-1.0, 2.5, 16777216.0} <= categories


def test_edge_rows_give_xgboosts_numbers(boosters, ensemble):
    rows = ensemble.edge_rows(N_FEATURES, n=2000, seed=3)

    np.testing.assert_array_equal(ensemble.predict(rows), xgboost_outputs(boosters, rows))


def split_values(ensemble: TreeEnsemble, feature: int) -> list[float]:
    chosen = ensemble.splits & (ensemble.feature == feature)
    return sorted(set(ensemble.value[chosen & (ensemble.category_set < 0)].tolist()))


@st.composite
def adversarial_rows(draw, ensemble: TreeEnsemble) -> np.ndarray:
    """Rows whose values sit on, just beside or far from split values, are missing, infinite
    or odd categories."""
    n = draw(st.integers(1, 40))
    columns = []
    for feature in range(N_FEATURES):
        near = split_values(ensemble, feature) or [0.0]
        value = st.one_of(
            st.sampled_from(near),
            st.sampled_from(near).map(lambda v: float(np.nextafter(np.float32(v), np.inf))),
            st.sampled_from(near).map(lambda v: float(np.nextafter(np.float32(v), -np.inf))),
            st.floats(width=32, allow_nan=True, allow_infinity=True),
            st.integers(-3, 60).map(float),
            st.sampled_from([-0.0, 0.5, 16777215.0, 16777216.0, 3e38]),
        )
        columns.append(draw(st.lists(value, min_size=n, max_size=n)))
    return np.ascontiguousarray(np.array(columns, dtype=np.float32).T)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_adversarial_rows_give_xgboosts_numbers(boosters, ensemble, data):
    rows = data.draw(adversarial_rows(ensemble))

    np.testing.assert_array_equal(ensemble.predict(rows), xgboost_outputs(boosters, rows))


def test_an_empty_matrix_gives_no_rows(ensemble):
    assert ensemble.predict(np.empty((0, N_FEATURES), dtype=np.float32)).shape == (0, 3)


@pytest.mark.parametrize(
    ("params", "refusal"),
    [
        ({"objective": "binary:logistic"}, "transforms its output"),
        ({"booster": "dart", "rate_drop": 0.5}, "only gbtree"),
        ({"booster": "gblinear"}, "only gbtree"),
        ({"num_target": 2, "multi_strategy": "multi_output_tree"}, "output"),
    ],
    ids=["logistic", "dart", "linear", "multi-output"],
)
def test_models_it_cannot_evaluate_exactly_are_refused(params, refusal):
    x, y = training_rows(0, n=200)
    label = (y > np.median(y)).astype(float) if "binary" in str(params) else y
    if "num_target" in params:
        label = np.column_stack([y, -y])
        params = {k: v for k, v in params.items() if k != "num_target"}
    data = xgb.DMatrix(x[:, :CATEGORY], label=label, nthread=1)
    booster = xgb.train({**PARAMS, **params}, data, num_boost_round=3)

    with pytest.raises(ValueError, match=refusal):
        TreeEnsemble.from_boosters([booster])


def test_trees_without_a_split_and_trees_of_every_depth_up_to_the_limit(boosters):
    stumps = train(3, 5, gamma=1e9)  # no split is worth it: each tree is one leaf
    deep = train(4, 5, max_depth=MAX_DEPTH, eta=0.5)
    rows, _ = training_rows(8)

    for models in ([stumps], [stumps, *boosters], [deep, stumps]):
        got = TreeEnsemble.from_boosters(models).predict(rows)
        np.testing.assert_array_equal(got, xgboost_outputs(models, rows))
    assert TreeEnsemble.from_boosters([stumps]).nodes.shape == (5, 0)
    assert TreeEnsemble.from_boosters([deep]).nodes.shape == (5, 2**MAX_DEPTH - 1)


def test_trees_deeper_than_the_limit_are_left_to_xgboost():
    rng = np.random.default_rng(5)
    x = rng.normal(size=(3000, 4)).astype(np.float32)
    data = xgb.DMatrix(x, label=np.sin(x.sum(axis=1) * 5), nthread=1)
    deep = xgb.train({**PARAMS, "max_depth": 14, "eta": 1.0}, data, num_boost_round=2)

    with pytest.raises(ValueError, match="deep"):
        TreeEnsemble.from_boosters([deep])
