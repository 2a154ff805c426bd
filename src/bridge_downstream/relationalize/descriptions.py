"""The JSON Schema's ``description`` of each column of a plan, for the catalogs'
column comments.

A column's description is the one of the schema its JSON path leads to, from
its table's element: ``scores_finalTheta`` reads
``properties.scores.properties.finalTheta``; a child table's columns read
under the array's ``items`` (or a map's ``additionalProperties`` and
``patternProperties``). On the way, ``$ref`` is followed through the
resolver, and ``allOf``/``oneOf``/``anyOf`` members are searched in order: the
first description found wins. A description written beside a ``$ref``
(which draft-07 otherwise ignores) comes before the target's: it is the
author's word for this property. Columns the schema does not declare (keys
found in the data, the key and enrichment columns) get none.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any
from urllib.parse import urldefrag, urljoin

from bridge_downstream.relationalize.plan import (
    KIND_MAP,
    KIND_ROOT,
    ROLE_LINK,
    ROLE_VALUE,
    RelationalizePlan,
    document_path,
)
from bridge_downstream.relationalize.schema_types import Resolver, _pointer

# A schema and the base URI its relative $refs resolve against.
Located = tuple[Any, str]


def column_descriptions(
    schema: Any, resolve: Resolver | None, base_uri: str | None, plan: RelationalizePlan
) -> dict[str, dict[str, str]]:
    """``{table: {column: description}}`` for the plan's columns the schema
    describes (tables and columns without one are left out)."""
    walker = _Walker(schema, resolve)
    base = base_uri or (schema.get("$id") if isinstance(schema, dict) else None) or ""
    root = [(schema, base)]
    elements: dict[str, list[Located]] = {}
    found: dict[str, dict[str, str]] = {}
    for table in plan.tables:
        if table.kind == KIND_ROOT:
            # a top-level array schema: each element is a root row
            element = root + walker.items(root)
        else:
            container = walker.path(elements.get(table.parent or "", []), table.source_path)
            element = walker.map_values(container) if table.kind == KIND_MAP else walker.items(container)
        elements[table.name] = element
        described = {}
        for column in table.columns:
            if column.role in (ROLE_VALUE, ROLE_LINK):
                path = document_path(column.path) if table.kind == KIND_ROOT else column.path
                text = walker.description(walker.path(element, path))
                if text:
                    described[column.name] = text
        if described:
            found[table.name] = described
    return found


class _Walker:
    def __init__(self, root: Any, resolve: Resolver | None):
        self.root = root
        self.resolve = resolve

    def expand(self, located: Located, seen: frozenset[str] = frozenset()) -> Iterator[Located]:
        """The schema and, in order, the ones it stands for: its ``$ref``'s
        target and its ``allOf``/``oneOf``/``anyOf`` members (a cycle stops)."""
        node, base = located
        if not isinstance(node, dict):
            return
        declared_id = node.get("$id")
        if isinstance(declared_id, str) and not declared_id.startswith("#"):
            base = urldefrag(urljoin(base, declared_id))[0]
        yield node, base
        ref = node.get("$ref")
        if isinstance(ref, str):
            key = urljoin(base, ref) if base else ref
            target = self._deref(ref, base)
            if target is not None and key not in seen:
                yield from self.expand(target, seen | {key})
            return  # draft-07: the other keywords beside $ref are ignored
        for keyword in ("allOf", "oneOf", "anyOf"):
            members = node.get(keyword)
            for member in members if isinstance(members, list) else []:
                yield from self.expand((member, base), seen)

    def _deref(self, ref: str, base: str) -> Located | None:
        try:
            if self.resolve is not None:
                return self.resolve(ref, base)
            if ref.startswith("#"):
                return _pointer(self.root, ref[1:]), base
        except Exception:  # noqa: BLE001 - an unresolvable $ref describes nothing, as it types nothing
            return None
        return None

    def path(self, located: list[Located], path: list[str]) -> list[Located]:
        """The schemas of the property at ``path`` (JSON keys) of any of ``located``."""
        for key in path:
            located = [
                (properties[key], base)
                for node, base in (found for schema in located for found in self.expand(schema))
                if isinstance(properties := node.get("properties"), dict) and key in properties
            ]
        return located

    def items(self, located: list[Located]) -> list[Located]:
        """The element schemas of arrays (``items``, a tuple's entries, ``additionalItems``)."""
        found: list[Located] = []
        for node, base in (found for schema in located for found in self.expand(schema)):
            items = node.get("items")
            entries = items if isinstance(items, list) else [items] if isinstance(items, dict) else []
            if isinstance(node.get("additionalItems"), dict):
                entries = [*entries, node["additionalItems"]]
            found.extend((entry, base) for entry in entries)
        return found

    def map_values(self, located: list[Located]) -> list[Located]:
        """The value schemas of objects used as maps."""
        found: list[Located] = []
        for node, base in (found for schema in located for found in self.expand(schema)):
            patterns = node.get("patternProperties")
            values = list(patterns.values()) if isinstance(patterns, dict) else []
            if isinstance(node.get("additionalProperties"), dict):
                values.append(node["additionalProperties"])
            found.extend((value, base) for value in values)
        return found

    def description(self, located: list[Located]) -> str | None:
        for schema in located:
            for node, _ in self.expand(schema):
                text = node.get("description")
                if isinstance(text, str) and text.strip():
                    return text.strip()
        return None
