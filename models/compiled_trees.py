"""A LightGBM ensemble compiled to tables that the C kernel ``models/_trees.c`` evaluates.

The kernel gives a single-output model's raw margin (the very float ``Booster.predict(raw_score=True)``
gives: each tree's leaf value summed in the booster's order) and its exact TreeSHAP values (those of
``Booster.predict(pred_contrib=True)``, to within floating-point rounding). Where the install built no
kernel, or the trees are too deep for it, the same answers come from LightGBM itself, loaded from the
model string the tables keep (:mod:`models.booster_fallback`); that is the only place the serving form
imports LightGBM.

Path-dependent TreeSHAP (Lundberg et al. 2020, what LightGBM implements) credits each leaf's value to
the distinct features on its path. For a leaf with ``d`` distinct path features ``U``, let ``z_j`` be
the share of training rows that follow the path at the splits on ``j`` (a product of child/parent
counts) and ``o_j`` be 1 when the row follows the path at all of them, else 0. Then the leaf adds to
each ``i`` in ``U``::

    v * (o_i - z_i) * sum_k w_d(k) [t^k] prod_{j in U, j != i} (z_j + o_j t),   w_d(k) = k! (d-k-1)! / d!

The ``o`` are 0 or 1, so a leaf has ``2^d`` outcomes, tabulated at compile time ("Fast TreeSHAP v2",
Yang 2021). For one row the kernel then

1. decides every split (LightGBM's numerical and categorical decisions, missing values included);
2. reads each leaf's path decisions (bit ``k``: left at its ``k``-th path split) and maps them to the
   row of its outcome in the credit table (``leaf_base`` + decisions -> ``outcome_row``);
3. adds each leaf's credits to its path features, leaf by leaf in tree order;
4. takes each tree's value from the leaf whose path decisions all lead to it, and sums the trees in
   the booster's order.

For margins alone it walks each tree from its root to one leaf instead. Tests hold both forms equal to
LightGBM.
"""

from __future__ import annotations

import importlib
import logging
from dataclasses import dataclass
from functools import cached_property
from math import factorial
from typing import Any

import numpy as np

from leadscore.models.threads import cores, in_row_blocks

# LightGBM's missing-value types.
_MISSING = {"None": 0, "Zero": 1, "NaN": 2}
# Table entries above which compiling refuses the model (too deep to tabulate).
MAX_ENTRIES = 20_000_000
_KERNEL_MAX_DEPTH = 30  # the C kernel packs a leaf's path decisions into an int32
_WORK_PER_THREAD = 2_000_000  # rows x trees of margin work given to each thread of a large batch
_log = logging.getLogger(__name__)


def kernel_module() -> Any | None:
    """The C kernel ``leadscore.models._trees``, or None when the install did not build it."""
    try:
        return importlib.import_module("leadscore.models._trees")
    except ImportError:
        return None


def leaf_credit_table(value: float, zero: np.ndarray) -> np.ndarray:
    """One leaf's TreeSHAP credits to its ``d`` path features, for each of the ``2^d`` outcomes: shape (2^d, d).

    Row ``p``: the outcome where path feature ``j`` is followed when bit ``j`` of ``p`` is set.
    """
    d = len(zero)
    one = ((np.arange(2**d)[:, None] >> np.arange(d)) & 1).astype(np.float64)
    weights = np.array([factorial(k) * factorial(d - k - 1) / factorial(d) for k in range(d)])
    table = np.empty((2**d, d))
    for i in range(d):
        poly = np.zeros((2**d, d))  # coefficients of t^0 .. t^(d-1) of prod_{j != i} (z_j + o_j t)
        poly[:, 0] = 1.0
        for j in range(d):
            if j != i:
                shifted = np.zeros_like(poly)
                shifted[:, 1:] = poly[:, :-1] * one[:, j : j + 1]
                poly = poly * zero[j] + shifted
        table[:, i] = value * (one[:, i] - zero[i]) * (poly @ weights)
    return table


@dataclass
class _Tree:
    nodes: list[dict[str, Any]]
    leaves: list[tuple[float, float, list[tuple[int, bool, float]]]]  # value, count, path of (node, went left, share)


