"""Limits on what one archive may hold: part of a run's configuration, enforced by
:mod:`bridge_downstream.ingest.safe_archive`."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ArchiveLimits:
    max_archive_bytes: int = 1 << 30  # compressed size of one archive
    max_member_bytes: int = 512 << 20  # inflated size of one member
    max_total_bytes: int = 2 << 30  # inflated size of all members
    max_ratio: float = 200.0  # inflated / compressed, per member
    max_members: int = 10_000
    ratio_floor_bytes: int = 1 << 20  # tiny members may compress very well


# Frozen, so one instance serves as every default.
DEFAULT_LIMITS = ArchiveLimits()
