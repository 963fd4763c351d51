"""Patient demographics as groups: a posted race or ethnicity (a CDC Race & Ethnicity code, a FHIR
"system|code", several joined with "|", or text) as its OMB category's name, so that the model card
(on the reference set) and monitoring (on posted patients) put a code and its text in one group.
Plain Python, no Django.
"""

from __future__ import annotations

import math
import re

DEMOGRAPHIC_CATEGORIES = ("race", "ethnicity")

# CDC Race & Ethnicity code system (urn:oid:2.16.840.1.113883.6.238), the OMB categories US Core's
# race and ethnicity extensions carry, and the spellings a scoring service sends as text. The stored
# value stays as posted; monitoring groups by the OMB category's name.
RACE_CODES = {
    "1002-5": "American Indian or Alaska Native",
    "2028-9": "Asian",
    "2054-5": "Black or African American",
    "2076-8": "Native Hawaiian or Other Pacific Islander",
    "2106-3": "White",
    "2131-1": "Other Race",
}
ETHNICITY_CODES = {"2135-2": "Hispanic or Latino", "2186-5": "Not Hispanic or Latino"}
_RACE_TEXT = {
    **{name.lower(): name for name in RACE_CODES.values()},
    "american indian": RACE_CODES["1002-5"],
    "alaska native": RACE_CODES["1002-5"],
    "native american": RACE_CODES["1002-5"],
    "black": RACE_CODES["2054-5"],
    "african american": RACE_CODES["2054-5"],
    "black/african american": RACE_CODES["2054-5"],
    "native hawaiian": RACE_CODES["2076-8"],
    "pacific islander": RACE_CODES["2076-8"],
    "caucasian": RACE_CODES["2106-3"],
    "other": RACE_CODES["2131-1"],
}
_ETHNICITY_TEXT = {
    **{name.lower(): name for name in ETHNICITY_CODES.values()},
    "hispanic": ETHNICITY_CODES["2135-2"],
    "latino": ETHNICITY_CODES["2135-2"],
    "latina": ETHNICITY_CODES["2135-2"],
    "hispanic/latino": ETHNICITY_CODES["2135-2"],
    "not hispanic": ETHNICITY_CODES["2186-5"],
    "non-hispanic": ETHNICITY_CODES["2186-5"],
    "non hispanic": ETHNICITY_CODES["2186-5"],
    "not hispanic or latino": ETHNICITY_CODES["2186-5"],
}
# US Core's data-absent codes (unknown, asked but no answer): not recorded.
_ABSENT = {"unk", "asku", "unknown", "declined", "asked but no answer", "asked but unknown"}
TWO_OR_MORE = "Two or more races"
_CODE = re.compile(r"(\d{4}-\d)")


def omb_category(value, column: str):
    """A posted race or ethnicity (a CDC code such as 2106-3, possibly with its system, several joined
    with "|" as FHIR Bundle ingest stores them, or text such as "white") as its OMB category name;
    None for unknown/declined; text that names no category is kept as posted (trimmed)."""
    codes, spellings = (RACE_CODES, _RACE_TEXT) if column == "race" else (ETHNICITY_CODES, _ETHNICITY_TEXT)
    if value is None or (isinstance(value, float) and math.isnan(value)) or not str(value).strip():
        return None  # missing (a NaN where pandas filled a column) is "not recorded"
    text = " ".join(str(value).split())
    names = []
    for part in (p.strip() for p in text.split("|")):
        if part.lower().startswith(("urn:", "http:", "https:")):
            continue  # the code system of a "system|code" value
        code = _CODE.search(part)
        name = codes.get(code.group(1)) if code else spellings.get(part.lower())
        if name is None and part.lower() in _ABSENT:
            continue
        if name is None:
            return text if part else None  # a spelling or code we do not know: the group is the text
        names.append(name)
    names = sorted(set(names))
    if not names:
        return None
    return names[0] if len(names) == 1 else TWO_OR_MORE
