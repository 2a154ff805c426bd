"""Columns read as the text of their values and converted on output: the one
rule, in Python (the Arrow executor, the plan's counts) and in Spark SQL.

A column is read this way when some of its values may not fit its type: a
timestamp (its values are text), and a column whose type was fixed by an
earlier publish or by the schema while the rows hold other values
(docs/publish.md, "The table contract"). Text that converts gives the value;
text that does not is a misfit: the column holds null and the row's
``_rescued_data`` holds the text under the value's path.

The text of a JSON string is the string; of any other value its JSON text (as
both executors read a string column). So a number spelled as a string
(``"5"``) converts to a number column; ``1.0`` does not convert to a bigint.
"""

from __future__ import annotations

import re

from bridge_downstream.common.instants import instant_micros, instant_timestamp_sql
from bridge_downstream.relationalize.types import (
    BIGINT,
    BOOLEAN,
    DECIMAL,
    DECIMAL_DIGITS,
    DOUBLE,
    INT64_MAX,
    INT64_MIN,
    STRING,
    TIMESTAMP,
)

# The spellings each kind converts from, for Python's re and Java's regex alike.
_INTEGER = r"-?(?:0|[1-9][0-9]*)"
_PATTERNS = {
    BIGINT: _INTEGER,
    DECIMAL: r"-?(?:0|[1-9][0-9]{0," + str(DECIMAL_DIGITS - 1) + "})",
    DOUBLE: r"-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][-+]?[0-9]+)?|NaN|-?Infinity",
    BOOLEAN: r"true|false",
}
_COMPILED = {kind: re.compile(pattern) for kind, pattern in _PATTERNS.items()}

# A column of the first kind holds every value of the second as it is.
_COVERS = {
    STRING: {STRING, BIGINT, DOUBLE, BOOLEAN, DECIMAL, TIMESTAMP},
    DOUBLE: {DOUBLE, BIGINT, DECIMAL},
    DECIMAL: {DECIMAL, BIGINT},
    BIGINT: {BIGINT},
    BOOLEAN: {BOOLEAN},
    TIMESTAMP: {TIMESTAMP},
}


def covers(kind: str, data_kind: str) -> bool:
    """Whether a column of ``kind`` holds every value the rows type as ``data_kind``."""
    return data_kind in _COVERS[kind]


def convert_text(kind: str, text: str | None):
    """The value of ``kind`` that ``text`` spells, None when it spells none."""
    if text is None:
        return None
    if kind == STRING:
        return text
    if kind == TIMESTAMP:
        return instant_micros(text)
    if not _COMPILED[kind].fullmatch(text):
        return None
    if kind == BIGINT:
        value = int(text)
        return value if INT64_MIN <= value <= INT64_MAX else None
    if kind == DECIMAL:
        return int(text)
    if kind == DOUBLE:
        return float(text)
    return text == "true"


def converted_sql(kind: str, text: str) -> str:
    """Spark SQL of :func:`convert_text` for the string expression ``text``
    (timestamps as Spark timestamps, the others as their Spark types)."""
    if kind == STRING:
        return text
    if kind == TIMESTAMP:
        return instant_timestamp_sql(text)
    anchored = "'^(?:" + _PATTERNS[kind].replace("\\", "\\\\") + ")\\\\z'"
    if kind == BOOLEAN:
        return f"CASE WHEN {text} RLIKE {anchored} THEN {text} = 'true' END"
    # try_cast: a bigint beyond 64 bits is null in ANSI mode too
    return f"CASE WHEN {text} RLIKE {anchored} THEN try_cast({text} AS {kind}) END"
