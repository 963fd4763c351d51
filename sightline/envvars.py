"""Reading settings from the environment (healthchecks' envbool/envint): NAME, or the file named
by NAME_FILE (Docker/K8s secrets)."""

import os
from pathlib import Path


def env(name: str, default: str | None = None) -> str | None:
    """Read a setting from NAME, or from the file named by NAME_FILE (Docker/K8s secrets)."""
    file_path = os.environ.get(f"{name}_FILE")
    if file_path:
        return Path(file_path).read_text().strip()
    return os.environ.get(name, default)


def envbool(name: str, default: str = "False") -> bool:
    return (env(name, default) or "").strip().lower() in {"1", "true", "yes", "on"}


def envint(name: str, default: int) -> int:
    return int(env(name, str(default)))


def envlist(name: str) -> list[str]:
    """A comma-separated list; empty when unset."""
    return [item.strip() for item in (env(name, "") or "").split(",") if item.strip()]
