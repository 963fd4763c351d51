"""All trees in one set of flat arrays, with each leaf's path features as bits."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from engine.fastshap.parsing import UnsupportedModel


@dataclass
class Flat:
    """All trees in one set of arrays, each tree's nodes in pre-order (children after parents)."""

    tree_start: np.ndarray  # (T+1,) int64
    feature: np.ndarray  # int64
    threshold: np.ndarray  # float64
    default_left: np.ndarray  # uint8
    missing: np.ndarray  # uint8
    left: np.ndarray  # int64, index within the tree (local)
    right: np.ndarray
    bitmask: np.ndarray  # uint64, 1 << (bit of this node's feature on its root path)
    leaf_id: np.ndarray  # int64, -1 at internal nodes
    leaf_value: np.ndarray  # float64 (L,)
    leaf_depth: np.ndarray  # int64 (L,), number of distinct features on the path
    leaf_full: np.ndarray  # uint64 (L,), (1 << depth) - 1
    leaf_feat_start: np.ndarray  # int64 (L+1,)
    leaf_feats: np.ndarray  # int64, feature index of bit k of each leaf
    max_nodes: int


def _preorder(tree: dict, n_features: int) -> tuple[list[int], dict[int, int], dict[int, tuple]]:
    """The tree's nodes in pre-order, each node's index in that order, and its path features."""
    left, right = tree["left"], tree["right"]
    order, local, paths = [], {}, {}
    stack = [(0, ())]
    while stack:
        node, path = stack.pop()
        local[node] = len(order)
        order.append(node)
        paths[node] = path
        if left[node] >= 0:
            feature = int(tree["feature"][node])
            if not 0 <= feature < n_features:
                raise UnsupportedModel(f"split on feature {feature} outside 0..{n_features - 1}")
            child_path = path if feature in path else (*path, feature)
            stack.append((int(right[node]), child_path))
            stack.append((int(left[node]), child_path))
    return order, local, paths


def flatten(trees: list[dict], n_features: int) -> Flat:
    columns = {k: [] for k in ("feature", "threshold", "default_left", "missing", "left", "right", "bitmask")}
    leaf_id, leaf_value, leaf_depth, leaf_feats, leaf_feat_start = [], [], [], [], [0]
    tree_start = [0]
    max_nodes = 1
    for tree in trees:
        left, right = tree["left"], tree["right"]
        order, local, paths = _preorder(tree, n_features)
        max_nodes = max(max_nodes, len(order))
        for node in order:
            path = paths[node]
            if left[node] >= 0:
                feature = int(tree["feature"][node])
                bit = path.index(feature) if feature in path else len(path)
                if bit > 62:
                    raise UnsupportedModel("a tree path has more than 63 distinct features")
                columns["feature"].append(feature)
                columns["threshold"].append(float(tree["threshold"][node]))
                columns["default_left"].append(int(tree["default_left"][node]))
                columns["missing"].append(int(tree["missing"][node]))
                columns["left"].append(local[int(left[node])])
                columns["right"].append(local[int(right[node])])
                columns["bitmask"].append(1 << bit)
                leaf_id.append(-1)
            else:
                for key in ("feature", "default_left", "missing", "left", "right", "bitmask"):
                    columns[key].append(0)
                columns["threshold"].append(0.0)
                leaf_id.append(len(leaf_value))
                leaf_value.append(float(tree["value"][node]))
                leaf_depth.append(len(path))
                leaf_feats.extend(path)
                leaf_feat_start.append(len(leaf_feats))
        tree_start.append(tree_start[-1] + len(order))
    depth = np.asarray(leaf_depth, dtype=np.int64)
    return Flat(
        tree_start=np.asarray(tree_start, dtype=np.int64),
        feature=np.asarray(columns["feature"], dtype=np.int64),
        threshold=np.asarray(columns["threshold"], dtype=np.float64),
        default_left=np.asarray(columns["default_left"], dtype=np.uint8),
        missing=np.asarray(columns["missing"], dtype=np.uint8),
        left=np.asarray(columns["left"], dtype=np.int64),
        right=np.asarray(columns["right"], dtype=np.int64),
        bitmask=np.asarray(columns["bitmask"], dtype=np.uint64),
        leaf_id=np.asarray(leaf_id, dtype=np.int64),
        leaf_value=np.asarray(leaf_value, dtype=np.float64),
        leaf_depth=depth,
        leaf_full=np.asarray([(1 << int(d)) - 1 for d in depth], dtype=np.uint64),
        leaf_feat_start=np.asarray(leaf_feat_start, dtype=np.int64),
        leaf_feats=np.asarray(leaf_feats, dtype=np.int64),
        max_nodes=max_nodes,
    )
