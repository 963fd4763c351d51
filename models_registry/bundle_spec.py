"""bundle.yaml and its feature list, read and checked (CONTRACT.md section 1); BundleError names the
first problem."""

from __future__ import annotations

import math

import yaml

from engine import calibration
from models_registry.bundle_rules import (
    FEATURE_KINDS,
    FEATURE_NAME_PATTERN,
    FORMAT_VERSION,
    MAX_SPEC_BYTES,
    NAME_PATTERN,
    BundleError,
)
from models_registry.source_attributes import BUNDLE_KEYS as BUNDLE_ATTRIBUTES
from models_registry.source_attributes import COMPUTED as COMPUTED_ATTRIBUTES


def require(mapping: dict, key: str, where: str) -> object:
    if not isinstance(mapping, dict) or key not in mapping or mapping[key] in (None, ""):
        raise BundleError(f"bundle.yaml is missing {where}{key}.")
    return mapping[key]


def number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


class _NoAliasLoader(yaml.SafeLoader):
    """yaml.SafeLoader refusing anchors and aliases: a few hundred bytes of nested aliases expand
    to gigabytes ("billion laughs"), and a bundle.yaml has no use for them."""

    def compose_node(self, parent, index):
        event = self.peek_event()
        if isinstance(event, yaml.events.AliasEvent) or getattr(event, "anchor", None):
            what = "aliases (*name)" if isinstance(event, yaml.events.AliasEvent) else "anchors (&name)"
            raise yaml.constructor.ConstructorError(
                None, None, f"{what} are not accepted in bundle.yaml", event.start_mark
            )
        return super().compose_node(parent, index)


def parse_spec(raw: bytes) -> dict:
    if len(raw) > MAX_SPEC_BYTES:
        raise BundleError(
            f"bundle.yaml is {len(raw):,} bytes; at most {MAX_SPEC_BYTES:,} are accepted (it describes the "
            "bundle; data belongs in its parquet files)."
        )
    try:
        spec = yaml.load(raw.decode("utf-8"), Loader=_NoAliasLoader)  # noqa: S506 (a SafeLoader)
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise BundleError(f"bundle.yaml is not valid YAML: {first_line}.") from exc
    if not isinstance(spec, dict):
        raise BundleError("bundle.yaml must be a YAML mapping (name, model, features, ...).")
    version = require(spec, "format_version", "")
    if version != FORMAT_VERSION:
        raise BundleError(f"bundle.yaml format_version is {version!r}; this registry reads format_version 1.")
    name = require(spec, "name", "")
    if not isinstance(name, str) or not NAME_PATTERN.match(name):
        raise BundleError(f"bundle.yaml name {name!r} must be lower-case letters, digits, '-' or '_'.")
    require(spec, "outcome", "")
    horizon = require(spec, "horizon_hours", "")
    if not isinstance(horizon, int) or isinstance(horizon, bool) or horizon <= 0:
        raise BundleError("bundle.yaml horizon_hours must be a positive whole number of hours.")
    model = require(spec, "model", "")
    require(model, "path", "model.")
    require(model, "format", "model.")
    tiers = require(spec, "tiers", "")
    high, medium = require(tiers, "high", "tiers."), require(tiers, "medium", "tiers.")
    if not (number(high) and number(medium) and 0 < medium < high < 1):
        raise BundleError("bundle.yaml tiers must satisfy 0 < medium < high < 1.")
    require(require(spec, "background", ""), "path", "background.")
    reference = require(spec, "reference", "")
    require(reference, "path", "reference.")
    require(reference, "label", "reference.")
    if reference.get("description") is not None and not isinstance(reference["description"], str):
        raise BundleError("bundle.yaml reference.description must be text (who the reference patients are).")
    if spec.get("simulation_note") is not None and not isinstance(spec["simulation_note"], str):
        raise BundleError("bundle.yaml simulation_note must be text (what a simulated score is made of).")
    challenger = spec.get("challenger")
    if challenger is not None:
        require(challenger, "path", "challenger.")
        if require(challenger, "format", "challenger.") != "sklearn-skops":
            raise BundleError("bundle.yaml challenger.format must be sklearn-skops.")
    recalibration = spec.get("calibration")
    if recalibration is not None and (
        not isinstance(recalibration, dict) or recalibration.get("method") not in calibration.METHODS
    ):
        raise BundleError("bundle.yaml calibration must be {method: isotonic} or {method: platt}.")
    features = require(spec, "features", "")
    if not isinstance(features, list):
        raise BundleError("bundle.yaml features must be a list.")
    for key in ("intended_use", "known_failure_modes"):
        if spec.get(key) is not None and not isinstance(spec[key], str):
            raise BundleError(f"bundle.yaml {key} must be text.")
    _check_texts(spec.get("warnings"), "warnings")
    check_source_attributes(spec.get("source_attributes"))
    return spec


