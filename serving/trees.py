"""XGBoost tree ensembles evaluated by compiled code, for the HTTP service.

An XGBoost predict call costs ~0.2 ms whatever its size (it parses a JSON config, reads
cgroup files and builds a context on every call), which was the largest single cost of a
one-series request. Walking the same trees in a loop compiled by numba
(`tree_outputs`) costs ~23 µs for one row of every horizon (1,231 trees). A batch of 100
rows takes ~0.45 ms for 1,459 trees of depth 4 where XGBoost takes ~2.7 ms: each split is
compared for all rows at once (the features laid out feature-major, a loop the compiler
vectorizes), the results gathered as one bit per split in an integer per row, and the leaf
looked up from those bits; walking the rows down node by node took 1.5 ms.

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
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from aq_assets.ml.kernels import compiled

# Objectives whose prediction is the raw sum of the trees (no link function).
IDENTITY_OBJECTIVES = frozenset(
    {"reg:squarederror", "reg:absoluteerror", "reg:pseudohubererror", "reg:quantileerror"}
)
# XGBoost treats a category at or above this (or below 0) as invalid: it goes left.
MAX_CATEGORY = 16777216.0


# A split in 12 bytes: its value, the feature, and how it splits: NUMERIC_MISSING_RIGHT or
# NUMERIC_MISSING_LEFT, or 2 * category set + (1 where a missing value goes left).
NODE = np.dtype([("value", "<f4"), ("feature", "<i4"), ("split", "<i4")])
NUMERIC_MISSING_RIGHT, NUMERIC_MISSING_LEFT = -1, -2
# Trees are stored complete to the deepest one: 2^depth leaves a tree. A row's splits of one
# tree are the bits of an int64, so deeper models (max_depth over this) are left to XGBoost.
MAX_DEPTH = 6
# Where a row ends after this many levels is looked up from its splits' bits: a table of
# 2^(2^TOP_DEPTH - 1) entries (32 KiB), below which the walk goes on bit by bit.
TOP_DEPTH = 4


@dataclass(frozen=True)
class TreeEnsemble:
    """Every tree of several single-output boosters: output j is booster j.

    Each tree is stored complete to the ensemble's depth D, as a heap: the splits of node k
    are nodes[t, k] and its children 2k + 1 and 2k + 2; after 2^D - 1 splits come the 2^D
    leaves. A leaf above depth D is copied to every leaf under it, and the filler splits
    between (value NaN) send any value somewhere among those copies. So every walk takes D
    steps without a branch on where it is: rows go down a tree side by side."""

    nodes: np.ndarray  # NODE, trees × (2^D - 1)
    leaves: np.ndarray  # float32, trees × 2^D
    set_offsets: np.ndarray  # int64, set k's bitset is set_words[offsets[k]:offsets[k+1]]
    set_words: np.ndarray  # uint32, bit c of a set: category c goes right
    outputs: np.ndarray  # int32, the output each tree adds to, in XGBoost's tree order
    base_scores: np.ndarray  # float32, per output
    top_nodes: np.ndarray  # int8, `_top_nodes` of min(depth, TOP_DEPTH)

    @classmethod
    def from_boosters(cls, boosters: Sequence[Any]) -> TreeEnsemble:
        """The trees of `boosters` (xgboost.Booster, gbtree, one output each). Raises
        ValueError for a model this does not evaluate exactly."""
        trees: list[tuple[dict[str, Any], int]] = []
        base_scores = []
        for output, booster in enumerate(boosters):
            learner = json.loads(booster.save_raw("json"))["learner"]
            base_scores.append(_single_output_base_score(learner))
            trees += [(tree, output) for tree in learner["gradient_booster"]["model"]["trees"]]
        depth = max((_depth(tree) for tree, _ in trees), default=0)
        if depth > MAX_DEPTH:
            raise ValueError(f"trees {depth} deep; at most {MAX_DEPTH} are stored complete")
        ensemble = cls(
            nodes=np.zeros((len(trees), 2**depth - 1), dtype=NODE),
            leaves=np.zeros((len(trees), 2**depth), dtype=np.float32),
            set_offsets=np.zeros(1, dtype=np.int64),
            set_words=np.zeros(0, dtype=np.uint32),
            outputs=np.array([output for _, output in trees], dtype=np.int32),
            base_scores=np.array(base_scores, dtype=np.float32),
            top_nodes=_top_nodes(min(depth, TOP_DEPTH)),
        )
        ensemble.nodes["value"] = np.nan  # fillers
        ensemble.nodes["split"] = NUMERIC_MISSING_LEFT
        words: list[int] = []
        offsets = [0]
        for t, (tree, _) in enumerate(trees):
            ensemble._place(tree, t, depth, words, offsets)
        return replace(
            ensemble,
            set_offsets=np.array(offsets, dtype=np.int64),
            set_words=np.array(words, dtype=np.uint32),
        )

    def _place(
        self, tree: dict[str, Any], t: int, depth: int, words: list[int], offsets: list[int]
    ) -> None:
        """Tree `t` into the heap, and its category sets into words/offsets."""
        if int(tree["tree_param"].get("size_leaf_vector", 1)) > 1:
            raise ValueError("multi-output trees")
        categories = dict(
            zip(
                tree["categories_nodes"],
                zip(tree["categories_segments"], tree["categories_sizes"], strict=True),
                strict=True,
            )
        )
        left, right = tree["left_children"], tree["right_children"]
        stack = [(0, 0, 0)]  # (XGBoost's node, heap position, depth)
        while stack:
            node, at, level = stack.pop()
            value = float(tree["split_conditions"][node])
            if left[node] == -1:  # a leaf: to every leaf position under `at`
                first = (at + 1) * 2 ** (depth - level) - 1 - (2**depth - 1)
                self.leaves[t, first : first + 2 ** (depth - level)] = value
                continue
            missing_left = bool(tree["default_left"][node])
            if int(tree["split_type"][node]) == 1:
                start, size = categories[node]
                split = 2 * (len(offsets) - 1) + missing_left
                words.extend(_bitset(tree["categories"][start : start + size]))
                offsets.append(len(words))
            else:
                split = NUMERIC_MISSING_LEFT if missing_left else NUMERIC_MISSING_RIGHT
            self.nodes[t, at] = (value, int(tree["split_indices"][node]), split)
            stack += [(left[node], 2 * at + 1, level + 1), (right[node], 2 * at + 2, level + 1)]

    def predict(self, matrix: np.ndarray) -> np.ndarray:
        """Outputs (rows × boosters, float32) of a C-contiguous float32 matrix of features."""
        return tree_outputs(  # type: ignore[no-any-return]
            matrix,
            self.nodes,
            self.leaves,
            self.set_offsets,
            self.set_words,
            self.outputs,
            self.base_scores,
            self.top_nodes,
        )

    @property
    def splits(self) -> np.ndarray:
        """The real splits (not fillers) among all nodes, flattened."""
        nodes = self.nodes.ravel()
        return (nodes["split"] >= 0) | ~np.isnan(nodes["value"])

    @property
    def feature(self) -> np.ndarray:
        return self.nodes.ravel()["feature"]

    @property
    def value(self) -> np.ndarray:
        return self.nodes.ravel()["value"]

    @property
    def category_set(self) -> np.ndarray:
        """Each node's category set; -1 for a numeric split (or a filler)."""
        split = self.nodes.ravel()["split"]
        return np.where(split >= 0, split >> 1, -1)

    def edge_rows(self, n_features: int, n: int = 256, seed: int = 0) -> np.ndarray:
        """Rows (float32) that test every way a split can go: each feature at one of its
        split values exactly, or the float32 just below or above it, or missing; a
        categorical feature at a category of a set, one of no set, or an invalid one."""
        rng = np.random.default_rng(seed)
        rows = rng.normal(0, 100, size=(n, n_features)).astype(np.float32)
        split = self.splits
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


