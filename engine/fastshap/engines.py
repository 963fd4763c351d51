"""The engines behind one interface: ``explain(rows) -> EngineResult(base, values, background_size)``."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import numpy as np

from engine.fastshap.flatten import flatten
from engine.fastshap.kernels import build_tables, explain_parallel, explain_serial, leaf_patterns, predict
from engine.fastshap.parsing import PARSERS, UnsupportedModel, as_rows, detect_format, model_margin

DEFAULT_MAX_TABLE_FEATURES = 8
_ROW_CHUNK = 4096
_PARALLEL_MIN_ROWS = 128


@dataclass(frozen=True)
class EngineResult:
    base_value: float
    values: np.ndarray  # (n_rows, n_features), log-odds (raw margin)
    background_size: int


@runtime_checkable
class Engine(Protocol):
    background_size: int

    def explain(self, rows: np.ndarray) -> EngineResult: ...


class ReferenceEngine:
    """shap.TreeExplainer, interventional, raw output, against every background row."""

    def __init__(self, model, background: np.ndarray):
        import shap

        background = as_rows(background)
        masker = shap.maskers.Independent(background, max_samples=background.shape[0])
        self.explainer = shap.TreeExplainer(
            model, data=masker, feature_perturbation="interventional", model_output="raw"
        )
        self.background_size = int(self.explainer.data.shape[0])

    def explain(self, rows: np.ndarray) -> EngineResult:
        rows = as_rows(rows)
        values = np.asarray(self.explainer.shap_values(rows, check_additivity=False), dtype=np.float64)
        base = float(np.ravel(self.explainer.expected_value)[0])
        return EngineResult(
            base_value=base, values=values.reshape(rows.shape[0], -1), background_size=self.background_size
        )


def _checked_names(parsed, background: np.ndarray, feature_names: list[str] | None) -> list[str] | None:
    if background.shape[0] == 0:
        raise ValueError("the background set is empty")
    if background.shape[1] != parsed.n_features:
        raise ValueError(f"background has {background.shape[1]} columns, model {parsed.n_features} features")
    if feature_names is None:
        return None
    feature_names = list(feature_names)
    if len(feature_names) != parsed.n_features:
        raise ValueError(f"{len(feature_names)} feature names for {parsed.n_features} features")
    if parsed.feature_names and list(parsed.feature_names) != feature_names:
        raise ValueError("feature_names differ from the names stored in the model")
    return feature_names


class FastEngine:
    """Exact interventional TreeSHAP; the background pass is done once, here.

    ``model_format`` is "xgboost" (Booster or XGBClassifier), "lightgbm" (Booster or LGBMModel) or
    "sklearn" (GradientBoostingClassifier/Regressor), or None to detect it. ``feature_names``, when
    given, must match the names stored in the model (if it stores any) and the background's width.
    Raises UnsupportedModel when the model cannot be read exactly (checked against the model's own
    predictions on the background).
    """

    def __init__(
        self,
        model,
        model_format: str | None,
        background: np.ndarray,
        feature_names: list[str] | None = None,
        *,
        max_table_features: int = DEFAULT_MAX_TABLE_FEATURES,
        self_check_tolerance: float = 1e-4,
    ):
        model_format = model_format or detect_format(model)
        parser = PARSERS.get(model_format)
        if parser is None:
            raise UnsupportedModel(f"unknown model format {model_format!r}")
        parsed = parser(model)
        background = as_rows(background)
        self.feature_names = _checked_names(parsed, background, feature_names)
        self.model_format = model_format
        self.n_features = parsed.n_features
        self.float32_inputs = parsed.float32_inputs
        self.intercept = float(parsed.intercept)
        self.background_size = int(background.shape[0])
        self.flat = flat = flatten(parsed.trees, parsed.n_features)
        self._nodes = (
            flat.tree_start,
            flat.feature,
            flat.threshold,
            flat.default_left,
            flat.missing,
            flat.left,
            flat.right,
            flat.bitmask,
            flat.leaf_id,
        )
        self._self_check(model, background, self_check_tolerance)
        depth = flat.leaf_depth
        table_leaves = np.flatnonzero(depth <= max_table_features).astype(np.int64)
        deep_leaves = np.flatnonzero(depth > max_table_features).astype(np.int64)
        self._leaves = self._background_pass(self._prepare(background), table_leaves, deep_leaves)
        self.n_trees = flat.tree_start.size - 1
        self.n_leaves = int(flat.leaf_value.size)
        self.n_deep_leaves = int(deep_leaves.size)
        self.table_bytes = int(self._leaves[7].nbytes)

    def _background_pass(self, bg: np.ndarray, table_leaves: np.ndarray, deep_leaves: np.ndarray) -> tuple:
        """The once-per-version part: the histogram of s_z per table leaf, turned into its phi table,
        and the distinct background patterns of each deep leaf; sets ``base_value``."""
        flat = self.flat
        n_leaves = flat.leaf_value.size
        depth = flat.leaf_depth
        sizes = np.left_shift(np.int64(1), depth[table_leaves])
        hist_start = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
        table_start = np.concatenate([[0], np.cumsum(sizes * depth[table_leaves])]).astype(np.int64)
        hist = np.zeros(hist_start[-1], dtype=np.int64)
        full_count = np.zeros(n_leaves, dtype=np.int64)
        deep_patterns = [[] for _ in deep_leaves]
        for lo in range(0, bg.shape[0], 256):
            patterns = self._patterns(bg[lo : lo + 256])
            full_count += (patterns == flat.leaf_full[None, :]).sum(axis=0)
            index = hist_start[None, :-1] + patterns[:, table_leaves].astype(np.int64)
            hist += np.bincount(index.ravel(), minlength=hist.size)
            for i, lid in enumerate(deep_leaves):
                deep_patterns[i].append(patterns[:, lid])
        self.base_value = float(self.intercept + np.dot(flat.leaf_value, full_count) / self.background_size)
        table = build_tables(
            table_leaves, depth, flat.leaf_value, hist_start, hist, table_start, float(self.background_size)
        )
        leaf_mode = np.zeros(n_leaves, dtype=np.uint8)
        leaf_offset = np.zeros(n_leaves, dtype=np.int64)
        leaf_offset[table_leaves] = table_start[:-1]
        leaf_mode[deep_leaves] = 1
        pat_start, pat_mask, pat_weight = [0], [], []
        for i, lid in enumerate(deep_leaves):
            masks, counts = np.unique(np.concatenate(deep_patterns[i]), return_counts=True)
            leaf_offset[lid] = i
            pat_mask.append(masks)
            pat_weight.append(counts / self.background_size)
            pat_start.append(pat_start[-1] + masks.size)
        return (
            flat.leaf_value,
            flat.leaf_depth,
            flat.leaf_full,
            flat.leaf_feat_start,
            flat.leaf_feats,
            leaf_mode,
            leaf_offset,
            table,
            np.asarray(pat_start, dtype=np.int64),
            np.concatenate(pat_mask).astype(np.uint64) if pat_mask else np.zeros(0, np.uint64),
            np.concatenate(pat_weight) if pat_weight else np.zeros(0),
        )

    # -- helpers

    def _prepare(self, rows: np.ndarray) -> np.ndarray:
        rows = as_rows(rows)
        if rows.shape[1] != self.n_features:
            raise ValueError(f"rows have {rows.shape[1]} columns, the model {self.n_features} features")
        if self.float32_inputs:
            rows = rows.astype(np.float32).astype(np.float64)
        return np.ascontiguousarray(rows)

    def _patterns(self, X: np.ndarray) -> np.ndarray:
        f = self.flat
        return leaf_patterns(X, self._nodes, f.leaf_full, f.leaf_value.size, f.max_nodes)

    def predict_margin(self, rows: np.ndarray) -> np.ndarray:
        """The raw output as this engine reads the model (used by the self-check)."""
        return self.intercept + predict(self._prepare(rows), self._nodes, self.flat.leaf_value)

    def _self_check(self, model, background, tolerance):
        rows = background
        if self.model_format == "sklearn":  # GradientBoosting rejects NaN at predict time
            rows = rows[~np.isnan(rows).any(axis=1)]
        if rows.shape[0] == 0:
            return
        worst = float(
            np.max(np.abs(self.predict_margin(rows) - model_margin(model, rows, self.model_format)))
        )
        if not worst <= tolerance:
            raise UnsupportedModel(
                f"the parsed {self.model_format} model differs from its own predictions by {worst:.2e}"
            )

    # -- the per-row part

    def explain(self, rows: np.ndarray) -> EngineResult:
        X = self._prepare(rows)
        parts = []
        for lo in range(0, max(X.shape[0], 1), _ROW_CHUNK):
            chunk = X[lo : lo + _ROW_CHUNK]
            kernel = explain_parallel if chunk.shape[0] >= _PARALLEL_MIN_ROWS else explain_serial
            parts.append(kernel(chunk, self.n_features, self._nodes, self._leaves, self.flat.max_nodes))
        values = np.concatenate(parts) if parts else np.zeros((0, self.n_features))
        return EngineResult(base_value=self.base_value, values=values, background_size=self.background_size)


class WoodelfEngine:
    """Adapter over the woodelf-explainer library (for comparison; its background pass runs per call).

    Its ``expected_value`` comes from a shap explainer that keeps only 100 background rows, so the base
    here is the mean raw margin over the whole background instead. Its splits are evaluated in float64,
    so a float32 value one ulp below an XGBoost threshold can take the wrong branch; use it through
    ``explain_checked``.
    """

    def __init__(
        self,
        model,
        background: np.ndarray,
        feature_names: list[str] | None = None,
        model_format: str | None = None,
    ):
        import pandas as pd
        from woodelf.explainer import WoodelfExplainer

        background = as_rows(background)
        self.model_format = model_format or detect_format(model)
        self.feature_names = (
            list(feature_names) if feature_names else [f"f{i}" for i in range(background.shape[1])]
        )
        self._frame = lambda rows: pd.DataFrame(as_rows(rows), columns=self.feature_names)
        self.explainer = WoodelfExplainer(
            model, self._frame(background), model_output="raw", feature_perturbation="interventional"
        )
        self.base_value = float(np.mean(model_margin(model, background, self.model_format)))
        self.background_size = int(background.shape[0])

    def explain(self, rows: np.ndarray) -> EngineResult:
        rows = as_rows(rows)
        values = np.asarray(self.explainer.shap_values(self._frame(rows), verbose=False), dtype=np.float64)
        return EngineResult(
            base_value=self.base_value,
            values=values.reshape(rows.shape[0], -1),
            background_size=self.background_size,
        )