def _expected(item: dict, where: str, kind: str, value_range) -> list[float] | None:
    """The optional `expected: [low, high]` of a numeric feature: where a value is an ordinary
    observation (engine.quality flags the rest), inside its accepted `range`."""
    expected = item.get("expected")
    if expected is None:
        return None
    if kind != "numeric":
        raise BundleError(f"bundle.yaml {where} expected is for numeric features only.")
    if (
        not (isinstance(expected, list) and len(expected) == 2 and all(number(v) for v in expected))
        or not expected[0] < expected[1]
    ):
        raise BundleError(f"bundle.yaml {where} expected must be [low, high] with low < high.")
    if not (value_range[0] <= expected[0] and expected[1] <= value_range[1]):
        raise BundleError(
            f"bundle.yaml {where} expected must lie inside its range "
            f"[{value_range[0]:g}, {value_range[1]:g}]."
        )
    return [float(expected[0]), float(expected[1])]


def _check_texts(value: object, where: str) -> None:
    """None, text, or a list of text."""
    if value is None or isinstance(value, str):
        return
    if not isinstance(value, list) or not all(isinstance(v, str) and v.strip() for v in value):
        raise BundleError(f"bundle.yaml {where} must be text or a list of text.")


def check_source_attributes(raw: object) -> None:
    """bundle.yaml `source_attributes` (HTI-1, see models_registry.source_attributes)."""
    if raw is None:
        return
    if not isinstance(raw, dict):
        raise BundleError("bundle.yaml source_attributes must be a mapping, e.g. {developer: ...}.")
    for key, value in raw.items():
        if key in COMPUTED_ATTRIBUTES:
            raise BundleError(
                f"bundle.yaml source_attributes.{key} is computed by the registry"
                + (" (give the top-level intended_use)." if key == "intended_use" else "; remove it.")
            )
        if key not in BUNDLE_ATTRIBUTES:
            raise BundleError(
                f"bundle.yaml source_attributes has an unknown key '{key}'; the README lists the HTI-1 keys."
            )
        _check_texts(value, f"source_attributes.{key}")


def _feature_name(item: object, position: int, seen: set[str]) -> str:
    """The name of the feature at `position` (0-based): a column name, declared once."""
    if not isinstance(item, dict) or not isinstance(item.get("name"), str):
        raise BundleError(f"bundle.yaml feature #{position + 1} has no name.")
    name = item["name"]
    where = f"feature '{name}'"
    if not FEATURE_NAME_PATTERN.match(name):
        raise BundleError(f"bundle.yaml {where}: names are letters, digits and '_' (a column name).")
    if name in seen:
        raise BundleError(f"bundle.yaml {where} is declared twice.")
    return name


def _value_range(item: dict, where: str, kind: str) -> list | None:
    """The plausible `range: [min, max]`, required for a numeric feature."""
    value_range = item.get("range")
    if value_range is None and kind == "numeric":
        raise BundleError(f"bundle.yaml {where} is numeric and needs a plausible range [min, max].")
    if value_range is not None and not (
        isinstance(value_range, list)
        and len(value_range) == 2
        and all(number(v) for v in value_range)
        and value_range[0] < value_range[1]
    ):
        raise BundleError(f"bundle.yaml {where} range must be [min, max] with min < max.")
    return value_range


def _parse_feature(item: dict, name: str) -> dict:
    """One bundle.yaml feature, checked and normalised."""
    where = f"feature '{name}'"
    kind = item.get("kind")
    if kind not in FEATURE_KINDS:
        raise BundleError(f"bundle.yaml {where} has kind {kind!r}; expected numeric, binary or categorical.")
    categories = item.get("categories") or []
    if kind == "categorical" and (
        not isinstance(categories, list)
        or len(categories) < 2
        or len(set(map(str, categories))) != len(categories)
    ):
        raise BundleError(f"bundle.yaml {where} is categorical and needs a list of distinct categories.")
    value_range = _value_range(item, where, kind)
    for flag in ("decision_time", "mutable"):
        if flag in item and not isinstance(item[flag], bool):
            raise BundleError(f"bundle.yaml {where} {flag} must be true or false.")
    expected = _expected(item, where, kind, value_range)
    fixed_reason = item.get("fixed_reason")
    if fixed_reason is not None and not (isinstance(fixed_reason, str) and fixed_reason.strip()):
        raise BundleError(f"bundle.yaml {where} fixed_reason must be a sentence (why care cannot change it).")
    return {
        "name": name,
        "label": str(item.get("label") or name),
        "unit": str(item.get("unit") or ""),
        "source": str(item.get("source") or ""),
        "code": str(item.get("code") or ""),
        "kind": kind,
        "categories": [str(c) for c in categories] if kind == "categorical" else [],
        "range": [float(value_range[0]), float(value_range[1])] if value_range is not None else None,
        "decision_time": item.get("decision_time", True),
        "mutable": item.get("mutable", True),
        "expected": expected,
        "fixed_reason": str(fixed_reason or ""),
    }


