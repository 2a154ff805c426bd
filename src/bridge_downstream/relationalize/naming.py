"""Column and table name rules (safe for Parquet, Athena, Glue and Hive).

1. Flattening joins the JSON keys of a path with ``_`` (``a.b.c`` -> ``a_b_c``).
2. :func:`sanitize`: every character outside ``[A-Za-z0-9_]`` becomes ``_``;
   leading underscores are dropped (``_id`` -> ``id``) unless nothing else is
   left; an empty name becomes ``col``; a name starting with a digit gets the
   prefix ``c_`` (``2x`` -> ``c_2x``); names longer than 255 characters are cut
   and end with ``_`` + 8 hex digits of their SHA-1.
3. :class:`NameAllocator`: within one table, names are unique
   *case-insensitively* (Athena and Glue lower-case them).  Reserved names
   (``id``, ``index``/``key``, the carried key columns, the enrichment columns)
   are allocated first; every other name, in column order, takes the first free
   of ``name``, ``name_2``, ``name_3``, ... (``Type`` and ``type`` -> ``Type``,
   ``type_2``); the plan lists each document column so renamed
   (``RelationalizePlan.renamed_columns``).
4. Table names are lower case: ``dataset_<dataset id>`` for the root,
   ``<parent table>_<column>`` for a child; a clash with an earlier table (in plan
   order) also takes ``_2``, ``_3``, ...
"""

from __future__ import annotations

import hashlib
import re

_UNSAFE = re.compile(r"[^A-Za-z0-9_]")
MAX_NAME = 255


def sanitize(name: str) -> str:
    text = _UNSAFE.sub("_", name)
    stripped = text.lstrip("_")
    text = stripped if stripped else text
    if not text:
        text = "col"
    if text[0].isdigit():
        text = "c_" + text
    if len(text) > MAX_NAME:
        digest = hashlib.sha1(text.encode("utf-8")).hexdigest()[:8]
        text = text[: MAX_NAME - 9] + "_" + digest
    return text


def join_name(*parts: str) -> str:
    """Flattened column name of a path of JSON keys / name parts."""
    return sanitize("_".join(p for p in parts if p != ""))


class NameAllocator:
    """Deterministic case-insensitive de-duplication within one namespace."""

    def __init__(self, reserved: list[str] | tuple[str, ...] = ()):
        self._taken: set[str] = set()
        for name in reserved:
            self._taken.add(name.lower())

    def take(self, name: str) -> str:
        """Claim ``name`` itself (must be free): used for reserved columns."""
        if name.lower() in self._taken:
            raise ValueError(f"name {name!r} already taken")
        self._taken.add(name.lower())
        return name

    def allocate(self, wanted: str) -> str:
        candidate = wanted
        n = 1
        while candidate.lower() in self._taken:
            n += 1
            suffix = f"_{n}"
            candidate = wanted[: MAX_NAME - len(suffix)] + suffix
        self._taken.add(candidate.lower())
        return candidate


def root_table_name(dataset_id: str) -> str:
    return ("dataset_" + sanitize(dataset_id)).lower()


def child_table_name(parent_table: str, column: str) -> str:
    return sanitize(f"{parent_table}_{column}").lower()