def _depth(tree: dict[str, Any]) -> int:
    left, right = tree["left_children"], tree["right_children"]
    depth, level = 0, [0]
    while any(left[node] != -1 for node in level):
        level = [child for node in level if left[node] != -1 for child in (left[node], right[node])]
        depth += 1
    return depth


def _top_nodes(depth: int) -> np.ndarray:
    """For each value of the bits of a heap's first 2^depth - 1 splits (bit k: the row goes
    right at split k), the heap position the row reaches after `depth` levels."""
    bits = np.arange(2 ** (2**depth - 1), dtype=np.int64)
    node = np.zeros_like(bits)
    for _ in range(depth):
        node = 2 * node + 1 + ((bits >> node) & 1)
    return node.astype(np.int8)  # at most 2^(TOP_DEPTH + 1) - 2 = 30


def _bitset(categories: list[int]) -> list[int]:
    words = [0] * (max(categories, default=0) // 32 + 1)
    for category in categories:
        words[category // 32] |= 1 << (category % 32)
    return words


# ---------------------------------------------------------------------------------------------
# The walk, compiled


@compiled
def tree_outputs(x, nodes, leaves, offsets, words, outputs, base, top_nodes):
    """`trees.TreeEnsemble.predict`: each output's base score plus its trees' leaves, summed
    tree by tree, in order, as XGBoost sums them."""
    n = x.shape[0]
    n_trees, n_splits = nodes.shape
    depth = np.int64(np.log2(n_splits + 1))
    out = np.empty((n, base.shape[0]), dtype=np.float32)
    for i in range(n):
        for j in range(base.shape[0]):
            out[i, j] = base[j]
    if n < 8:  # a few rows: each walks down on its own
        for t in range(n_trees):
            for i in range(n):
                node = 0
                for _ in range(depth):
                    here = nodes[t, node]
                    node = 2 * node + 1 + _goes_right(x[i, here.feature], here, offsets, words)
                out[i, outputs[t]] += leaves[t, node - n_splits]
        return out
    # Many rows: each split compared for every row at once (a feature's values side by side),
    # each row's answers the bits of `went` (bit k: right at split k), then its leaf.
    columns = np.ascontiguousarray(x.T)
    went = np.empty(n, dtype=np.int64)
    top = top_nodes.shape[0] - 1  # the bits of the splits above TOP_DEPTH (or all of them)
    for t in range(n_trees):
        went[:] = 0
        for k in range(n_splits):
            here = nodes[t, k]
            values = columns[here.feature]
            if here.split < 0:  # numeric: right when not below, or missing and so marked
                value = here.value
                missing_right = np.int64(here.split == NUMERIC_MISSING_RIGHT)
                for i in range(n):
                    v = values[i]
                    right = np.int64(not v < value) & (np.int64(v == v) | missing_right)
                    went[i] |= right << k
            else:
                for i in range(n):
                    went[i] |= _goes_right(values[i], here, offsets, words) << k
        output = np.uint64(outputs[t])
        for i in range(n):
            bits = went[i]
            node = np.int64(top_nodes[np.uint64(bits & top)])
            while node < n_splits:
                node = 2 * node + 1 + ((bits >> node) & 1)
            out[i, output] += leaves[t, np.uint64(node - n_splits)]
    return out


@compiled(inline="always")
def _goes_right(v, here, offsets, words):
    """1 where XGBoost sends the value right: a number not below the split value, a missing
    value where the split says, a valid category of the split's set."""
    split = here.split
    if split < 0:  # numeric: without branches on the value, often mispredicted
        missing = v != v
        return np.int64(
            (missing & (split == NUMERIC_MISSING_RIGHT)) | ((not missing) & (not v < here.value))
        )
    if v != v:
        return np.int64((split & 1) == 0)
    if v >= 0 and v < MAX_CATEGORY:
        k = split >> 1
        c = np.int64(v)
        word = c >> 5
        if word < offsets[k + 1] - offsets[k]:
            return np.int64((words[offsets[k] + word] >> (c & 31)) & 1)
    return np.int64(0)
