"""What ``bridge-downstream`` exits with: the one place the codes and their rule live.

A script or a scheduler reads the code, not the summary, so each code means
one thing (README, "Exit codes"):

* ``OK`` (0): every archive ended processed, or skipped for a benign reason
  (already ingested, a copy of another archive of the run, a file no dataset
  takes), and invalid archives, if any, are within ``--max-invalid``;
* ``INVALID`` (1): more archives were invalid than ``--max-invalid`` allows;
* ``USAGE`` (2): the options, the configuration or the inputs named are wrong
  (nothing was changed);
* ``NOTHING`` (3): no archive was found, or none could be processed: nothing
  new can be published.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import IntEnum

from bridge_downstream_cli.errors import UsageError


class ExitCode(IntEnum):
    OK = 0
    INVALID = 1
    USAGE = 2
    NOTHING = 3


@dataclass(frozen=True)
class InvalidTolerance:
    """How many invalid archives a run may have and still succeed: a count, or a percentage of the archives."""

    count: int | None = 0
    percent: float | None = None

    @classmethod
    def parse(cls, text: str) -> InvalidTolerance:
        match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*(%?)\s*", text)
        if not match or (not match.group(2) and "." in match.group(1)):
            raise UsageError(f"--max-invalid takes a count (N) or a percentage (P%), not {text!r}")
        if match.group(2):
            percent = float(match.group(1))
            if percent > 100:
                raise UsageError(f"--max-invalid {text}: a percentage is at most 100%")
            return cls(count=None, percent=percent)
        return cls(count=int(match.group(1)))

    def exceeded_by(self, invalid: int, total: int) -> bool:
        if self.percent is not None:
            return total > 0 and invalid * 100 > self.percent * total
        return invalid > (self.count or 0)

    def __str__(self) -> str:
        return f"{self.percent:g}%" if self.percent is not None else str(self.count)


def ingest_exit_code(archives: dict[str, int], tolerance: InvalidTolerance) -> ExitCode:
    """The code of an ingest's archive counts (``total``, ``processed``, ``invalid``, ``skipped``)."""
    if not archives.get("total"):
        return ExitCode.NOTHING
    if tolerance.exceeded_by(archives.get("invalid", 0), archives["total"]):
        return ExitCode.INVALID
    if not archives.get("processed") and not archives.get("skipped"):
        return ExitCode.NOTHING
    return ExitCode.OK
