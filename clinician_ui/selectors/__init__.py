"""Reads for the clinician pages: `worklist` (the worklist and its live JSON) and `score` (one
score's page: explanation, feature table, earlier scores, actions). Every read starts from
patients.access; the views add nothing but rendering."""

from patients.actions import action_reasons, reason_label

from .score import (
    FeatureRow,
    ScoreDetail,
    alert_actions,
    explanation_figure,
    format_age,
    format_value,
    model_card_path,
    safe_url,
    score_detail_get,
    score_page_get,
)
from .worklist import WORKLIST_PAGE_SIZE, Page, Worklist, worklist_get, worklist_units

__all__ = [
    "WORKLIST_PAGE_SIZE",
    "FeatureRow",
    "Page",
    "ScoreDetail",
    "Worklist",
    "action_reasons",
    "alert_actions",
    "explanation_figure",
    "format_age",
    "format_value",
    "model_card_path",
    "reason_label",
    "safe_url",
    "score_detail_get",
    "score_page_get",
    "worklist_get",
    "worklist_units",
]
