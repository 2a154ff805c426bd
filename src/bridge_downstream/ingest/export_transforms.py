"""Recover's rewrites of export fields, per dataset, before a row is written
(a profile's ``transforms:``; docs/ingest.md, "Recover transforms").

Care Evolution exports carry some nested data as JSON text (SymptomLog
``Value``, EnrolledParticipants ``CustomFields.Symptoms``/``Treatments``) and
Garmin's per-offset samples as objects keyed by the offset. Recover's
``s3_to_json.transform_json`` parsed the text and turned each offset object
into an array of ``{OffsetInSeconds, <metric>}``, so that its tables have
columns and child tables where the export has text and per-offset columns.

A row's rewrite copies what it changes: the row as parsed stays what the
duplicate-key check compares with the line's bytes.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from typing import Any

from bridge_downstream.common import jsoncodec
from bridge_downstream.common.text import printable
from bridge_downstream.config.profiles import FieldTransform, Profile
from bridge_downstream.ingest.context import InvalidArchive

__all__ = [
    "OFFSET_KEY",
    "MalformedText",
    "TransformedRows",
    "export_rows",
    "offset_array",
    "parse_json_text",
    "transform_row",
]

OFFSET_KEY = "OffsetInSeconds"  # recover's key name, the same for every Garmin metric

_logger = logging.getLogger(__name__)

_CASTS: dict[str, Callable[[Any], int | float]] = {"int": int, "float": float}


class MalformedText(ValueError):
    """A ``json_text`` field whose text is not JSON, where that fails the export."""


def export_rows(profile: Profile, dataset_id: str, shared: dict) -> jsoncodec.Rows:
    """The line encoder of one export file: plain when the profile rewrites
    nothing of the dataset (one lookup per file, nothing per line)."""
    transforms = profile.transforms.get(dataset_id)
    if transforms is None:
        return jsoncodec.Rows(shared)
    return TransformedRows(shared, transforms)


class TransformedRows(jsoncodec.Rows):
    """:class:`~bridge_downstream.common.jsoncodec.Rows` whose every row is
    rewritten first (:func:`transform_row`)."""

    __slots__ = ("_member", "_transforms")

    def __init__(self, shared: dict, transforms: tuple[FieldTransform, ...]):
        super().__init__(shared)
        self._transforms = transforms
        self._member = str(shared.get("sourcefile", ""))

    def line(self, element, index: int) -> bytes:
        if type(element) is not dict:
            return super().line(element, index)
        where = f"{self._member} line {index + 1}"
        try:
            shaped = transform_row(element, self._transforms, where)
        except MalformedText as error:
            raise InvalidArchive(
                f"{printable(where)}: {error}", {self._member: [f"line {index + 1}: {error}"]}
            ) from error
        return super().line(shaped, index)


def transform_row(row: dict, transforms: tuple[FieldTransform, ...], where: str = "row") -> dict:
    """The row with each field transform applied in order; ``row`` is left as it is."""
    for transform in transforms:
        name = ".".join(transform.path)
        if transform.kind == "json_text":
            rewrite = _json_text_rewrite(name, transform.malformed, where)
        else:
            rewrite = _offset_array_rewrite(name, transform.metric, transform.metric_type, where)
        row = _rewritten(row, transform.path, rewrite)
    return row


def _rewritten(node: dict, path: tuple[str, ...], rewrite: Callable[[object], object]) -> dict:
    """``node`` with the field at ``path`` rewritten, copying only the objects
    on the way; a list on the way carries the rest of the path to each of its
    objects (recover's ``Summaries.EpochSummaries``)."""
    key, rest = path[0], path[1:]
    if key not in node:
        return node
    value = node[key]
    if not rest:
        new_value = rewrite(value)
    elif type(value) is dict:
        new_value = _rewritten(value, rest, rewrite)
    elif type(value) is list:
        new_value = [_rewritten(item, rest, rewrite) if type(item) is dict else item for item in value]
    else:
        return node
    return {**node, key: new_value}


def parse_json_text(value: object) -> object:
    """A ``json_text`` field's text parsed as JSON (strictly,
    :mod:`~bridge_downstream.common.jsoncodec`); a value that is no text is
    kept. Text that is not JSON, the empty text too, raises :class:`MalformedText`."""
    if type(value) is not str:
        return value
    try:
        return jsoncodec.parse(value.encode())
    except jsoncodec.JSONDecodeError as error:
        raise MalformedText(f"is not JSON text ({error})") from error


def _json_text_rewrite(name: str, malformed: str, where: str) -> Callable[[object], object]:
    """``malformed``: ``fail`` fails the export (recover's job failed on such a
    SymptomLog ``Value``); ``empty_list`` makes the field ``[]`` (recover's
    ``CustomFields``, which logged text that was not empty)."""

    def rewrite(value: object) -> object:
        try:
            return parse_json_text(value)
        except MalformedText as error:
            if malformed == "fail":
                raise MalformedText(f"{name} {error}") from error
            if value != "":
                _logger.warning("%s: %s %s; kept as an empty list, as recover did", printable(where), name, error)
            return []

    return rewrite


def offset_array(value: object, metric: str, metric_type: str) -> tuple[object, int]:
    """An object of offset -> value as recover's array of ``{OffsetInSeconds:
    int, <metric>: <metric_type>}``, in the object's order, and how many keys
    or values did not convert: those are null (recover's ``int()``/``float()``,
    so ``61.2`` is ``61`` as an int and ``"61.5"`` null). A value that is no
    object is kept."""
    if type(value) is not dict:
        return value, 0
    cast = _CASTS[metric_type]
    failed = 0
    elements = []
    for offset, sample in value.items():
        offset_value, sample_value = _converted(offset, int), _converted(sample, cast)
        failed += (offset_value is None) + (sample_value is None and sample is not None)
        elements.append({OFFSET_KEY: offset_value, metric: sample_value})
    return elements, failed


def _converted(value: Any, cast: Callable[[Any], int | float]) -> int | float | None:
    if value is None:
        return None
    if type(value) is cast:  # most samples; strict JSON has no infinite number
        return value
    try:
        converted = cast(value)
    except (TypeError, ValueError, OverflowError):
        return None
    return converted if type(converted) is not float or math.isfinite(converted) else None


def _offset_array_rewrite(name: str, metric: str, metric_type: str, where: str) -> Callable[[object], object]:
    def rewrite(value: object) -> object:
        elements, failed = offset_array(value, metric, metric_type)
        if failed:
            _logger.warning("%s: %d offsets or values of %s did not convert; null", printable(where), failed, name)
        return elements

    return rewrite
