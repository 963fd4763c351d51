"""CDS Hooks 2.0's required fields and limits for discovery and cards, as checks that list problems.

Written from the specification's tables (Card, Source, Link, Coding, Suggestion, discovery
Service); test_cds_spec.py shows that each check catches what it is for.
"""

from __future__ import annotations

import uuid
from urllib.parse import urlsplit

INDICATORS = {"info", "warning", "critical"}
LINK_TYPES = {"absolute", "smart"}
SELECTION = {"at-most-one", "any"}


def _absolute(url) -> bool:
    parts = urlsplit(url) if isinstance(url, str) else None
    return bool(parts and parts.scheme in ("http", "https") and parts.netloc)


def _coding_problems(coding, where: str, *, display_required: bool) -> list[str]:
    if not isinstance(coding, dict):
        return [f"{where}: a Coding is an object"]
    problems = [f"{where}.{k}: required" for k in ("code", "system") if not coding.get(k)]
    if display_required and not coding.get("display"):
        problems.append(f"{where}.display: required for an override reason")
    return problems


def card_problems(card: dict) -> list[str]:
    problems: list[str] = []
    summary = card.get("summary")
    if not isinstance(summary, str) or not summary:
        problems.append("summary: required")
    elif len(summary) >= 140:
        problems.append(f"summary: {len(summary)} characters, must be under 140")
    if card.get("indicator") not in INDICATORS:
        problems.append(f"indicator: {card.get('indicator')!r} is not info, warning or critical")
    source = card.get("source")
    if not isinstance(source, dict) or not source.get("label"):
        problems.append("source.label: required")
    elif "url" in source and not _absolute(source["url"]):
        problems.append("source.url: must be an absolute URL")
    if "uuid" in card:
        try:
            uuid.UUID(card["uuid"])
        except (ValueError, TypeError, AttributeError):
            problems.append("uuid: not a UUID")
    if "detail" in card and not isinstance(card["detail"], str):
        problems.append("detail: Markdown text")
    for i, link in enumerate(card.get("links") or []):
        for key in ("label", "url", "type"):
            if not link.get(key):
                problems.append(f"links[{i}].{key}: required")
        if link.get("type") not in LINK_TYPES:
            problems.append(f"links[{i}].type: {link.get('type')!r} is not absolute or smart")
        if link.get("url") and not _absolute(link["url"]):
            problems.append(f"links[{i}].url: must be an absolute URL")
    suggestions = card.get("suggestions") or []
    if suggestions and card.get("selectionBehavior") not in SELECTION:
        problems.append("selectionBehavior: required (at-most-one or any) when there are suggestions")
    for i, suggestion in enumerate(suggestions):
        if not suggestion.get("label"):
            problems.append(f"suggestions[{i}].label: required")
    for i, reason in enumerate(card.get("overrideReasons") or []):
        problems += _coding_problems(reason, f"overrideReasons[{i}]", display_required=True)
    return problems


def discovery_problems(body: dict) -> list[str]:
    services = body.get("services") if isinstance(body, dict) else None
    if not isinstance(services, list):
        return ["services: required, a list"]
    problems: list[str] = []
    for i, service in enumerate(services):
        for key in ("id", "hook", "description"):
            if not isinstance(service.get(key), str) or not service.get(key):
                problems.append(f"services[{i}].{key}: required")
        prefetch = service.get("prefetch", {})
        if not isinstance(prefetch, dict) or not all(isinstance(v, str) for v in prefetch.values()):
            problems.append(f"services[{i}].prefetch: an object of query templates")
    return problems
