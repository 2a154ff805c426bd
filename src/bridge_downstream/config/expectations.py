"""Data-quality expectations as configuration (docs/quality.md, "Expectations").

A profile's ``expectations:`` section, and a file a study adds with
``--expectations FILE``, map a dataset id (``"*"``: every dataset) to its
tables (``root``: the dataset's root table) and each table to a list of
expectations. Parsed and checked here, when the profile loads, so a profile
that loads can be run on any version; :mod:`bridge_downstream.quality` runs them.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import yaml

ANY_DATASET = "*"
ROOT_TABLE = "root"
POLICIES = ("warn", "block")
DEFAULT_POLICY = "warn"
# kind -> (keys it needs, keys it may have), besides ``kind`` and ``policy``
KINDS: dict[str, tuple[frozenset[str], frozenset[str]]] = {
    "between": (frozenset({"column"}), frozenset({"min", "max"})),
    "not_null": (frozenset({"column"}), frozenset()),
    "in_set": (frozenset({"column", "values"}), frozenset()),
    # ``columns`` absent: the dataset's natural key (Profile.identity_columns)
    "unique": (frozenset(), frozenset({"columns"})),
    "column_exists": (frozenset({"column"}), frozenset()),
    # fractions of the previous version's rows: 0.5 and 1.0 allow 50 % fewer to twice as many
    "row_count_change": (frozenset(), frozenset({"max_decrease", "max_increase"})),
}


class ExpectationError(ValueError):
    pass


@dataclass(frozen=True)
class Expectation:
    kind: str
    policy: str = DEFAULT_POLICY
    column: str | None = None
    columns: tuple[str, ...] = ()
    min: float | None = None
    max: float | None = None
    values: tuple = ()
    max_decrease: float | None = None
    max_increase: float | None = None

    def describe(self) -> str:
        """One line naming what is expected, for reports."""
        subject = self.column or ", ".join(self.columns) or "natural key"
        if self.kind == "between":
            return f"{self.column} between {self.min} and {self.max}"
        if self.kind == "in_set":
            return f"{self.column} in {list(self.values)}"
        if self.kind == "unique":
            return f"({subject}) unique"
        if self.kind == "row_count_change":
            bounds = [
                f"{sign}{bound:.0%}"
                for sign, bound in (("-", self.max_decrease), ("+", self.max_increase))
                if bound is not None
            ]
            return f"rows within {' / '.join(bounds) or 'any change'} of the previous version's"
        return f"{subject} {self.kind.replace('_', ' ')}"


# dataset id (or ANY_DATASET) -> table name (or ROOT_TABLE) -> its expectations
Expectations = dict[str, dict[str, tuple[Expectation, ...]]]


def parse_expectations(value: object, where: str) -> Expectations:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ExpectationError(f"{where}: expectations map datasets to {{table: [expectation, ...]}}")
    parsed: Expectations = {}
    for dataset, tables in value.items():
        if not isinstance(tables, dict):
            raise ExpectationError(f"{where}: expectations.{dataset} maps tables to lists of expectations")
        parsed[str(dataset)] = {}
        for table, items in tables.items():
            if not isinstance(items, list) or not items:
                raise ExpectationError(f"{where}: expectations.{dataset}.{table} is a non-empty list")
            parsed[str(dataset)][str(table)] = tuple(
                _expectation(item, f"{where}: expectations.{dataset}.{table}") for item in items
            )
    return parsed


def _expectation(item: object, where: str) -> Expectation:
    if not isinstance(item, dict) or item.get("kind") not in KINDS:
        raise ExpectationError(f"{where}: {item!r}: kind is one of {sorted(KINDS)}")
    needed, optional = KINDS[item["kind"]]
    keys = set(item) - {"kind", "policy"}
    if not needed <= keys or keys - needed - optional:
        raise ExpectationError(
            f"{where}: {item!r}: a {item['kind']} expectation takes {sorted(needed)} and optionally {sorted(optional)}"
        )
    policy = item.get("policy", DEFAULT_POLICY)
    if policy not in POLICIES:
        raise ExpectationError(f"{where}: {item!r}: policy is one of {POLICIES}")
    numbers = {name: item[name] for name in ("min", "max", "max_decrease", "max_increase") if name in item}
    if any(isinstance(v, bool) or not isinstance(v, int | float) for v in numbers.values()):
        raise ExpectationError(f"{where}: {item!r}: {sorted(numbers)} are numbers")
    if item["kind"] == "between" and not numbers:
        raise ExpectationError(f"{where}: {item!r}: a between expectation names min, max or both")
    if item["kind"] == "in_set" and not isinstance(item["values"], list):
        raise ExpectationError(f"{where}: {item!r}: values is a list")
    columns = item.get("columns", [])
    if not isinstance(columns, list) or not all(isinstance(c, str) for c in columns):
        raise ExpectationError(f"{where}: {item!r}: columns is a list of column names")
    return Expectation(
        kind=item["kind"],
        policy=policy,
        column=item.get("column"),
        columns=tuple(columns),
        values=tuple(item.get("values", ())),
        **numbers,
    )


def merge_expectations(*sets: Expectations) -> Expectations:
    """The expectations of every set, a table's lists one after the other."""
    merged: Expectations = {}
    for expectations in sets:
        for dataset, tables in expectations.items():
            for table, items in tables.items():
                merged.setdefault(dataset, {})[table] = merged.get(dataset, {}).get(table, ()) + items
    return merged


def load_expectations_file(path: str | os.PathLike) -> Expectations:
    """A study's expectations file: YAML (or JSON) with an ``expectations:`` mapping."""
    raw = yaml.safe_load(Path(path).read_text())
    if not isinstance(raw, dict) or "expectations" not in raw:
        raise ExpectationError(f"{path}: an expectations file holds one mapping, `expectations:`")
    return parse_expectations(raw["expectations"], str(path))
