"""Exact interventional TreeSHAP against a whole background set, fast.

The reference is ``shap.TreeExplainer(feature_perturbation="interventional")`` with an
Independent masker that keeps every background row; it costs O(rows x background x tree size).

``FastEngine`` computes the same numbers in O(rows x leaves x depth) after a one-off
O(background x nodes + leaves x 3^depth) precomputation per (model, background), in the spirit of
WOODELF (Nadel & Wettenstein, AAAI 2026): for a foreground row x and a background row z, a leaf L
with path features F_L is reached by the hybrid (x on S, z elsewhere) iff every feature in F_L is
satisfied by x (if in S) or by z (if not). Write s_x, s_z for the bitmasks of path features that x and
z satisfy (all the path's conditions on that feature). If s_x | s_z misses a feature the leaf is
unreachable; otherwise with A = s_x & ~s_z (must be in S) and B = s_z & ~s_x (must be out of S), the
game v * [A <= S, B & S = 0] has the closed-form Shapley values

    phi_i =  v (|A|-1)! |B|! / (|A|+|B|)!   for i in A,
    phi_i = -v |A|! (|B|-1)! / (|A|+|B|)!   for i in B,   and 0 otherwise.

So a leaf's contribution for x depends on the background only through the histogram of s_z over
the background, and on x only through s_x. The histogram is built once in ``__init__`` and turned into
a table phi[leaf][s_x] (2^D x D numbers per leaf of D path features); explaining a row is then one pass
over the nodes (to get s_x at every leaf) and one table look-up per leaf. Leaves with more than
``max_table_features`` path features keep their distinct background patterns instead and are summed
per row, O(patterns x D).

Splits are evaluated exactly as each library predicts: XGBoost in float32 (``x < t``), scikit-learn
with float32 inputs against float64 thresholds (``x <= t``), LightGBM in float64 with its missing
types (None: NaN is 0; Zero: 0 and NaN take the default side; NaN: NaN takes the default side).
Categorical splits, multi-class or multi-target models, DART and linear trees raise
``UnsupportedModel`` so callers can keep the shap path.
"""

from engine.fastshap.engines import Engine, EngineResult, FastEngine, ReferenceEngine, WoodelfEngine
from engine.fastshap.parsing import UnsupportedModel, detect_format, model_margin
from engine.fastshap.verify import CheckedResult, additivity_errors, explain_checked, verify

__all__ = [
    "CheckedResult",
    "Engine",
    "EngineResult",
    "FastEngine",
    "ReferenceEngine",
    "UnsupportedModel",
    "WoodelfEngine",
    "additivity_errors",
    "detect_format",
    "explain_checked",
    "model_margin",
    "verify",
]
