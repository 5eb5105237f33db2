"""XGBoost tree ensembles evaluated by compiled code, for the HTTP service.

An XGBoost predict call costs ~0.2 ms whatever its size (it parses a JSON config, reads
cgroup files and builds a context on every call), which was the largest single cost of a
one-series request. Walking the same trees in a loop compiled by numba
(`kernels.tree_outputs`) costs ~18 µs for one row of every horizon (1,231 trees), and ~20%
less than XGBoost per row for a batch of 100.

The numbers are XGBoost's, to the bit: the same float32 comparisons (`x < split` goes left),
a missing value (NaN) goes to the node's default child, a categorical split sends the
categories of its set right and every other one (negative, too large, unseen) left, and each
output is its base score plus the leaf values of its trees, summed in float32 in tree order.
`OnlineForecaster` checks the equality on probe rows whenever it loads a model and keeps
XGBoost's own predict where anything differs.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

# Objectives whose prediction is the raw sum of the trees (no link function).
IDENTITY_OBJECTIVES = frozenset(
    {"reg:squarederror", "reg:absoluteerror", "reg:pseudohubererror", "reg:quantileerror"}
)
# XGBoost treats a category at or above this (or below 0) as invalid: it goes left.
MAX_CATEGORY = 16777216.0


# One node in 16 bytes, read in one cache line: its split value or, at a leaf, its value;
# its left child (the right one is left + 1; -1 at a leaf); the feature it splits on; and
# how: NUMERIC_MISSING_RIGHT or NUMERIC_MISSING_LEFT, or 2 * category set + (1 where a
# missing value goes left).
NODE = np.dtype([("value", "<f4"), ("left", "<i4"), ("feature", "<i4"), ("split", "<i4")])
NUMERIC_MISSING_RIGHT, NUMERIC_MISSING_LEFT = -1, -2


@dataclass(frozen=True)
class TreeEnsemble:
    """Every tree of several single-output boosters, as flat arrays: output j is booster j.

    Nodes are numbered so that a node's right child directly follows its left child."""

    nodes: np.ndarray  # NODE
    set_offsets: np.ndarray  # int64, set k's bitset is set_words[offsets[k]:offsets[k+1]]
    set_words: np.ndarray  # uint32, bit c of a set: category c goes right
    roots: np.ndarray  # int32, each tree's root node, in XGBoost's tree order
    outputs: np.ndarray  # int32, the output each tree adds to
    base_scores: np.ndarray  # float32, per output

    @classmethod
    def from_boosters(cls, boosters: Sequence[Any]) -> TreeEnsemble:
        """The trees of `boosters` (xgboost.Booster, gbtree, one output each). Raises
        ValueError for a model this does not evaluate exactly."""
        nodes = _Nodes()
        base_scores = []
        for output, booster in enumerate(boosters):
            learner = json.loads(booster.save_raw("json"))["learner"]
            base_scores.append(_single_output_base_score(learner))
            for tree in learner["gradient_booster"]["model"]["trees"]:
                nodes.add_tree(tree, output)
        return nodes.ensemble(np.array(base_scores, dtype=np.float32))

    def predict(self, matrix: np.ndarray) -> np.ndarray:
        """Outputs (rows × boosters, float32) of a C-contiguous float32 matrix of features."""
        from aq_assets.ml.kernels import tree_outputs

        return tree_outputs(  # type: ignore[no-any-return]
            matrix,
            self.nodes,
            self.set_offsets,
            self.set_words,
            self.roots,
            self.outputs,
            self.base_scores,
        )

    @property
    def left(self) -> np.ndarray:
        return self.nodes["left"]

    @property
    def feature(self) -> np.ndarray:
        return self.nodes["feature"]

    @property
    def value(self) -> np.ndarray:
        return self.nodes["value"]

    @property
    def category_set(self) -> np.ndarray:
        """Each node's category set; -1 for a numeric split (or a leaf)."""
        split = self.nodes["split"]
        return np.where(split >= 0, split >> 1, -1)

    def edge_rows(self, n_features: int, n: int = 256, seed: int = 0) -> np.ndarray:
        """Rows (float32) that test every way a split can go: each feature at one of its
        split values exactly, or the float32 just below or above it, or missing; a
        categorical feature at a category of a set, one of no set, or an invalid one."""
        rng = np.random.default_rng(seed)
        rows = rng.normal(0, 100, size=(n, n_features)).astype(np.float32)
        split = self.left != -1
        numeric = split & (self.category_set < 0)
        for feature in np.unique(self.feature[split]).tolist():
            values = self.value[numeric & (self.feature == feature)]
            if values.size:
                picked = rng.choice(values, size=n)
                toward = rng.choice(np.array([-np.inf, np.inf], dtype=np.float32), size=n)
                nudged = np.nextafter(picked, toward)
                rows[:, feature] = np.where(rng.random(n) < 1 / 3, picked, nudged)
            sets = np.unique(self.category_set[split & (self.feature == feature)])
            sets = sets[sets >= 0]
            if sets.size:
                bits = np.unpackbits(self.set_words.view(np.uint8), bitorder="little")
                known = np.concatenate(  # the categories each set sends right
                    [
                        np.flatnonzero(
                            bits[self.set_offsets[k] * 32 : self.set_offsets[k + 1] * 32]
                        )
                        for k in sets.tolist()
                    ]
                )
                odd = np.array([-1.0, -0.5, 0.5, 2.5, 1e3, MAX_CATEGORY, 1e9])
                kind = rng.integers(0, 3, size=n)  # in a set, maybe in none, invalid
                rows[:, feature] = np.choose(
                    kind, [rng.choice(known, n), rng.choice(known, n) + 1, rng.choice(odd, n)]
                )
        rows[rng.random(rows.shape) < 0.15] = np.nan
        return rows


