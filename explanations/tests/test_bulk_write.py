"""rows_write: what COPY (PostgreSQL) or multi-row INSERTs (elsewhere) store reads back exactly."""

import datetime
import math

import pytest

from common.bulk import _copy_text, rows_write
from explanations.models import CohortChunkAggregate, CohortJob, CohortJobChunk

pytestmark = pytest.mark.django_db

FIELDS = ["chunk", "feature", "unit", "shift", "day", "count", "total", "total_abs"]


def test_texts_with_tabs_newlines_and_backslashes_and_exact_floats_read_back(model_version):
    job = CohortJob.objects.create(version=model_version, chunk_size=10)
    chunk = CohortJobChunk.objects.create(job=job, index=0, first_id=1, last_id=10)
    units = ["MICU", "a\tb", "line\nbreak", "back\\slash", "cr\rhere", "\\N", "None", ""]
    totals = [0.1 + 0.2, -1e-300, 1 / 3, math.pi * 1e10, 5e-324, 0.0, 123456789.123456789, -2.5]
    day = datetime.date(2026, 3, 8)
    rows = [
        (chunk.pk, f"feature {i}", unit, "day", day, i, total, abs(total))
        for i, (unit, total) in enumerate(zip(units, totals, strict=True))
    ]

    rows_write(CohortChunkAggregate, FIELDS, rows)

    stored = CohortChunkAggregate.objects.filter(chunk=chunk).order_by("count")
    assert [(a.unit, a.total, a.total_abs, a.day, a.feature) for a in stored] == [
        (unit, total, abs(total), day, feature) for _, feature, unit, _, day, _, total, _ in rows
    ]


def test_none_is_copys_null_and_a_text_backslash_n_is_not():
    assert _copy_text(None) == "\\N"
    assert _copy_text("\\N") == "\\\\N"
    assert _copy_text(0.1) == "0.1"


def test_a_str_subclass_is_escaped_like_a_str():
    import numpy as np
    from django.utils.safestring import mark_safe

    assert _copy_text(np.str_("a\tb\\c")) == "a\\tb\\\\c"
    assert _copy_text(mark_safe("line\nbreak")) == "line\\nbreak"
