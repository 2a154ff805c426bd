"""Limits on what one archive may hold: part of a run's configuration, enforced by
:mod:`bridge_downstream.ingest.safe_archive`."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ArchiveLimits:
    max_archive_bytes: int = 1 << 30  # compressed size of one archive
    max_member_bytes: int = 512 << 20  # inflated size of one member
    max_total_bytes: int = 2 << 30  # inflated size of all members
    # Inflated / compressed: per member, and for all members together. Both
    # apply only above ``ratio_floor_bytes`` (a tiny member may compress very
    # well). The archive-wide ratio is what stops many small members: 2,000
    # members of 1 MiB of spaces each pass every per-member check and stay
    # under max_total_bytes, yet a 2.9 MB upload would inflate to 2 GiB
    # (ratio ~740). A rule on member count times size would refuse a large
    # export of many honest files too; JSON, and the NDJSON of exports,
    # compresses 5-40 times (the real recover export: 36), so a ratio of 200
    # refuses only what is built to inflate, whatever its number of members.
    max_ratio: float = 200.0
    max_members: int = 10_000
    ratio_floor_bytes: int = 1 << 20
    # Rows one archive may give. Every row carries the record's added fields
    # (100-300 bytes), so without a bound a small archive of tiny elements
    # ([0,0,...]: 2 bytes a row) writes 100 times what it inflates to. The
    # largest real data seen: an export file of 59,005 lines, MTB uploads of
    # a few thousand rows; an ndjson-export deployment with larger exports
    # raises it.
    max_rows: int = 1_000_000
    # Datasets are found by a member's base name, so ``extra/weather.json``
    # would pass for ``weather.json``: a member in a folder that maps to a
    # dataset is refused unless this is set.
    allow_subfolders: bool = False


# Frozen, so one instance serves as every default.
DEFAULT_LIMITS = ArchiveLimits()
