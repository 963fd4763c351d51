"""The numba kernels: routing rows to leaf patterns, the per-leaf tables, the per-row pass."""

from __future__ import annotations

import numba
import numpy as np

_ALL = np.uint64(0xFFFFFFFFFFFFFFFF)


@numba.njit(inline="always")
def _goes_left(x, threshold, default_left, missing):
    if np.isnan(x):
        if missing == 1:
            return threshold >= 0.0
        return default_left != 0
    if missing == 2 and abs(x) <= 1e-35:
        return default_left != 0
    return x <= threshold


# `nodes` is the tuple (tree_start, feature, threshold, default_left, missing, left, right, bitmask,
# leaf_id) of Flat arrays; `leaves` is (leaf_value, leaf_depth, leaf_full, leaf_feat_start, leaf_feats,
# leaf_mode, leaf_offset, table, pat_start, pat_mask, pat_weight).


@numba.njit(cache=True)
def leaf_patterns(X, nodes, leaf_full, n_leaves, max_nodes):
    """(n_rows, n_leaves) uint64: which path features each row satisfies, at every leaf."""
    tree_start, feature, threshold, default_left, missing, left, right, bitmask, leaf_id = nodes
    n = X.shape[0]
    out = np.empty((n, n_leaves), dtype=np.uint64)
    masks = np.empty(max_nodes, dtype=np.uint64)
    for r in range(n):
        x = X[r]
        for t in range(tree_start.size - 1):
            start, end = tree_start[t], tree_start[t + 1]
            masks[0] = _ALL
            for j in range(start, end):
                m = masks[j - start]
                lid = leaf_id[j]
                if lid >= 0:
                    out[r, lid] = m & leaf_full[lid]
                elif _goes_left(x[feature[j]], threshold[j], default_left[j], missing[j]):
                    masks[left[j]] = m
                    masks[right[j]] = m & ~bitmask[j]
                else:
                    masks[left[j]] = m & ~bitmask[j]
                    masks[right[j]] = m
    return out


@numba.njit(cache=True)
def predict(X, nodes, leaf_value):
    tree_start, feature, threshold, default_left, missing, left, right, _bitmask, leaf_id = nodes
    n = X.shape[0]
    out = np.zeros(n)
    for r in range(n):
        for t in range(tree_start.size - 1):
            start = tree_start[t]
            j = start
            while leaf_id[j] < 0:
                if _goes_left(X[r, feature[j]], threshold[j], default_left[j], missing[j]):
                    j = start + left[j]
                else:
                    j = start + right[j]
            out[r] += leaf_value[leaf_id[j]]
    return out


@numba.njit(cache=True)
def _factorials(n):
    f = np.ones(n + 1)
    for i in range(1, n + 1):
        f[i] = f[i - 1] * i
    return f


@numba.njit(cache=True)
def _popcount(v):
    c = 0
    while v:
        v &= v - np.uint64(1)
        c += 1
    return c


@numba.njit(cache=True)
def build_tables(table_leaves, leaf_depth, leaf_value, hist_start, hist, table_start, n_background):
    """phi[leaf][s_x][k] = v/N * sum over background patterns s_z of the pair's Shapley value."""
    table = np.zeros(table_start[-1])
    fact = _factorials(64)
    for i in range(table_leaves.size):
        lid = table_leaves[i]
        d = leaf_depth[lid]
        if d == 0:
            continue
        full = (1 << d) - 1
        h0 = hist_start[i]
        t0 = table_start[i]
        scale = leaf_value[lid] / n_background
        for sx in range(full + 1):
            comp = full & ~sx
            b = d - _popcount(np.uint64(sx))
            acc_b = 0.0
            base = t0 + sx * d
            # every s_z covering the complement of s_x: s_z = comp | sub, sub a subset of s_x
            sub = sx
            while True:
                count = hist[h0 + (comp | sub)]
                if count > 0:
                    a_mask = sx & ~sub
                    a = _popcount(np.uint64(a_mask))
                    if a > 0:
                        w = count * fact[a - 1] * fact[b] / fact[a + b]
                        for k in range(d):
                            if (a_mask >> k) & 1:
                                table[base + k] += w
                    if b > 0:
                        acc_b += count * fact[a] * fact[b - 1] / fact[a + b]
                if sub == 0:
                    break
                sub = (sub - 1) & sx
            for k in range(d):
                if (comp >> k) & 1:
                    table[base + k] -= acc_b
            for k in range(d):
                table[base + k] *= scale
    return table


