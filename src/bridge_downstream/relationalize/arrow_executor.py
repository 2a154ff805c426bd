"""Execute a relationalize plan with pyarrow compute; produces exactly the
tables of :mod:`spark_executor` (names, column names, types, rows).

Reading: first ``pyarrow.json`` with the plan's schema (vectorized, ~8x faster);
it rejects -- rather than converts -- any value that does not fit its column
exactly (a number or object in a string column after type drift, ``1.0`` in a
bigint column) and has no map type, and in those cases the reader falls back
to: each NDJSON line parsed with ``json.loads`` and *coerced* to the plan's row
type the way Spark's JSON parser (``from_json``, PERMISSIVE) converts values,
then one ``pa.array(..., type=...)`` call for the batch.  Coercion rules (Spark's):

- string column: a JSON string as is; any other value as compact JSON text, keys
  in document order, non-ASCII unescaped, doubles rendered like Java's
  ``Double.toString`` (``1.0E-5``, ``1.23456789E7``, ``100.0``);
- bigint: JSON integers in the signed 64-bit range; double: any JSON number
  (and the strings ``NaN``/``Infinity``/...); boolean: ``true``/``false``;
  decimal(38,0): any JSON number, or a string holding one (commas removed),
  rounded half up to an integer, when the result has at most 38 digits;
- a value that does not fit becomes null: the field of a struct alone; an array
  or map with a misfit element entirely.  (With the plan's type rules this only
  happens for documents that do not match their JSON Schema.)

Everything after reading is vectorized: ``StructArray.flatten`` for paths,
``list_flatten`` + offsets arithmetic (numpy) for child rows and their
``index``, ``take`` for carried columns, ``binary_join_element_wise`` and
``replace_substring`` for ids.
"""

from __future__ import annotations

import io
import json
import math
import re
from collections.abc import Iterable, Iterator
from decimal import ROUND_HALF_UP, Context, Decimal
from os import PathLike
from typing import cast

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from bridge_downstream.relationalize.inference import parse_line
from bridge_downstream.relationalize.nested import NestedTablePlan, converted_kind
from bridge_downstream.relationalize.plan import (
    IDENTITY_ESCAPES,
    KEY_SEPARATOR,
    KIND_ARRAY,
    KIND_MAP,
    MAP_KEY_ESCAPES,
    NULL_COMPONENT,
    ROLE_CARRY,
    ROLE_ID,
    ROLE_INDEX,
    ROLE_KEY,
    ROLE_LINK,
    ROLE_RESCUED,
    ROLE_VALUE,
    RelationalizePlan,
    TablePlan,
    rescued_path,
    time_month,
)
from bridge_downstream.relationalize.text_values import convert_text
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
    Array,
    Map,
    Scalar,
    Struct,
    Type,
)

_ARROW_SCALARS = {
    STRING: pa.string(),
    BIGINT: pa.int64(),
    DOUBLE: pa.float64(),
    BOOLEAN: pa.bool_(),
    DECIMAL: pa.decimal128(DECIMAL_DIGITS, 0),
    TIMESTAMP: pa.string(),  # read as its text, converted on output
}
# The types of the output columns, where they differ from how the values are read.
_ARROW_OUTPUT = {**_ARROW_SCALARS, TIMESTAMP: pa.timestamp("us", tz="UTC")}
_SPECIAL_DOUBLES = {
    "NaN": math.nan,
    "+INF": math.inf,
    "+Infinity": math.inf,
    "Infinity": math.inf,
    "-INF": -math.inf,
    "-Infinity": -math.inf,
}


def arrow_scalar_type(kind: str) -> pa.DataType:
    """The Arrow type of an output column of ``kind``."""
    return _ARROW_OUTPUT[kind]


def arrow_type(t: Type, positional: bool = True) -> pa.DataType:
    """Internal Arrow type: positional struct names ``f<i>`` (or the JSON keys); a map is
    ``list<struct<k: string, v: value>>`` (entries in document order).  The executor
    only addresses struct fields by position, so either naming works."""
    if isinstance(t, Scalar):
        return _ARROW_SCALARS[t.kind]
    if isinstance(t, Struct):
        return pa.struct(
            [
                pa.field(f"f{i}" if positional else name, arrow_type(v, positional))
                for i, (name, v) in enumerate(t.fields)
            ]
        )
    if isinstance(t, Array):
        return pa.list_(arrow_type(t.element, positional))
    if isinstance(t, Map):
        return pa.list_(pa.struct([pa.field("k", pa.string()), pa.field("v", arrow_type(t.value, positional))]))
    raise TypeError(f"not a finished type: {t!r}")