def _single_output_base_score(learner: dict[str, Any]) -> float:
    booster = learner["gradient_booster"]
    objective = learner["objective"]["name"]
    params = learner["learner_model_param"]
    if booster["name"] != "gbtree":
        raise ValueError(f"booster {booster['name']!r}: only gbtree is evaluated here")
    if objective not in IDENTITY_OBJECTIVES:
        raise ValueError(f"objective {objective!r} transforms its output")
    if int(params.get("num_target", 1)) != 1 or int(params.get("num_class", 0)) > 1:
        raise ValueError("more than one output per booster")
    base = np.atleast_1d(np.array(json.loads(params["base_score"]), dtype=np.float32))
    if base.size != 1:
        raise ValueError("more than one base score")
    return float(base[0])


class _Nodes:
    """Builds the flat arrays tree by tree."""

    def __init__(self) -> None:
        self.nodes: list[tuple[float, int, int, int]] = []
        self.set_offsets: list[int] = [0]
        self.set_words: list[int] = []
        self.roots: list[int] = []
        self.outputs: list[int] = []

    def add_tree(self, tree: dict[str, Any], output: int) -> None:
        if int(tree["tree_param"].get("size_leaf_vector", 1)) > 1:
            raise ValueError("multi-output trees")
        left, right = tree["left_children"], tree["right_children"]
        categories = {
            node: tree["categories"][start : start + size]
            for node, start, size in zip(
                tree["categories_nodes"],
                tree["categories_segments"],
                tree["categories_sizes"],
                strict=True,
            )
        }
        self.roots.append(len(self.nodes))
        self.outputs.append(output)
        # Breadth first, so a node's two children are placed side by side.
        order = [0]
        for node in order:
            if left[node] != -1:
                order.extend((left[node], right[node]))
        position = {node: len(self.nodes) + i for i, node in enumerate(order)}
        for node in order:
            value = float(tree["split_conditions"][node])
            if left[node] == -1:
                self.nodes.append((value, -1, 0, NUMERIC_MISSING_RIGHT))
                continue
            missing_left = bool(tree["default_left"][node])
            if int(tree["split_type"][node]) == 1:
                split = 2 * (len(self.set_offsets) - 1) + missing_left
                self.set_words.extend(_bitset(categories[node]))
                self.set_offsets.append(len(self.set_words))
            else:
                split = NUMERIC_MISSING_LEFT if missing_left else NUMERIC_MISSING_RIGHT
            feature = int(tree["split_indices"][node])
            self.nodes.append((value, position[left[node]], feature, split))

    def ensemble(self, base_scores: np.ndarray) -> TreeEnsemble:
        return TreeEnsemble(
            nodes=np.array(self.nodes, dtype=NODE),
            set_offsets=np.array(self.set_offsets, dtype=np.int64),
            set_words=np.array(self.set_words, dtype=np.uint32),
            roots=np.array(self.roots, dtype=np.int32),
            outputs=np.array(self.outputs, dtype=np.int32),
            base_scores=base_scores,
        )


def _bitset(categories: list[int]) -> list[int]:
    words = [0] * (max(categories, default=0) // 32 + 1)
    for category in categories:
        words[category // 32] |= 1 << (category % 32)
    return words
