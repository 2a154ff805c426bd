"""The neutral type tree: the only vocabulary shared by the schema reader, the
inference pass, the plan and both executors.

Leaves are :class:`Scalar` with one of six kinds (``string``, ``bigint``,
``double``, ``boolean``, ``decimal(38,0)``, ``timestamp`` -- also their Athena/Hive names);
``decimal(38,0)`` holds the integers that do not fit a ``bigint``
(:func:`integer_type`).  Containers are
:class:`Struct` (ordered named fields, the JSON keys as written), :class:`Array`
and :class:`Map` (an object used as a dictionary: string keys, one value type).

:class:`Null`, :class:`EmptyObject` and :class:`Unconstrained` only exist while
a tree is being built (inference, JSON Schema combinators); :func:`finalize`
turns them into ``string`` columns, so a finished tree never contains them.

:func:`merge` is the one unification rule (type drift between records,
``oneOf``/``anyOf`` variants).  It never loses a value: anything that cannot be
represented by both sides widens to ``string``, which both executors fill with
the value's JSON text (a JSON string value is kept as its plain text).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import Any

STRING = "string"
BIGINT = "bigint"
DOUBLE = "double"
BOOLEAN = "boolean"
DECIMAL = "decimal(38,0)"
# An instant in UTC, read from the text of its value (common/instants.py: a
# value that spells no instant is null); only ever declared (by a profile),
# never inferred. Both executors read it as a string and convert it on output.
TIMESTAMP = "timestamp"
SCALAR_KINDS = (STRING, BIGINT, DOUBLE, BOOLEAN, DECIMAL, TIMESTAMP)
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
DECIMAL_DIGITS = 38
# The steps of a type path (fixed_types.py) into an array's element and a map's value.
ARRAY_STEP = "[]"
MAP_STEP = "{}"


@dataclass(frozen=True)
class Scalar:
    kind: str

    def __post_init__(self):
        if self.kind not in SCALAR_KINDS:
            raise ValueError(f"unknown scalar kind {self.kind!r}")


@dataclass(frozen=True)
class Struct:
    fields: tuple[tuple[str, Type], ...]

    def field_names(self) -> list[str]:
        return [name for name, _ in self.fields]

    @cached_property
    def _positions(self) -> dict[str, int]:
        # a document can have 10,000 keys: a scan per lookup made planning and execution quadratic
        positions: dict[str, int] = {}
        for i, (key, _) in enumerate(self.fields):
            positions.setdefault(key, i)
        return positions

    def get(self, name: str) -> Type | None:
        i = self._positions.get(name)
        return None if i is None else self.fields[i][1]

    def index_of(self, name: str) -> int:
        return self._positions[name]


@dataclass(frozen=True)
class Array:
    element: Type


@dataclass(frozen=True)
class Map:
    value: Type


@dataclass(frozen=True)
class Null:
    """Only null (or nothing) seen / allowed. Finalizes to string."""


@dataclass(frozen=True)
class EmptyObject:
    """Only ``{}`` seen / an object schema with no properties. Finalizes to string (JSON text)."""


@dataclass(frozen=True)
class Unconstrained:
    """A schema that allows anything. Finalizes to string (JSON text)."""


Type = Scalar | Struct | Array | Map | Null | EmptyObject | Unconstrained

STRING_T = Scalar(STRING)
BIGINT_T = Scalar(BIGINT)
DOUBLE_T = Scalar(DOUBLE)
BOOLEAN_T = Scalar(BOOLEAN)
DECIMAL_T = Scalar(DECIMAL)
_NUMBERS = (BIGINT, DECIMAL, DOUBLE)  # each holds every value of the kinds before it


def integer_type(value: int) -> Scalar:
    """The narrowest column that holds the integer exactly: bigint, else
    decimal(38,0), else string (its digits as text)."""
    if INT64_MIN <= value <= INT64_MAX:
        return BIGINT_T
    if abs(value) < 10**DECIMAL_DIGITS:
        return DECIMAL_T
    return STRING_T


def scalar(kind: str) -> Scalar:
    return Scalar(kind)


def merge(a: Type, b: Type) -> Type:
    """Unify two types so that every value of either fits the result.

    - equal types: unchanged; ``Null`` is the identity;
    - two numbers: the wider of bigint < decimal(38,0) < double (a double, like
      bigint + double, keeps about 17 significant digits); any other scalar mismatch -> string;
    - struct + struct -> union of fields (a's order, then b's new fields), merged field-wise;
    - ``{}`` + struct/map -> struct/map;  map + struct -> map (values merged);
    - array + array -> array of merged elements;  map + map -> map of merged values;
    - anything else (scalar vs container, array vs object, ``Unconstrained``) -> string.
    """
    if a == b:
        return a
    if isinstance(a, Null):
        return b
    if isinstance(b, Null):
        return a
    if isinstance(a, Scalar) and isinstance(b, Scalar):
        if a.kind in _NUMBERS and b.kind in _NUMBERS:
            return a if _NUMBERS.index(a.kind) > _NUMBERS.index(b.kind) else b
        return STRING_T
    if isinstance(a, EmptyObject) and isinstance(b, (Struct, Map)):
        return b
    if isinstance(b, EmptyObject) and isinstance(a, (Struct, Map)):
        return a
    if isinstance(a, Struct) and isinstance(b, Struct):
        fields = dict(a.fields)
        order = [name for name, _ in a.fields]
        for name, t in b.fields:
            if name in fields:
                fields[name] = merge(fields[name], t)
            else:
                fields[name] = t
                order.append(name)
        return Struct(tuple((name, fields[name]) for name in order))
    if isinstance(a, Array) and isinstance(b, Array):
        return Array(merge(a.element, b.element))
    if isinstance(a, Map) and isinstance(b, Map):
        return Map(merge(a.value, b.value))
    if isinstance(a, Map) and isinstance(b, Struct):
        return Map(_merge_all([a.value] + [t for _, t in b.fields]))
    if isinstance(b, Map) and isinstance(a, Struct):
        return Map(_merge_all([b.value] + [t for _, t in a.fields]))
    return STRING_T


def _merge_all(types) -> Type:
    result: Type = Null()
    for t in types:
        result = merge(result, t)
    return result


def merge_all(types) -> Type:
    return _merge_all(types)


def finalize(t: Type) -> Type:
    """Replace the build-time placeholders: Null/EmptyObject/Unconstrained and
    structs without fields become string (JSON text); recursively."""
    if isinstance(t, (Null, EmptyObject, Unconstrained)):
        return STRING_T
    if isinstance(t, Scalar):
        return t
    if isinstance(t, Struct):
        if not t.fields:
            return STRING_T
        return Struct(tuple((name, finalize(v)) for name, v in t.fields))
    if isinstance(t, Array):
        return Array(finalize(t.element))
    if isinstance(t, Map):
        return Map(finalize(t.value))
    raise TypeError(f"not a type: {t!r}")


def type_to_json(t: Type) -> dict:
    if isinstance(t, Scalar):
        return {"type": t.kind}
    if isinstance(t, Struct):
        return {
            "type": "struct",
            "fields": [{"name": n, "type": type_to_json(v)} for n, v in t.fields],
        }
    if isinstance(t, Array):
        return {"type": "array", "element": type_to_json(t.element)}
    if isinstance(t, Map):
        return {"type": "map", "value": type_to_json(t.value)}
    if isinstance(t, Null):
        return {"type": "null"}
    if isinstance(t, EmptyObject):
        return {"type": "empty_object"}
    if isinstance(t, Unconstrained):
        return {"type": "any"}
    raise TypeError(f"not a type: {t!r}")


def type_from_json(d: dict[str, Any]) -> Type:
    kind = d["type"]
    if kind in SCALAR_KINDS:
        return Scalar(kind)
    if kind == "struct":
        return Struct(tuple((f["name"], type_from_json(f["type"])) for f in d["fields"]))
    if kind == "array":
        return Array(type_from_json(d["element"]))
    if kind == "map":
        return Map(type_from_json(d["value"]))
    if kind == "null":
        return Null()
    if kind == "empty_object":
        return EmptyObject()
    if kind == "any":
        return Unconstrained()
    raise ValueError(f"unknown type {kind!r}")


def describe(t: Type) -> str:
    """A compact Hive-like rendering, for messages and docs."""
    if isinstance(t, Scalar):
        return t.kind
    if isinstance(t, Struct):
        return "struct<" + ",".join(f"{n}:{describe(v)}" for n, v in t.fields) + ">"
    if isinstance(t, Array):
        return f"array<{describe(t.element)}>"
    if isinstance(t, Map):
        return f"map<string,{describe(t.value)}>"
    return type(t).__name__.lower()