def table_schema(table: TablePlan) -> pa.Schema:
    """The Arrow schema of one output table."""
    return pa.schema([pa.field(c.name, _ARROW_OUTPUT[c.type]) for c in table.columns])


# ---------------------------------------------------------------------------
# JSON text and coercion, matching Spark's JSON parser


def java_double(x: float) -> str:
    """A double as Spark (Jackson, Java 17 ``Double.toString``) writes it into JSON text.

    Digits: for integer values below 2**63 Java prints the exact integer, except
    that for magnitudes of 2**54 and more it drops ``floor(log10(2**(e-54)))``
    low-order digits (``e`` = binary exponent) rounding half up; otherwise the
    shortest digits that round-trip (Python's ``repr``).  Java 17 differs from
    the shortest form in rare other cases (e.g. ``2e23`` -> ``1.9999999999999998E23``,
    ``5e-324`` -> ``4.9E-324``; about 1 in 10,000 random doubles): those are not
    reproduced, the texts then differ in the last digits but parse to the same double.
    Layout: plain decimal for 1e-3 <= |x| < 1e7 (``100.0``), otherwise
    ``d.dddE<n>`` (``1.0E-5``, ``1.23456789E7``).
    """
    if math.isnan(x):
        return "NaN"
    if x in (math.inf, -math.inf):
        return "Infinity" if x > 0 else "-Infinity"
    if x == 0:
        return "-0.0" if math.copysign(1.0, x) < 0 else "0.0"
    sign = "-" if x < 0 else ""
    magnitude = abs(x)
    if magnitude.is_integer() and magnitude < 2.0**63:
        n = int(magnitude)
        p2 = n.bit_length() - 1 - 54
        insignificant = len(str(2**p2)) - 1 if p2 > 1 else 0
        if insignificant:
            pow10 = 10**insignificant
            n, residue = divmod(n, pow10)
            if residue >= pow10 // 2:
                n += 1
        text = str(n)
        sci = len(text) - 1 + insignificant
        digits = text.rstrip("0") or "0"
    else:
        _, digit_tuple, raw_exponent = Decimal(repr(magnitude)).as_tuple()
        # NaN and the infinities returned above: a finite Decimal's exponent is an int
        exponent = cast(int, raw_exponent)
        text = "".join(map(str, digit_tuple)).lstrip("0")
        sci = len(text) + exponent - 1  # value = d.ddd x 10^sci
        digits = text.rstrip("0") or "0"
    if 1e-3 <= magnitude < 1e7:
        if sci >= 0:
            whole = digits[: sci + 1].ljust(sci + 1, "0")
            frac = digits[sci + 1 :] or "0"
            return f"{sign}{whole}.{frac}"
        return f"{sign}0.{'0' * (-sci - 1)}{digits}"
    return f"{sign}{digits[0]}.{digits[1:] or '0'}E{sci}"