def parse_features(raw: list) -> list[dict]:
    features: list[dict] = []
    seen: set[str] = set()
    for position, item in enumerate(raw):
        name = _feature_name(item, position, seen)
        seen.add(name)
        features.append(_parse_feature(item, name))
    if not features:
        raise BundleError("bundle.yaml features is empty.")
    return features


SUBGROUP_KEYS = ("column", "label", "protected", "bands", "values")
# Unit and shift are always reported per subgroup; a bundle need not (and may not) declare them.
ALWAYS_SUBGROUPS = ("unit", "shift")


def parse_subgroups(raw: object, features: list[dict]) -> list[dict]:
    """bundle.yaml `subgroups` (CONTRACT.md section 1), normalised: a list of {column, label,
    protected, bands, values, model_input}. Absent means none beyond unit and shift."""
    if raw is None:
        return []
    if not isinstance(raw, list):
        raise BundleError("bundle.yaml subgroups must be a list, e.g. [{column: age, label: Age}].")
    by_name = {f["name"]: f for f in features}
    out: list[dict] = []
    for position, item in enumerate(raw):
        where = f"subgroups #{position + 1}"
        if not isinstance(item, dict):
            raise BundleError(f"bundle.yaml {where} must be a mapping {{column, label, protected}}.")
        unknown = sorted(set(map(str, item)) - set(SUBGROUP_KEYS))
        if unknown:
            raise BundleError(
                f"bundle.yaml {where} has an unknown key '{unknown[0]}'; expected {', '.join(SUBGROUP_KEYS)}."
            )
        column = item.get("column")
        if not isinstance(column, str) or not FEATURE_NAME_PATTERN.match(column):
            raise BundleError(f"bundle.yaml {where} column must be a column name of reference.parquet.")
        where = f"subgroup '{column}'"
        if column in ALWAYS_SUBGROUPS:
            raise BundleError(f"bundle.yaml {where}: unit and shift are always subgroups; remove it.")
        if any(s["column"] == column for s in out):
            raise BundleError(f"bundle.yaml {where} is declared twice.")
        label = item.get("label", by_name.get(column, {}).get("label", column))
        if not isinstance(label, str) or not label.strip():
            raise BundleError(f"bundle.yaml {where} label must be text.")
        protected = item.get("protected", False)
        if not isinstance(protected, bool):
            raise BundleError(f"bundle.yaml {where} protected must be true or false.")
        out.append(
            {
                "column": column,
                "label": label.strip(),
                "protected": protected,
                "bands": _bands(item.get("bands"), where, by_name.get(column)),
                "values": _value_labels(item.get("values"), where),
                "model_input": bool(by_name.get(column, {}).get("decision_time", False)),
            }
        )
    return out


def _bands(bands: object, where: str, feature: dict | None) -> list[float] | None:
    if bands is None:
        return None
    if not (
        isinstance(bands, list)
        and bands
        and all(number(b) for b in bands)
        and all(a < b for a, b in zip(bands[:-1], bands[1:], strict=False))
    ):
        raise BundleError(f"bundle.yaml {where} bands must be increasing numbers, e.g. [18, 45, 65, 80].")
    if feature is not None and feature["kind"] != "numeric":
        raise BundleError(f"bundle.yaml {where} has bands, but feature '{feature['name']}' is not numeric.")
    return [float(b) for b in bands]


def _value_labels(values: object, where: str) -> dict[str, str] | None:
    """Optional {stored value: label}, e.g. {0: male, 1: female} for a 0/1 column."""
    if values is None:
        return None
    if (
        not isinstance(values, dict)
        or not values
        or not all(
            isinstance(k, str | int) and not isinstance(k, bool) and isinstance(v, str) and v.strip()
            for k, v in values.items()
        )
    ):
        raise BundleError(
            f"bundle.yaml {where} values must map each stored value to a label, e.g. {{0: male}}."
        )
    return {str(k): v.strip() for k, v in values.items()}
