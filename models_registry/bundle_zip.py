"""Unpacking a bundle .zip without trusting it (CONTRACT.md section 1). Plain Python, no Django.

A zip says how large each member unpacks to, and it may lie. The declared sizes are summed and
checked against the cap before anything is written; then each member is copied in chunks and the
bytes really written are counted against the member's declared size and the cap, so a member
whose header understates it is stopped as soon as it passes either. Only bundle.yaml and the files
it names are unpacked: any other member refuses the bundle.
"""

from __future__ import annotations

import zipfile
import zlib
from pathlib import Path, PurePosixPath

from models_registry.bundle_rules import MAX_SPEC_BYTES, BundleError
from models_registry.bundle_spec import parse_spec

CHUNK_BYTES = 1024 * 1024


class BundleTooLarge(BundleError):
    """A bundle that unpacks to more than the cap (answered 413 over the API)."""


def _check_name(member: zipfile.ZipInfo) -> None:
    name = member.filename
    parts = PurePosixPath(name.replace("\\", "/")).parts
    if name.startswith(("/", "\\")) or ".." in parts or (parts and ":" in parts[0]):
        raise BundleError(f"Zip member '{name}' has a path outside the bundle folder.")
    if (member.external_attr >> 16) & 0o170000 == 0o120000:
        raise BundleError(f"Zip member '{name}' is a symbolic link; bundles hold plain files only.")


def _root(archive_name: str, files: dict[str, zipfile.ZipInfo]) -> str:
    """The folder prefix bundle.yaml sits under: '' at the top level, or one top-level folder."""
    if "bundle.yaml" in files:
        return ""
    candidates = [name[: -len("bundle.yaml")] for name in files if name.count("/") == 1]
    candidates = [c for c in candidates if f"{c}bundle.yaml" in files]
    if len(candidates) == 1:
        return candidates[0]
    raise BundleError(f"{archive_name} has no bundle.yaml at its top level or in a single top-level folder.")


def referenced_paths(spec: dict) -> set[str]:
    """bundle.yaml and the files it names, as bundle-relative POSIX paths."""
    paths = {"bundle.yaml"}
    for key in ("model", "background", "reference", "challenger"):
        section = spec.get(key)
        if isinstance(section, dict) and isinstance(section.get("path"), str):
            paths.add(PurePosixPath(section["path"]).as_posix())
    return paths


def _copy(archive: zipfile.ZipFile, member: zipfile.ZipInfo, out: Path, budget: int, cap: int) -> int:
    """Copy one member to `out`; return the bytes written. `budget` is what the cap leaves."""
    written = 0
    with archive.open(member) as source, out.open("wb") as target:
        while chunk := source.read(CHUNK_BYTES):
            written += len(chunk)
            if written > member.file_size:
                raise BundleTooLarge(
                    f"Zip member '{member.filename}' unpacks to more than the {member.file_size:,} bytes "
                    "its header declares; the bundle is refused."
                )
            if written > budget:
                raise BundleTooLarge(
                    f"Zip member '{member.filename}' takes the bundle past the {cap:,} bytes it may "
                    "unpack to (MODEL_BUNDLE_MAX_UNPACKED_BYTES)."
                )
            target.write(chunk)
    return written


def _members(path: Path, archive: zipfile.ZipFile, cap: int) -> dict[str, zipfile.ZipInfo]:
    files: dict[str, zipfile.ZipInfo] = {}
    for member in archive.infolist():
        _check_name(member)
        if not member.is_dir():
            files[PurePosixPath(member.filename.replace("\\", "/")).as_posix()] = member
    declared = sum(m.file_size for m in files.values())
    if declared > cap:
        largest = max(files.values(), key=lambda m: m.file_size)
        raise BundleTooLarge(
            f"{path.name} declares {declared:,} bytes unpacked, more than the {cap:,} a bundle may hold "
            f"(MODEL_BUNDLE_MAX_UNPACKED_BYTES); its largest member is '{largest.filename}' "
            f"({largest.file_size:,} bytes)."
        )
    return files


def extract_zip(path: Path, target: Path, *, max_unpacked_bytes: int) -> Path:
    """Unpack the bundle zip at `path` under `target` and return the bundle's folder."""
    try:
        archive = zipfile.ZipFile(path)
    except zipfile.BadZipFile as exc:
        raise BundleError(f"{path.name} is not a readable zip file: {exc}.") from exc
    try:
        with archive:
            files = _members(path, archive, max_unpacked_bytes)
            root = _root(path.name, files)
            spec_member = files[f"{root}bundle.yaml"]
            if spec_member.file_size > MAX_SPEC_BYTES:
                raise BundleError(
                    f"bundle.yaml is {spec_member.file_size:,} bytes; at most {MAX_SPEC_BYTES:,} are "
                    "accepted (it describes the bundle; data belongs in its parquet files)."
                )
            spec = parse_spec(archive.read(spec_member))
            wanted = {f"{root}{name}" for name in referenced_paths(spec)}
            for name, member in files.items():
                if name not in wanted:
                    raise BundleError(
                        f"Zip member '{member.filename}' is not a file bundle.yaml names (model, "
                        "background, reference, challenger); remove it from the zip."
                    )
            budget = max_unpacked_bytes
            for name, member in files.items():
                out = target / name
                out.parent.mkdir(parents=True, exist_ok=True)
                budget -= _copy(archive, member, out, budget, max_unpacked_bytes)
    except (zipfile.BadZipFile, zlib.error, EOFError) as exc:
        # A member whose CRC or compressed data is damaged.
        raise BundleError(f"{path.name} is a damaged zip file: {exc}.") from exc
    return target / root if root else target