def json_text(value) -> str:
    """Compact JSON text of a parsed value as Spark writes it into a string column."""
    if value is None:
        return "null"
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return java_double(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, list):
        return "[" + ",".join(json_text(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ",".join(json.dumps(k, ensure_ascii=False) + ":" + json_text(v) for k, v in value.items()) + "}"
    return json.dumps(value, ensure_ascii=False)


class _Misfit(Exception):
    pass


# java.math.BigDecimal's grammar, which Spark parses a string in a decimal column with
_BIG_DECIMAL_TEXT = re.compile(r"[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")
_WIDE_CONTEXT = Context(prec=2 * DECIMAL_DIGITS)  # the default 28 digits would not hold 38


def _to_decimal(v) -> int:
    """Spark's conversion into decimal(38,0): a number (a double by its shortest
    text, which is what ingest writes), or a string holding one without its
    commas; rounded half up; more than 38 digits do not fit."""
    tv = type(v)
    if tv is int:
        number = v
    else:
        if tv is float:
            text = repr(v)
        elif tv is str:
            text = v.replace(",", "")
        else:
            raise _Misfit
        if not _BIG_DECIMAL_TEXT.fullmatch(text):
            raise _Misfit  # also NaN and the infinities, as Spark
        exact = Decimal(text)
        if exact.adjusted() >= DECIMAL_DIGITS:
            raise _Misfit
        number = int(exact.quantize(Decimal(1), rounding=ROUND_HALF_UP, context=_WIDE_CONTEXT))
    if abs(number) >= 10**DECIMAL_DIGITS:
        raise _Misfit
    return number


def _coercer(t: Type):
    if isinstance(t, Scalar):
        if t.kind in (STRING, TIMESTAMP):

            def to_string(v):
                return v if type(v) is str else json_text(v)

            return to_string
        if t.kind == "bigint":

            def to_bigint(v):
                if type(v) is int and INT64_MIN <= v <= INT64_MAX:
                    return v
                raise _Misfit

            return to_bigint
        if t.kind == "double":

            def to_double(v):
                tv = type(v)
                if tv is float or tv is int:
                    return float(v)
                if tv is str and v in _SPECIAL_DOUBLES:
                    return _SPECIAL_DOUBLES[v]
                raise _Misfit

            return to_double
        if t.kind == "boolean":

            def to_boolean(v):
                if v is True or v is False:
                    return v
                raise _Misfit

            return to_boolean
        if t.kind == DECIMAL:
            return _to_decimal
    if isinstance(t, Struct):
        fields = [(key, f"f{i}", _coercer(sub)) for i, (key, sub) in enumerate(t.fields)]

        def to_struct(v):
            if type(v) is not dict:
                raise _Misfit
            out = {}
            get = v.get
            for key, name, convert in fields:
                x = get(key)
                if x is not None:
                    try:
                        out[name] = convert(x)
                    except _Misfit:
                        pass
            return out

        return to_struct
    if isinstance(t, Array):
        convert_element = _coercer(t.element)

        def to_list(v):
            if type(v) is not list:
                raise _Misfit
            return [None if x is None else convert_element(x) for x in v]

        return to_list
    if isinstance(t, Map):
        convert_value = _coercer(t.value)

        def to_entries(v):
            if type(v) is not dict:
                raise _Misfit
            return [{"k": k, "v": None if x is None else convert_value(x)} for k, x in v.items()]

        return to_entries
    raise TypeError(f"not a finished type: {t!r}")


def coerce_rows(plan: RelationalizePlan, rows: Iterable) -> pa.StructArray:
    """Parsed root rows (dicts) -> one Arrow struct array of the plan's row type."""
    convert = _coercer(plan.row_type)
    out = []
    for row in rows:
        # like Spark's from_json: a line that is not an object gives a row of nulls
        out.append(convert(row) if type(row) is dict else {})
    return pa.array(out, type=arrow_type(plan.row_type))


def _has_map(t: Type) -> bool:
    if isinstance(t, Map):
        return True
    if isinstance(t, Struct):
        return any(_has_map(v) for _, v in t.fields)
    if isinstance(t, Array):
        return _has_map(t.element)
    return False


def read_ndjson_vectorized(plan: RelationalizePlan, paths: list, use_threads: bool = True) -> pa.StructArray | None:
    """``pyarrow.json`` with the plan's schema (JSON keys as names): all in C++.
    Returns None when it cannot reproduce Spark's values -- the plan has a map
    (no Arrow JSON equivalent), or a value does not fit its column exactly
    (a number or object in a string column, ``1.0`` in a bigint column, ...):
    pyarrow rejects those instead of converting, so nothing is silently different.
    ``use_threads``: parse blocks (8 MiB each) on Arrow's thread pool."""
    import pyarrow.json as pj

    if _has_map(plan.row_type):
        return None
    row_type = arrow_type(plan.row_type, positional=False)
    options = pj.ParseOptions(explicit_schema=pa.schema(list(row_type)), unexpected_field_behavior="ignore")
    read_options = pj.ReadOptions(block_size=8 << 20, use_threads=use_threads)
    if not paths:
        return pa.array([], type=row_type)
    try:
        # One reader over all the files: the reader's start-up per call costs
        # more than parsing a small part file, and ingest writes many.
        with io.BufferedReader(ConcatenatedFiles(paths), buffer_size=8 << 20) as stream:
            table = pj.read_json(stream, read_options=read_options, parse_options=options)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return None
    return pa.StructArray.from_arrays([c.combine_chunks() for c in table.columns], fields=list(row_type))


class ConcatenatedFiles(io.RawIOBase):
    """Files read one after another as one NDJSON stream; a newline is put
    between two files when the first does not end in one."""

    def __init__(self, paths: Iterable[str | PathLike]):
        self._paths: Iterator[str | PathLike] = iter(paths)
        self._current: io.BufferedReader | None = None
        self._last = b"\n"
        self._pending_newline = False

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        while True:
            if self._pending_newline:
                self._pending_newline = False
                buffer[0:1] = b"\n"
                self._last = b"\n"
                return 1
            if self._current is None:
                path = next(self._paths, None)
                if path is None:
                    return 0
                self._current = open(path, "rb")  # noqa: SIM115 - read across calls; closed at its end or by close()
            count = self._current.readinto(buffer)
            if count:
                self._last = bytes(buffer[count - 1 : count])
                return count
            self._current.close()
            self._current = None
            self._pending_newline = self._last != b"\n"

    def close(self) -> None:
        if self._current is not None:
            self._current.close()
            self._current = None
        super().close()


def read_ndjson(
    plan: RelationalizePlan,
    paths: Iterable[str | PathLike],
    vectorized: bool = True,
    use_threads: bool = True,
) -> pa.StructArray:
    """The dataset's root rows as one struct array: vectorized when the data
    fits the plan's types exactly, otherwise line by line with Spark's coercions."""
    paths = list(paths)
    if vectorized:
        fast = read_ndjson_vectorized(plan, paths, use_threads=use_threads)
        if fast is not None:
            return with_time_partitions(plan, fast)

    def rows():
        for path in paths:
            with open(path, encoding="utf-8") as handle:
                for line in handle:
                    if line.strip():
                        yield parse_line(line)

    return with_time_partitions(plan, coerce_rows(plan, rows()))


def with_time_partitions(plan: RelationalizePlan, root: pa.StructArray) -> pa.StructArray:
    """``root`` with the plan's time partition columns computed from their
    fields (:func:`~.plan.time_month`), whatever the rows held there."""
    if not plan.time_partitions:
        return root
    if isinstance(root, pa.ChunkedArray):
        root = root.combine_chunks()
    row_type = plan.row_type
    names = [name for name, _ in row_type.fields]
    columns = root.flatten()
    for column, source in plan.time_partitions.items():
        values = columns[names.index(source)].to_pylist() if source in names else [None] * len(root)
        columns[names.index(column)] = pa.array([time_month(v) for v in values], pa.int64())
    mask = root.is_null() if root.null_count else None
    return pa.StructArray.from_arrays(columns, fields=list(root.type), mask=mask)


# ---------------------------------------------------------------------------
# execution


class _Fields:
    """Values at a path of struct fields. Each struct array is flattened once
    (``StructArray.flatten``: every field, the struct's nulls applied):
    ``pc.struct_field`` takes time in proportion to the struct's width, so one
    call per column made a document with 10,000 keys quadratic."""

    def __init__(self) -> None:
        # by id(): the array is kept in the entry, so its id is not reused
        self._flattened: dict[int, tuple[pa.Array, list[pa.Array]]] = {}

    def at(self, array: pa.Array, t: Type, path: list[str]) -> pa.Array:
        for key in path:
            assert isinstance(t, Struct), (t, path)
            i = t.index_of(key)
            entry = self._flattened.get(id(array))
            if entry is None:
                entry = self._flattened[id(array)] = (array, array.flatten())
            array = entry[1][i]
            t = t.fields[i][1]
        return array


def _escaped(text: pa.Array, replacements: tuple[tuple[str, str], ...]) -> pa.Array:
    """``text`` escaped for an id (the plan's id rules)."""
    for special, escaped in replacements:
        text = pc.replace_substring(text, special, escaped)
    return text


def _row_key(identity: list[pa.Array]) -> pa.Array:
    """The root row key (the plan's id rules)."""
    components = [pc.fill_null(_escaped(pc.cast(a, pa.string()), IDENTITY_ESCAPES), NULL_COMPONENT) for a in identity]
    return pc.binary_join_element_wise(*components, KEY_SEPARATOR)


def _concat(*parts) -> pa.Array:
    return pc.binary_join_element_wise(*parts, "")


def relationalize_arrow(
    plan: RelationalizePlan,
    source: str | PathLike | Iterable[str | PathLike] | None = None,
    *,
    rows: Iterable | None = None,
    vectorized: bool = True,
) -> dict[str, pa.Table]:
    """Execute ``plan``: returns ``{table name: pyarrow.Table}`` in plan order.

    ``source``: local NDJSON path(s); or ``rows=`` already-parsed root rows (dicts).
    ``vectorized=False`` forces the line-by-line reader."""
    if rows is not None:
        root = with_time_partitions(plan, coerce_rows(plan, rows))
    else:
        if source is None:
            raise TypeError("relationalize_arrow needs a source or rows=")
        paths = [source] if isinstance(source, (str, PathLike)) else list(source)
        root = read_ndjson(plan, paths, vectorized=vectorized)
    return execute(plan, root)


def execute(plan: RelationalizePlan, root: pa.StructArray) -> dict[str, pa.Table]:
    row_type = plan.row_type
    if isinstance(root, pa.ChunkedArray):
        root = root.combine_chunks()
    fields = _Fields()
    key = _row_key([fields.at(root, row_type, [c]) for c in plan.identity_columns])
    carried = {c: fields.at(root, row_type, [c]) for c in plan.carry_columns}
    # internal frame per table: k (row key), carried, e (element), id, pos, n
    frames: dict[str, dict] = {plan.root.name: {"k": key, "carried": carried, "e": root}}
    out: dict[str, pa.Table] = {}
    tables = {table.name: table for table in plan.tables}
    for table in plan.tables:
        if table.parent is not None:
            parent = tables[table.parent]
            pf = frames[parent.name]
            assert table.parent_column is not None, table.name  # set with parent by build_plan
            container = fields.at(pf["e"], parent.element_type, table.source_path)
            if isinstance(container, pa.ChunkedArray):
                container = container.combine_chunks()
            lengths = pc.fill_null(pc.list_value_length(container), 0).to_numpy(zero_copy_only=False).astype(np.int64)
            parent_index = pa.array(np.repeat(np.arange(len(container), dtype=np.int64), lengths))
            starts = np.cumsum(lengths) - lengths
            pos = np.arange(int(lengths.sum()), dtype=np.int64) - np.repeat(starts, lengths)
            values = pc.list_flatten(container)
            assert len(values) == len(pos)
            ids = _concat(pc.take(pf["k"], parent_index), pa.scalar("/" + table.parent_column))
            frame = {
                "id": ids,
                "carried": {c: pc.take(a, parent_index) for c, a in pf["carried"].items()},
            }
            if table.kind == KIND_ARRAY:
                frame["pos"] = pa.array(pos, type=pa.int64())
                frame["e"] = values
                frame["k"] = _concat(ids, pa.scalar("["), pc.cast(frame["pos"], pa.string()), pa.scalar("]"))
            elif table.kind == KIND_MAP:
                frame["n"] = pc.struct_field(values, [0])
                frame["e"] = pc.struct_field(values, [1])
                frame["k"] = _concat(ids, pa.scalar("["), _escaped(frame["n"], MAP_KEY_ESCAPES), pa.scalar("]"))
            else:  # pragma: no cover
                raise ValueError(table.kind)
            frames[table.name] = frame
        out[table.name] = _output(table, frames[table.name], fields)
    return out


def _output(table: TablePlan, frame: dict, fields: _Fields) -> pa.Table:
    arrays = []
    for column in table.columns:
        if column.role == ROLE_VALUE:
            a = fields.at(frame["e"], table.element_type, column.path)
        elif column.role == ROLE_LINK:
            container = fields.at(frame["e"], table.element_type, column.path)
            link = _concat(frame["k"], pa.scalar("/" + column.name))
            a = pc.if_else(pc.is_valid(container), link, pa.scalar(None, pa.string()))
        elif column.role == ROLE_ID:
            a = frame["id"]
        elif column.role == ROLE_INDEX:
            a = frame["pos"]
        elif column.role == ROLE_KEY:
            a = frame["n"]
        elif column.role == ROLE_CARRY:
            a = frame["carried"][column.path[0]]
        elif column.role == ROLE_RESCUED:
            a = _rescued(table, frame, fields)
        else:  # pragma: no cover
            raise ValueError(column.role)
        if column.from_text:
            a = _converted(column.type, a)
        arrays.append(pc.cast(a, _ARROW_OUTPUT[column.type]))
    return pa.Table.from_arrays(arrays, schema=table_schema(table))


def _converted(kind: str, texts: pa.Array) -> pa.Array:
    """The values of ``kind`` that ``texts`` spell, null where none
    (:func:`.text_values.convert_text`, which Spark's ``converted_sql``
    mirrors): each distinct text converted once."""
    encoded = pc.dictionary_encode(pc.cast(texts, pa.string()))
    values = [convert_text(kind, text) for text in encoded.dictionary.to_pylist()]
    if kind == TIMESTAMP:
        converted = pa.array(values, pa.int64()).cast(_ARROW_OUTPUT[TIMESTAMP])
    else:
        converted = pa.array(values, _ARROW_OUTPUT[kind])
    return pc.take(converted, encoded.indices)


def _rescued(table: TablePlan, frame: dict, fields: _Fields) -> pa.Array:
    """JSON text of {path: text} of the values of ``table``'s text columns that
    do not convert, null where none (Spark's ``to_json`` of a map)."""
    misfits = []
    for column in table.columns:
        if column.role == ROLE_VALUE and column.from_text:
            text = pc.cast(fields.at(frame["e"], table.element_type, column.path), pa.string())
            misfit = pc.and_(pc.is_valid(text), pc.is_null(_converted(column.type, text)))
            misfits.append((rescued_path(column), text, misfit))
    rows = len(frame["e"])
    if not misfits:
        return pa.nulls(rows, pa.string())
    any_misfit = np.zeros(rows, dtype=bool)
    for _, _, misfit in misfits:
        any_misfit |= misfit.to_numpy(zero_copy_only=False)
    out: list[str | None] = [None] * rows
    for row in np.flatnonzero(any_misfit).tolist():
        rescued = {path: text[row].as_py() for path, text, misfit in misfits if misfit[row].as_py()}
        out[row] = json_text(rescued)
    return pa.array(out, pa.string())


# ---------------------------------------------------------------------------
# the nested table (relationalize/nested.py)


def nested_arrow_type(t: Type) -> pa.DataType:
    """The Arrow type of a nested table's column (a published type: named fields, output scalars)."""
    if isinstance(t, Scalar):
        return _ARROW_OUTPUT[t.kind]
    if isinstance(t, Struct):
        return pa.struct([pa.field(name, nested_arrow_type(v)) for name, v in t.fields])
    if isinstance(t, Array):
        return pa.list_(nested_arrow_type(t.element))
    if isinstance(t, Map):
        return pa.map_(pa.string(), nested_arrow_type(t.value))
    raise TypeError(f"not a finished type: {t!r}")


def nested_table_schema(nested: NestedTablePlan) -> pa.Schema:
    return pa.schema([pa.field(c.name, nested_arrow_type(c.type)) for c in nested.columns])


def nested_table_arrow(plan: RelationalizePlan, nested: NestedTablePlan, root: pa.StructArray, root_table: pa.Table):
    """The nested table of the root rows ``root``, whose root table
    :func:`execute` made (``root_table``: its columns are taken as they are)."""
    if isinstance(root, pa.ChunkedArray):
        root = root.combine_chunks()
    fields = root.flatten() if len(plan.row_type.fields) else []
    arrays = []
    for column in nested.columns:
        if column.key is None:
            arrays.append(root_table.column(column.name).combine_chunks())
            continue
        i = plan.row_type.index_of(column.key)
        arrays.append(_nested_values(fields[i], plan.row_type.fields[i][1], column.type))
    return pa.Table.from_arrays(arrays, schema=nested_table_schema(nested))


def _offsets(lists: pa.Array) -> pa.Array:
    lengths = pc.fill_null(pc.list_value_length(lists), 0).to_numpy(zero_copy_only=False).astype(np.int32)
    return pa.array(np.concatenate([[0], np.cumsum(lengths, dtype=np.int32)]), pa.int32())


def _nested_values(array: pa.Array, source: Type, published: Type) -> pa.Array:
    """``array`` (read with the plan's type ``source``) as the published type:
    fields renamed by position, values read as text converted; nulls stay where they are."""
    target = nested_arrow_type(published)
    if isinstance(source, Scalar):
        assert isinstance(published, Scalar)
        kind = converted_kind(source, published)
        return pc.cast(array if kind is None else _converted(kind, array), target)
    mask = array.is_null()
    if isinstance(source, Struct):
        assert isinstance(published, Struct)
        children = [
            _nested_values(child, sub, out)
            for child, (_, sub), (_, out) in zip(array.flatten(), source.fields, published.fields, strict=True)
        ]
        return pa.StructArray.from_arrays(children, fields=list(target), mask=mask)
    if isinstance(source, Array):
        assert isinstance(published, Array)
        values = _nested_values(array.flatten(), source.element, published.element)
        return pa.ListArray.from_arrays(_offsets(array), values, type=target, mask=mask)
    if isinstance(source, Map):
        assert isinstance(published, Map)
        entries = array.flatten()  # the reader's list<struct<k, v>>, in document order
        keys, values = entries.flatten()
        items = _nested_values(values, source.value, published.value)
        return pa.MapArray.from_arrays(_offsets(array), keys, items, type=target, mask=mask)
    raise TypeError(f"not a finished type: {source!r}")
