"""Instants: the one rule for reading a point in time from text, in Python and
in Spark SQL (dedup's ordering fields, and the timestamp columns of the tables).

The grammar is ISO 8601 in extended format, a date alone or a date and time --
minutes, optional seconds and fraction -- with ``Z``, an offset
``+hh:mm``/``-hh:mm`` (hours 00-14) or no zone. A date alone is its midnight
UTC, a time without a zone is UTC, and fraction digits beyond the microsecond
are dropped (as Spark drops them). Text that spells no instant (another
grammar, February 30, hour 24, second 60) reads as none.
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta

# Written for Python's ``re`` and Java's regex (Spark) alike: ASCII digits
# spelled out (Python's ``\d`` takes any Unicode digit), year 0000 left out
# (Python's calendar starts at year 1, Java's does not), no anchors (each
# engine anchors it to the whole value its own way).
INSTANT_PATTERN = (
    r"(?!0000)([0-9]{4})-([0-9]{2})-([0-9]{2})"
    r"(?:T([0-9]{2}):([0-9]{2})(?::([0-9]{2})(?:\.([0-9]{1,9}))?)?(Z|[+-](?:0[0-9]|1[0-4]):[0-5][0-9])?)?"
)
_INSTANT = re.compile(INSTANT_PATTERN)
_EPOCH = datetime(1970, 1, 1)
_MICROSECOND = timedelta(microseconds=1)

# An instant spelled with its zone, for Spark's parser; fraction digits beyond
# the microsecond are dropped, as Python drops them.
_ZONED_INSTANT = "yyyy-MM-dd'T'HH:mm[:ss][.SSSSSSSSS]XXX"


def instant_micros(value: object) -> int | None:
    """Microseconds since 1970-01-01T00:00:00Z of the instant ``value`` spells
    (:data:`INSTANT_PATTERN`); None when it spells none, or is not text."""
    if not isinstance(value, str):
        return None
    match = _INSTANT.fullmatch(value)
    if match is None:
        return None
    year, month, day, hour, minute, second, fraction, zone = match.groups()
    try:
        moment = datetime(int(year), int(month), int(day), int(hour or 0), int(minute or 0), int(second or 0))
    except ValueError:
        return None
    micros = (moment - _EPOCH) // _MICROSECOND + int((fraction or "")[:6].ljust(6, "0"))
    if zone and zone != "Z":
        offset_minutes = int(zone[1:3]) * 60 + int(zone[4:6])
        micros -= (1 if zone[0] == "+" else -1) * offset_minutes * 60_000_000
    return micros


def _sql_text(text: str) -> str:
    """A Spark SQL string literal (its parser unescapes backslashes)."""
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def instant_timestamp_sql(text: str) -> str:
    """Spark SQL for the timestamp the string expression ``text`` spells, null
    where it spells none: :func:`instant_micros`' rule. The pattern decides
    what is an instant (anchored with ``\\z``: Java's ``$`` lets a trailing
    newline through); the value is then given a zone where it has none and
    parsed, so February 30 or hour 24 give null, with or without ANSI mode."""
    anchored = _sql_text("^(?:" + INSTANT_PATTERN + r")\z")
    dated = f"regexp_replace({text}, {_sql_text('^([0-9]{4}-[0-9]{2}-[0-9]{2})$')}, {_sql_text('$1T00:00')})"
    zoned = f"CASE WHEN {dated} RLIKE {_sql_text('T[0-9:.]+$')} THEN concat({dated}, 'Z') ELSE {dated} END"
    return f"CASE WHEN {text} RLIKE {anchored} THEN try_to_timestamp({zoned}, {_sql_text(_ZONED_INSTANT)}) END"


def instant_micros_column(name: str):
    """The Spark column of :func:`instant_micros` of the string column ``name``."""
    from pyspark.sql import functions as F

    return F.expr(f"unix_micros({instant_timestamp_sql('`' + name.replace('`', '``') + '`')})")
