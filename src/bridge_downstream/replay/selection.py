"""Choosing invalid records (by record, reason, assessment) and listing them for people."""

from __future__ import annotations

import posixpath
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from bridge_downstream.replay.invalid_store import (
    StoredEntry,
    entry_assessment,
    entry_messages,
    entry_record_id,
)


@dataclass(frozen=True)
class Selection:
    """Which entries: all of them, or those matching every given filter.

    ``records`` match the record id, the source key or its file name, or an
    identity prefix (8+ characters); ``reason`` is a case-insensitive
    substring of the reason or of any error message; ``assessments`` match
    the assessment id exactly.
    """

    records: tuple[str, ...] = ()
    reason: str | None = None
    assessments: tuple[str, ...] = ()
    all: bool = False

    @property
    def empty(self) -> bool:
        return not (self.records or self.reason or self.assessments)

    def matches(self, entry: dict) -> bool:
        if self.records and not any(record_matches(entry, value) for value in self.records):
            return False
        if self.reason:
            needle = self.reason.lower()
            texts = [str(entry.get("reason") or "")] + entry_messages(entry)
            if not any(needle in text.lower() for text in texts):
                return False
        return not (self.assessments and entry_assessment(entry) not in self.assessments)

    def to_json(self) -> dict:
        return {
            "records": list(self.records),
            "reason": self.reason,
            "assessments": list(self.assessments),
            "all": self.all,
        }


def record_matches(entry: dict, value: str) -> bool:
    key = str(entry.get("source_key") or "")
    identity = str(entry.get("identity") or "")
    return (
        value == entry_record_id(entry)
        or value == str((entry.get("metadata") or {}).get("recordid") or "")
        or (key and value in (key, posixpath.basename(key)))
        or (len(value) >= 8 and identity.startswith(value))
    )


def select(entries: Iterable[StoredEntry], selection: Selection) -> list[StoredEntry]:
    return [stored for stored in entries if selection.matches(stored.entry)]


def summary_row(entry: dict) -> dict[str, str]:
    """The columns of ``invalid list``."""
    return {
        "record_id": entry_record_id(entry),
        "assessment": entry_assessment(entry),
        "reason": str(entry.get("reason") or ""),
        "source": str(entry.get("source") or ""),
        "identity": str(entry.get("identity") or "")[:16],
    }


def format_table(entries: Sequence[dict], reason_width: int = 72) -> str:
    rows = [summary_row(e) for e in entries]
    for row in rows:
        if len(row["reason"]) > reason_width:
            row["reason"] = row["reason"][: reason_width - 3] + "..."
    columns = ("record_id", "assessment", "reason", "source")
    headers = {"record_id": "RECORD ID", "assessment": "ASSESSMENT", "reason": "REASON", "source": "SOURCE"}
    widths = {c: max([len(headers[c])] + [len(r[c]) for r in rows]) for c in columns}
    lines = ["  ".join(headers[c].ljust(widths[c]) for c in columns).rstrip()]
    lines += ["  ".join(r[c].ljust(widths[c]) for c in columns).rstrip() for r in rows]
    return "\n".join(lines)