def _parse(root: dict[str, Any]) -> _Tree:
    tree = _Tree([], [])

    def walk(node: dict[str, Any], path: list[tuple[int, bool, float]], count: float) -> None:
        if "split_index" not in node:
            tree.leaves.append((float(node["leaf_value"]), float(node["leaf_count"]), path))
            return
        me = len(tree.nodes)
        tree.nodes.append(node)
        for child, left in ((node["left_child"], True), (node["right_child"], False)):
            share = float(child["internal_count"] if "split_index" in child else child["leaf_count"])
            walk(child, [*path, (me, left, share / count)], share)

    walk(root, [], float(root.get("internal_count", 1)))
    return tree


@dataclass
class CompiledTrees:
    """Tables that evaluate a single-output LightGBM model's raw margin and TreeSHAP values.

    Build with :meth:`from_booster`; score with :meth:`margin` or :meth:`explain`. ``model_string`` is
    the booster's own text form (``Booster.model_to_string()``): LightGBM scores from it where the C
    kernel cannot.
    """

    n_features: int
    expected_value: float
    n_trees: int
    split_trees: np.ndarray  # positions of the trees with splits, in the booster's order
    single_leaf_trees: np.ndarray  # positions and values of the trees without (they add a constant)
    single_leaf_value: np.ndarray
    node_feature: np.ndarray  # (trees * width,): each tree's splits, padded to ``width`` (a multiple of 8)
    node_threshold: np.ndarray
    node_nan_left: np.ndarray  # where a missing value goes
    zero_nodes: np.ndarray  # splits that treat zero as missing (``zero_as_missing``), and where it goes
    zero_left: np.ndarray
    cat_nodes: np.ndarray  # categorical splits, and for each the codes that go left
    cat_left: np.ndarray
    width: int
    path_lookup: (
        np.ndarray
    )  # (trees, width / 8, 256, leaves per tree): each leaf's path decisions, by byte of its tree's
    leaf_base: np.ndarray  # (trees * leaves per tree,): where each leaf's outcomes start in ``outcome_row``
    outcome_row: np.ndarray  # leaf base + path decisions -> the row of the leaf's outcome in ``credit``
    reached_value: np.ndarray  # leaf base + path decisions -> the leaf's value if they lead to it, else 0.0
    group_leaf: np.ndarray  # one group per (leaf, distinct path feature)
    group_slot: np.ndarray
    group_feature: np.ndarray
    credit: np.ndarray
    model_string: str = ""

    @classmethod
    def from_booster(cls, booster: Any) -> CompiledTrees:
        """Compile a trained single-output ``lightgbm.Booster``."""
        dump = booster.dump_model()
        if dump.get("num_tree_per_iteration", 1) != 1:
            raise ValueError("only single-output (binary or regression) LightGBM models can be compiled")
        trees = [_parse(info["tree_structure"]) for info in dump["tree_info"]]
        expected = 0.0
        for tree in trees:
            expected += sum(v * c for v, c, _ in tree.leaves) / max(sum(c for _, c, _ in tree.leaves), 1.0)
        n_trees = len(trees)
        split_trees = [i for i, tree in enumerate(trees) if tree.nodes]
        single_leaf_trees = [i for i, tree in enumerate(trees) if not tree.nodes]
        single_leaf_value = [trees[i].leaves[0][0] for i in single_leaf_trees]
        trees = [trees[i] for i in split_trees]
        width = 8 * max(1, -(-max((len(t.nodes) for t in trees), default=1) // 8))

        node_feature = np.zeros(len(trees) * width, dtype=np.intp)
        node_threshold = np.full(len(trees) * width, np.inf)
        node_nan_left = np.zeros(len(trees) * width, dtype=bool)
        zero_nodes, zero_left, cat_nodes, cat_codes = [], [], [], []
        byte_bits = (np.arange(256)[:, None] >> np.arange(8)) & 1  # (256, 8)
        leaves_per_tree = max(len(t.leaves) for t in trees) if trees else 1
        depth = max((len(path) for t in trees for _, _, path in t.leaves), default=0)
        path_lookup = np.zeros(
            (len(trees), width // 8, 256, leaves_per_tree), dtype=np.int16 if depth < 15 else np.int32
        )
        leaf_base = np.zeros((len(trees), leaves_per_tree), dtype=np.int32)  # padding leaves: outcome 0, never read
        outcome_row, reached_value, group_leaf, group_slot, group_feature, credit = (
            [np.zeros(1, dtype=np.int32)],
            [np.zeros(1)],
            [],
            [],
            [],
            [],
        )
        rows = entries = 0
        outcome_base = 1
        for t, tree in enumerate(trees):
            for i, node in enumerate(tree.nodes):
                at = t * width + i
                node_feature[at] = int(node["split_feature"])
                missing = _MISSING[node["missing_type"]]
                if node["decision_type"] == "==":
                    cat_nodes.append(at)
                    cat_codes.append([int(c) for c in str(node["threshold"]).split("||")])
                    continue
                node_threshold[at] = float(node["threshold"])
                # LightGBM reads a NaN as 0.0 unless NaN is the split's missing value; 0.0 is missing for "Zero"
                node_nan_left[at] = bool(node["default_left"]) if missing else 0.0 <= node_threshold[at]
                if missing == 1:
                    zero_nodes.append(at)
                    zero_left.append(bool(node["default_left"]))
            for j, (value, _, path) in enumerate(tree.leaves):
                leaf = t * leaves_per_tree + j
                leaf_base[t, j] = outcome_base
                for k, (node, _, _) in enumerate(path):
                    path_lookup[t, node // 8, :, j] += byte_bits[:, node % 8] << k
                features = list(dict.fromkeys(int(tree.nodes[n]["split_feature"]) for n, _, _ in path))
                slot_of = np.array([features.index(int(tree.nodes[n]["split_feature"])) for n, _, _ in path])
                zero = np.ones(len(features))
                for (_, _, share), slot in zip(path, slot_of, strict=True):
                    zero[slot] *= share
                went_left = (np.arange(2 ** len(path))[:, None] >> np.arange(len(path))) & 1  # every path decision
                follows = went_left == np.array([left for _, left, _ in path])
                outcome = np.zeros(len(went_left), dtype=np.intp)
                for slot in range(len(features)):
                    outcome |= np.all(follows[:, slot_of == slot], axis=1).astype(np.intp) << slot
                outcome_row.append((rows + outcome * len(features)).astype(np.int32))
                reached = np.zeros(len(outcome))  # the leaf's value where the path decisions lead to it, else 0.0
                reached[sum(int(left) << k for k, (_, left, _) in enumerate(path))] = value
                reached_value.append(reached)
                outcome_base += len(outcome)
                table = leaf_credit_table(value, zero)
                credit.append(table.reshape(-1))
                rows += table.size
                entries += table.size + len(outcome)
                group_leaf.extend([leaf] * len(features))
                group_slot.extend(range(len(features)))
                group_feature.extend(features)
                if entries > MAX_ENTRIES:
                    raise ValueError(
                        f"the trees are too deep to tabulate their explanations (over {MAX_ENTRIES:,} entries); "
                        "train with fewer leaves"
                    )
        # columns: a negative code, codes 0 .. max, then missing or unknown (LightGBM sends all three kinds right)
        cat_left = np.zeros((len(cat_nodes), max((max(c) for c in cat_codes), default=0) + 3), dtype=bool)
        for row, codes in enumerate(cat_codes):
            cat_left[row, np.asarray(codes) + 1] = True

        def ints(values: Any) -> np.ndarray:
            return np.asarray(values, dtype=np.intp)

        return cls(
            n_features=int(dump["max_feature_idx"]) + 1,
            expected_value=expected,
            n_trees=n_trees,
            split_trees=ints(split_trees),
            single_leaf_trees=ints(single_leaf_trees),
            single_leaf_value=np.asarray(single_leaf_value, dtype=np.float64),
            node_feature=node_feature,
            node_threshold=node_threshold,
            node_nan_left=node_nan_left,
            zero_nodes=ints(zero_nodes),
            zero_left=np.asarray(zero_left, dtype=bool),
            cat_nodes=ints(cat_nodes),
            cat_left=cat_left,
            width=width,
            path_lookup=path_lookup,
            leaf_base=leaf_base.reshape(-1),
            outcome_row=np.concatenate(outcome_row),
            reached_value=np.concatenate(reached_value),
            group_leaf=ints(group_leaf),
            group_slot=ints(group_slot),
            group_feature=ints(group_feature),
            credit=np.concatenate(credit) if credit else np.zeros(0),
            model_string=booster.model_to_string(),
        )

    def __getstate__(self) -> dict[str, Any]:
        # the C handle and the fallback booster are rebuilt after loading
        return {k: v for k, v in self.__dict__.items() if k not in ("_kernel", "_fallback")}

    @cached_property
    def _kernel(self) -> tuple[Any, Any] | None:
        """The C kernel and its handle on these tables; None when it was not built, no tree has a split or a
        path is deeper than the kernel reads."""
        native = kernel_module()
        if native is None or not len(self.split_trees):
            return None
        paths, depths = self._leaf_paths()
        if depths.max() > _KERNEL_MAX_DEPTH:
            return None
        shape = (self.n_features, self.width, self.path_lookup.shape[-1], self.cat_left.shape[1])
        return native, native.bind(self._kernel_tables(paths, depths), *shape)

    @cached_property
    def _fallback(self) -> Any:
        """LightGBM's evaluation of ``model_string`` (:mod:`models.booster_fallback`, imported only here)."""
        if not self.model_string:
            raise RuntimeError(
                "these trees cannot be scored: the C kernel (leadscore.models._trees) is not available for them "
                "and they hold no LightGBM model string to fall back on; reinstall leadscore with a C compiler "
                "or package the model again"
            )
        from leadscore.models.booster_fallback import BoosterFallback

        _log.warning(
            "the C trees kernel (leadscore.models._trees) %s: LightGBM scores this model",
            "was not built" if kernel_module() is None else "cannot read these trees",
        )
        return BoosterFallback(self.model_string)

    def _kernel_tables(self, paths: np.ndarray, depths: np.ndarray) -> tuple[np.ndarray, ...]:
        """The tables in the order, types and layout ``models/_trees.c`` reads them (read once: treat as immutable)."""
        n_nodes = len(self.node_feature)
        kind = np.zeros(n_nodes, dtype=np.uint8)
        kind[self.zero_nodes] = 1
        kind[self.cat_nodes] = 2
        zero_left = np.zeros(n_nodes, dtype=np.uint8)
        zero_left[self.zero_nodes] = self.zero_left
        cat_row = np.zeros(n_nodes, dtype=np.int64)
        cat_row[self.cat_nodes] = np.arange(len(self.cat_nodes))
        order = np.full(self.n_trees, -1, dtype=np.int64)
        order[self.split_trees] = np.arange(len(self.split_trees))
        order_value = np.zeros(self.n_trees)
        order_value[self.single_leaf_trees] = self.single_leaf_value
        patterns = self._leaf_patterns(depths)
        return (
            self.node_feature.astype(np.int64),
            self.node_threshold.astype(np.float64),
            kind,
            self.node_nan_left.astype(np.uint8),
            zero_left,
            cat_row,
            np.ascontiguousarray(self.cat_left, dtype=np.uint8),
            paths,
            depths,
            self.leaf_base.astype(np.int32),
            self.outcome_row.astype(np.int32),
            patterns,
            self.reached_value[self.leaf_base + patterns.clip(0)],  # each leaf's value (padding: entry 0, 0.0)
            np.searchsorted(self.group_leaf, np.arange(len(self.leaf_base) + 1)).astype(np.int64),
            self.group_slot.astype(np.int64),
            self.group_feature.astype(np.int64),
            self.credit.astype(np.float64),
            order,
            order_value,
            self._children(paths, depths, patterns),
        )

    def _leaf_paths(self) -> tuple[np.ndarray, np.ndarray]:
        """Per leaf: its path's splits in order, as positions in its tree (padded to the deepest path), and how many.

        Read off ``path_lookup``: flipping split ``i`` alone adds ``1 << k`` to a leaf's index when ``i`` is its
        ``k``-th path split. The kernel ORs the decisions at these few splits instead of looking up byte tables.
        """
        trees, n_bytes, _, leaves = self.path_lookup.shape
        lookup = self.path_lookup.astype(np.int64)
        flips = np.stack(
            [lookup[:, i // 8, 1 << (i % 8), :] - lookup[:, i // 8, 0, :] for i in range(8 * n_bytes)], axis=1
        )
        tree, split, leaf = np.nonzero(flips)  # (trees, splits, leaves)
        position = np.log2(flips[tree, split, leaf]).astype(np.int64)
        depth = np.zeros((trees, leaves), dtype=np.int32)
        np.add.at(depth, (tree, leaf), 1)
        path = np.zeros((trees, leaves, max(int(depth.max(initial=0)), 1)), dtype=np.int32)
        path[tree, leaf, position] = split
        return path.reshape(-1), depth.reshape(-1)

    def _leaf_patterns(self, depths: np.ndarray) -> np.ndarray:
        """Per leaf: the path decisions that lead to it (bit ``k``: left at its ``k``-th path split); -1 for padding.

        They are the decisions whose outcome follows every split on its path: the largest ``outcome_row``
        of the leaf's range.
        """
        pattern = np.full(len(self.leaf_base), -1, dtype=np.int32)
        for leaf in np.flatnonzero(self.leaf_base > 0):  # padding leaves have base 0; real ones rise from 1
            base = int(self.leaf_base[leaf])
            pattern[leaf] = int(np.argmax(self.outcome_row[base : base + 2 ** int(depths[leaf])]))
        return pattern

    def _children(self, paths: np.ndarray, depths: np.ndarray, patterns: np.ndarray) -> np.ndarray:
        """Per split and side (``2 * split + 1``: left): the next split's position in its tree, or ``~leaf``.

        Slots no path uses (padding splits) hold ``~0``; no walk reaches them.
        """
        trees, _, _, leaves = self.path_lookup.shape
        child = np.full(2 * trees * self.width, ~0, dtype=np.int32)
        longest = len(paths) // len(depths)
        for leaf in np.flatnonzero(patterns >= 0):
            depth, decisions = int(depths[leaf]), int(patterns[leaf])
            path = paths[leaf * longest : leaf * longest + depth]
            tree_start = leaf // leaves * self.width
            for k, split in enumerate(path):
                following = path[k + 1] if k + 1 < depth else ~(leaf % leaves)
                child[2 * (tree_start + split) + (decisions >> k & 1)] = following
        return child

    def _rows(self, X: np.ndarray) -> np.ndarray:
        X = np.asarray(X, dtype=np.float64)
        X = X.reshape(len(X), -1) if len(X) else X.reshape(0, self.n_features)
        if X.shape[1] != self.n_features:
            raise ValueError(f"the rows have {X.shape[1]} columns; the trees read {self.n_features}")
        return np.ascontiguousarray(X)

    @property
    def native(self) -> bool:
        """Whether the C kernel scores these trees (built by the install, and the trees not too deep for it);
        otherwise LightGBM does."""
        return self._kernel is not None

    def margin(self, X: np.ndarray) -> np.ndarray:
        """Raw margin (log-odds) of rows of an encoded matrix: LightGBM's ``raw_score``, float for float."""
        X = self._rows(X)
        if not len(X):
            return np.zeros(0)
        if self._kernel is None:
            return self._fallback.margin(X)
        native, handle = self._kernel
        margin = np.empty(len(X))
        parts = min(cores(), -(-len(X) * len(self.split_trees) // _WORK_PER_THREAD))
        if parts > 1:  # the kernel lets go of the GIL for work this large
            in_row_blocks(lambda a, b: native.margin(handle, X[a:b], margin[a:b]), len(X), parts)
        else:
            native.margin(handle, X, margin)
        return margin

    def explain(self, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Raw margin (n,) and TreeSHAP contributions (n, n_features) of rows of an encoded matrix.

        The margin is :meth:`margin`'s; the contributions are LightGBM's ``pred_contrib`` without its last
        (expected value) column.
        """
        X = self._rows(X)
        if not len(X):
            return np.zeros(0), np.zeros((0, self.n_features))
        if self._kernel is None:
            return self._fallback.explain(X)
        native, handle = self._kernel
        margin, contributions = np.empty(len(X)), np.empty((len(X), self.n_features))
        native.explain(handle, X, margin, contributions)
        return margin, contributions
