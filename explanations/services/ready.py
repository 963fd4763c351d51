"""Marking computed explanations ready: the figures and the status in one write per batch.

An explanation is written only while it is still running under the claim (attempt) that computed
it. On PostgreSQL a batch is one UPDATE ... FROM (VALUES ...) that returns the rows it changed;
elsewhere (the embedded SQLite default) one UPDATE per explanation.
"""

from collections.abc import Sequence
from datetime import datetime

from django.db import connection

from explanations.models import Explanation

# Stored figures, with the SQL type each VALUES column is cast to (a column of NULLs is text).
FIGURES = {
    "base_value": "double precision",
    "contributions": "jsonb",
    "additivity_error": "double precision",
    "background_size": "integer",
    "uncertainty": "jsonb",
    "similar_patients": "jsonb",
    "stability": "jsonb",
    "quality_flags": "jsonb",
    "abstain": "boolean",
    "abstain_reason": "text",
}


def figures_of(result: dict) -> dict:
    """The stored figures of one computed explanation (engine_compute_many's entry)."""
    unc = result["uncertainty"]
    return {
        "base_value": result["base_value"],
        "contributions": result["contributions"],
        "additivity_error": result["additivity_error"],
        "background_size": result["background_size"],
        "uncertainty": unc,
        "similar_patients": result["similar_patients"],
        "stability": result["stability"],
        "quality_flags": result["quality_flags"],
        "abstain": unc["abstain"],
        "abstain_reason": unc["abstain_reason"],
    }


def explanations_mark_ready(claims: Sequence[tuple[Explanation, dict]], now: datetime) -> set[int]:
    """Write each (explanation as claimed, its figures) as ready if it is still running under that
    claim; return the ids written. Call inside a transaction."""
    if not claims:
        return set()
    if connection.vendor != "postgresql":
        written = set()
        for explanation, figures in claims:
            if Explanation.objects.filter(
                pk=explanation.pk, status=Explanation.Status.RUNNING, attempts=explanation.attempts
            ).update(**figures, status=Explanation.Status.READY, error="", finished_at=now):
                written.add(explanation.pk)
        return written
    meta = Explanation._meta
    quote = connection.ops.quote_name
    columns = {name: quote(meta.get_field(name).column) for name in FIGURES}
    assignments = ", ".join(f"{columns[name]} = v.{columns[name]}::{kind}" for name, kind in FIGURES.items())
    row = "(" + ", ".join(["%s"] * (2 + len(FIGURES))) + ")"
    params = []
    for explanation, figures in claims:
        params += [explanation.pk, explanation.attempts]
        params += [meta.get_field(name).get_db_prep_save(figures[name], connection) for name in FIGURES]
    table, status = quote(meta.db_table), quote(meta.get_field("status").column)
    sql = (
        f"UPDATE {table} AS e SET {assignments}, {status} = %s, {quote('error')} = '', "  # noqa: S608
        f"{quote('finished_at')} = %s "
        f"FROM (VALUES {', '.join([row] * len(claims))}) "
        f"AS v(id, attempts, {', '.join(columns.values())}) "
        f"WHERE e.{quote('id')} = v.id AND e.{status} = %s AND e.{quote('attempts')} = v.attempts "
        f"RETURNING e.{quote('id')}"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, [Explanation.Status.READY, now, *params, Explanation.Status.RUNNING])
        return {pk for (pk,) in cursor.fetchall()}
