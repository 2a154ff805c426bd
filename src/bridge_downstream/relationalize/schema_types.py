"""JSON Schema (draft-07) -> neutral type tree, without looking at any data.

``schema_to_type(schema, resolve)`` follows ``$ref`` through a caller-supplied
``resolve(ref, base_uri) -> (schema, new_base_uri)`` callable (the registry's
resolver); without one, only local ``#/...`` pointers into the document being
read are followed.

Mapping (see docs/relationalize.md):

- ``integer`` -> bigint, ``number`` -> double, ``boolean`` -> boolean, ``string`` -> string;
  ``"null"`` alongside another type is ignored (columns are nullable);
  several non-null types -> merged with :func:`types.merge` (integer+number -> double, otherwise string);
- ``object`` with ``properties`` -> struct, fields in schema property order;
  ``object`` without ``properties`` but with an ``additionalProperties`` schema or
  ``patternProperties`` -> map (value types merged);
  ``object`` with neither -> string (JSON text of the object, e.g. ``{}``);
- ``array`` -> array of the ``items`` type; tuple ``items`` (a list) and
  ``additionalItems`` are merged into one element type;
- no ``type``: deduced from ``properties``/``items``/``enum``/``const``; otherwise
  unconstrained -> string (JSON text);
- ``allOf``: the members are combined (constraint-only members ignored);
  ``oneOf``/``anyOf``: variant types merged (compatible object variants become one
  struct with the union of their properties; conflicting leaves widen);
- recursive ``$ref`` cycles -> string (JSON text) at the point of recursion;
- a ``$ref`` that cannot be resolved (real v0 schemas point at anchors that do not
  exist) -> string (JSON text), unless ``strict=True`` (then the resolver's error).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from urllib.parse import urldefrag, urljoin

from bridge_downstream.relationalize.types import (
    BIGINT_T,
    BOOLEAN_T,
    DOUBLE_T,
    STRING_T,
    Array,
    EmptyObject,
    Map,
    Null,
    Struct,
    Type,
    Unconstrained,
    finalize,
    merge_all,
)

Resolver = Callable[[str, str], tuple[Any, str]]

_TYPED_KEYWORDS = (
    "type",
    "properties",
    "additionalProperties",
    "patternProperties",
    "items",
    "additionalItems",
    "enum",
    "const",
    "$ref",
    "oneOf",
    "anyOf",
    "allOf",
)


def schema_to_type(
    schema: Any,
    resolve: Resolver | None = None,
    base_uri: str | None = None,
    *,
    strict: bool = False,
    finalized: bool = True,
) -> Type:
    """The finalized type tree of ``schema`` (a top-level ``array`` schema gives an Array).
    ``finalized=False``: with the placeholders (:class:`~.types.EmptyObject` for
    an object without properties, ...) that data may extend (:mod:`.schema_extension`)."""
    if base_uri is None and isinstance(schema, dict) and isinstance(schema.get("$id"), str):
        base_uri = schema["$id"]
    reader = _Reader(schema, resolve, base_uri or "", strict)
    partial = reader.read(schema, base_uri or "", ())
    return finalize(partial) if finalized else partial


def root_row_type(
    schema: Any,
    resolve: Resolver | None = None,
    base_uri: str | None = None,
    *,
    strict: bool = False,
    finalized: bool = True,
) -> Type:
    """The type of one *root row*: the element type for a top-level-array schema
    (each element is a row), otherwise the document type."""
    t = schema_to_type(schema, resolve, base_uri, strict=strict, finalized=finalized)
    if isinstance(t, Array):
        return t.element
    return t


class _Reader:
    def __init__(self, root: Any, resolve: Resolver | None, root_base: str, strict: bool):
        self.root = root
        self.resolve = resolve
        self.root_base = root_base
        self.strict = strict

    # --- $ref -----------------------------------------------------------
    def _deref(self, ref: str, base: str) -> tuple[Any, str]:
        if self.resolve is not None:
            return self.resolve(ref, base)
        if not ref.startswith("#"):
            raise ValueError(f"cannot resolve $ref {ref!r} without a resolver")
        return _pointer(self.root, ref[1:]), base

    # --- main -----------------------------------------------------------
    def read(self, schema: Any, base: str, stack: tuple) -> Type:
        if schema is True or schema == {}:
            return Unconstrained()
        if schema is False:
            return Null()
        if not isinstance(schema, dict):
            return Unconstrained()
        if isinstance(schema.get("$id"), str):
            base = urldefrag(urljoin(base, schema["$id"]))[0] if not schema["$id"].startswith("#") else base
        if "$ref" in schema:  # draft-07: siblings of $ref are ignored
            ref = schema["$ref"]
            key = urljoin(base, ref) if base else ref
            if key in stack:
                return STRING_T
            try:
                target, new_base = self._deref(ref, base)
            except Exception:
                if self.strict:
                    raise
                return STRING_T
            return self.read(target, new_base, stack + (key,))

        parts: list[Type] = []
        own = self._own_type(schema, base, stack)
        if own is not None:
            parts.append(own)
        for member in schema.get("allOf", []) or []:
            if _is_constraint_only(member):
                continue
            parts.append(self.read(member, base, stack))
        for keyword in ("oneOf", "anyOf"):
            variants = [v for v in (schema.get(keyword) or []) if not _is_constraint_only(v)]
            if variants:
                parts.append(_merge_variants([self.read(v, base, stack) for v in variants]))
        if not parts:
            return Unconstrained()
        return _combine_all(parts)

    def _own_type(self, schema: dict, base: str, stack: tuple) -> Type | None:
        declared = schema.get("type")
        if isinstance(declared, str):
            kinds = [declared]
        elif isinstance(declared, list):
            kinds = list(declared)
        else:
            kinds = []
            if any(k in schema for k in ("properties", "additionalProperties", "patternProperties")):
                kinds.append("object")
            if any(k in schema for k in ("items", "additionalItems")):
                kinds.append("array")
            if not kinds and ("enum" in schema or "const" in schema):
                values = list(schema.get("enum") or []) + ([schema["const"]] if "const" in schema else [])
                return merge_all(_literal_type(v) for v in values) if values else Unconstrained()
            if not kinds:
                return None
        types: list[Type] = []
        for kind in kinds:
            if kind == "null":
                types.append(Null())
            elif kind == "integer":
                types.append(BIGINT_T)
            elif kind == "number":
                types.append(DOUBLE_T)
            elif kind == "boolean":
                types.append(BOOLEAN_T)
            elif kind == "string":
                types.append(STRING_T)
            elif kind == "object":
                types.append(self._object(schema, base, stack))
            elif kind == "array":
                types.append(self._array(schema, base, stack))
            else:
                types.append(Unconstrained())
        return _merge_variants(types)

    def _object(self, schema: dict, base: str, stack: tuple) -> Type:
        props = schema.get("properties") or {}
        if props:
            return Struct(tuple((name, self.read(sub, base, stack)) for name, sub in props.items()))
        value_schemas = list((schema.get("patternProperties") or {}).values())
        additional = schema.get("additionalProperties")
        if isinstance(additional, dict):
            value_schemas.append(additional)
        if value_schemas:
            return Map(_merge_variants([self.read(s, base, stack) for s in value_schemas]))
        return EmptyObject()

    def _array(self, schema: dict, base: str, stack: tuple) -> Type:
        items = schema.get("items")
        if isinstance(items, list):
            element_schemas = list(items)
            if isinstance(schema.get("additionalItems"), dict):
                element_schemas.append(schema["additionalItems"])
            if not element_schemas:
                return Array(Unconstrained())
            # a tuple's positions are combined like allOf of compatible parts:
            # constraint-only entries ({"enum": [...]} on a string) narrow, they do not conflict
            return Array(_merge_variants([self.read(s, base, stack) for s in element_schemas]))
        if items is None:
            return Array(Unconstrained())
        return Array(self.read(items, base, stack))


def _merge_variants(types: list[Type]) -> Type:
    """oneOf/anyOf/type-list: merge; an unconstrained variant makes the result string."""
    if any(isinstance(t, Unconstrained) for t in types):
        return STRING_T
    return merge_all(types)


def _combine_all(types: list[Type]) -> Type:
    """allOf-like combination: unconstrained parts add nothing."""
    concrete = [t for t in types if not isinstance(t, Unconstrained)]
    if not concrete:
        return Unconstrained()
    return merge_all(concrete)


def _is_constraint_only(schema: Any) -> bool:
    return isinstance(schema, dict) and not any(k in schema for k in _TYPED_KEYWORDS)


def _literal_type(value: Any) -> Type:
    if value is None:
        return Null()
    if isinstance(value, bool):
        return BOOLEAN_T
    if isinstance(value, int):
        return BIGINT_T
    if isinstance(value, float):
        return DOUBLE_T
    if isinstance(value, str):
        return STRING_T
    return STRING_T


def _pointer(document: Any, pointer: str) -> Any:
    node = document
    if pointer in ("", "/"):
        return node
    for token in pointer.lstrip("/").split("/"):
        token = token.replace("~1", "/").replace("~0", "~")
        node = node[int(token)] if isinstance(node, list) else node[token]
    return node
