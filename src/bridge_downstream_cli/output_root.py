"""An output root knows its profile: ``pipeline.json`` at the root, written at first use.

A root's NDJSON was bucketed by one profile, and only that profile publishes
it right (an MTB publish of recover rows gives null columns, default
partition folders, no dedup and no deletions, and exits 0). So the first
command that writes a root records its profile and registry there; later
commands take them from it when they are not given, and refuse a profile
that differs. A registry that changed is allowed (a registry fix is the
reason to re-ingest) and recorded, with the version it replaced.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from bridge_downstream.common import layout
from bridge_downstream_cli.errors import UsageError


@dataclass(frozen=True)
class RootRecord:
    profile: str  # a built-in profile's name, or a profile file's absolute path
    profile_name: str
    registry: str | None  # where the registry was loaded from (None: the profile needs none)
    registry_version: str | None
    previous_registry_version: str | None = None

    @classmethod
    def read(cls, root: Path) -> RootRecord | None:
        path = root / layout.ROOT_RECORD_NAME
        if not path.is_file():
            return None
        try:
            raw = json.loads(path.read_text())
            return cls(
                profile=raw["profile"],
                profile_name=raw["profile_name"],
                registry=raw.get("registry"),
                registry_version=raw.get("registry_version"),
                previous_registry_version=raw.get("previous_registry_version"),
            )
        except (ValueError, KeyError, TypeError) as error:
            raise UsageError(f"{path} is damaged ({error}): fix it, or remove it to record the next run's") from None

    def write(self, root: Path) -> None:
        root.mkdir(parents=True, exist_ok=True)
        document = {
            "profile": self.profile,
            "profile_name": self.profile_name,
            "registry": self.registry,
            "registry_version": self.registry_version,
            "previous_registry_version": self.previous_registry_version,
            "recorded_at": datetime.now(UTC).isoformat(timespec="seconds"),
        }
        (root / layout.ROOT_RECORD_NAME).write_text(json.dumps(document, indent=2) + "\n")


def profile_reference(profile: str) -> str:
    """A built-in profile by name; a profile file by absolute path (the record means the same from anywhere)."""
    path = Path(profile)
    return str(path.resolve()) if path.suffix in (".yaml", ".yml") or path.is_file() else profile


def check_profile(root: Path, given: str, loaded_name: str) -> None:
    """Refuse a profile other than the one ``root`` recorded (if it recorded one)."""
    record = RootRecord.read(root)
    if record is None or loaded_name == record.profile_name or profile_reference(given) == record.profile:
        return
    raise UsageError(
        f"{root} holds data of the {record.profile_name!r} profile, not {loaded_name!r}: "
        f"drop --profile, or use another --output"
    )


def record_root(
    root: Path, profile: str, profile_name: str, registry: str | None, registry_version: str | None
) -> str | None:
    """Record the root's profile and registry at first use, and a changed
    registry later; the registry version it replaced, if it changed."""
    record = RootRecord.read(root)
    if record is not None and record.registry_version == registry_version and record.registry == registry:
        return None
    changed_from = (
        record.registry_version if record is not None and record.registry_version != registry_version else None
    )
    RootRecord(
        profile=record.profile if record is not None else profile_reference(profile),
        profile_name=record.profile_name if record is not None else profile_name,
        registry=registry,
        registry_version=registry_version,
        previous_registry_version=changed_from or (record.previous_registry_version if record else None),
    ).write(root)
    return changed_from