@numba.njit(inline="always")
def _deep_leaf(out, leaf_masks, lo, hi, v, d, full, feats, pat_mask, pat_weight, fact):
    """A leaf with too many path features for a table: its distinct background patterns, per row."""
    for r in range(lo, hi):
        sx = leaf_masks[r - lo] & full
        comp = full & ~sx
        b = d - _popcount(sx)
        acc_b = 0.0
        for q in range(pat_mask.size):
            sz = pat_mask[q]
            if (sz & comp) != comp:
                continue
            a_mask = sx & ~sz
            a = _popcount(a_mask)
            if a > 0:
                w = v * pat_weight[q] * fact[a - 1] * fact[b] / fact[a + b]
                for k in range(d):
                    if (a_mask >> np.uint64(k)) & np.uint64(1):
                        out[r, feats[k]] += w
            if b > 0:
                acc_b += v * pat_weight[q] * fact[a] * fact[b - 1] / fact[a + b]
        if acc_b != 0.0:
            for k in range(d):
                if (comp >> np.uint64(k)) & np.uint64(1):
                    out[r, feats[k]] -= acc_b


@numba.njit(inline="always")
def _explain_block(X, lo, hi, out, nodes, leaves, fact, masks):
    """Rows lo..hi-1 of X into out[lo:hi]. Trees outermost, rows innermost: each leaf's table
    (2^D x D numbers) is read once per block of rows rather than once per row."""
    tree_start, feature, threshold, default_left, missing, left, right, bitmask, leaf_id = nodes
    leaf_value, leaf_depth, leaf_full, leaf_feat_start, leaf_feats = leaves[:5]
    leaf_mode, leaf_offset, table, pat_start, pat_mask, pat_weight = leaves[5:]
    for t in range(tree_start.size - 1):
        start, end = tree_start[t], tree_start[t + 1]
        for r in range(lo, hi):
            masks[0, r - lo] = _ALL
        for j in range(start, end):
            lid = leaf_id[j]
            if lid < 0:
                f, thr, dl, mk, bm = feature[j], threshold[j], default_left[j], missing[j], bitmask[j]
                lj, rj, jj = left[j], right[j], j - start
                for r in range(lo, hi):
                    m = masks[jj, r - lo]
                    if _goes_left(X[r, f], thr, dl, mk):
                        masks[lj, r - lo] = m
                        masks[rj, r - lo] = m & ~bm
                    else:
                        masks[lj, r - lo] = m & ~bm
                        masks[rj, r - lo] = m
                continue
            d = leaf_depth[lid]
            if d == 0:
                continue
            full = leaf_full[lid]
            f0 = leaf_feat_start[lid]
            if leaf_mode[lid] == 0:  # table look-up
                t0 = leaf_offset[lid]
                for r in range(lo, hi):
                    base = t0 + np.int64(masks[j - start, r - lo] & full) * d
                    for k in range(d):
                        out[r, leaf_feats[f0 + k]] += table[base + k]
                continue
            # deep leaf: sum over its distinct background patterns
            _deep_leaf(
                out,
                masks[j - start],
                lo,
                hi,
                leaf_value[lid],
                d,
                full,
                leaf_feats[f0 : f0 + d],
                pat_mask[pat_start[leaf_offset[lid]] : pat_start[leaf_offset[lid] + 1]],
                pat_weight[pat_start[leaf_offset[lid]] : pat_start[leaf_offset[lid] + 1]],
                fact,
            )


_BLOCK = 64


@numba.njit(cache=True)
def explain_serial(X, n_features, nodes, leaves, max_nodes):
    n = X.shape[0]
    out = np.zeros((n, n_features))
    fact = _factorials(64)
    masks = np.empty((max_nodes, _BLOCK), dtype=np.uint64)
    for lo in range(0, n, _BLOCK):
        _explain_block(X, lo, min(n, lo + _BLOCK), out, nodes, leaves, fact, masks)
    return out


@numba.njit(cache=True, parallel=True)
def explain_parallel(X, n_features, nodes, leaves, max_nodes):
    n = X.shape[0]
    out = np.zeros((n, n_features))
    fact = _factorials(64)
    n_blocks = (n + _BLOCK - 1) // _BLOCK
    for blk in numba.prange(n_blocks):
        masks = np.empty((max_nodes, _BLOCK), dtype=np.uint64)
        lo = blk * _BLOCK
        _explain_block(X, lo, min(n, lo + _BLOCK), out, nodes, leaves, fact, masks)
    return out
