"""Input profiles: how one kind of upload becomes rows.

A profile is configuration per app and study: the built-in ones live in
``resources/profiles/*.yaml``; a deployment may pass its own YAML file.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

import yaml

from bridge_downstream.config.expectations import ExpectationError, Expectations, parse_expectations

KINDS = ("bridge-archive", "ndjson-export")


class ProfileError(Exception):
    pass


@dataclass(frozen=True)
class DedupRule:
    """One version of each record per dataset; docs/publish.md ("Deduplication")
    states the ordering both engines apply.

    ``order_by``: (field, descending) pairs, compared as instants
    (:func:`~bridge_downstream.common.instants.instant_micros`); a value that is no instant counts as missing.
    ``version_sequence``: enrichment fields that increase strictly along the
    rows of one version as its part file holds them (``sourcefile``,
    ``sourceindex``: an archive's documents and their elements, in order);
    where they do not, the next version starts. Empty: every row is a
    version of its own (export rows).
    """

    key: tuple[str, ...] = ()
    order_by: tuple[tuple[str, bool], ...] = ()  # (column, descending)
    keys_by_data_type: dict[str, tuple[str, ...]] = field(default_factory=dict)
    deleted_suffix: str | None = None
    version_sequence: tuple[str, ...] = ()

    def key_for(self, dataset_id: str) -> tuple[str, ...]:
        """The record key of a dataset: per data type, else the profile's."""
        base = data_type_of(dataset_id, self.deleted_suffix)
        for data_type in (base, base.split("_", 1)[0]):
            if data_type in self.keys_by_data_type:
                return self.keys_by_data_type[data_type]
        return self.key


TRANSFORM_KINDS = ("json_text", "offset_array")
MALFORMED_TEXT = ("fail", "empty_list")
METRIC_TYPES = ("int", "float")


@dataclass(frozen=True)
class FieldTransform:
    """One rewrite of an export field before its row is written (recover's
    ``transform_json``; applied by ``ingest/export_transforms.py``).

    ``path``: keys from the row down to the field; a list met on the way
    applies the rest of the path to each of its objects. ``json_text``: text
    parsed as JSON, ``malformed`` saying what text that is not JSON becomes;
    ``offset_array``: an object of offset -> value becomes a list of
    ``{OffsetInSeconds: int, <metric>: <metric_type>}``."""

    kind: str
    path: tuple[str, ...]
    malformed: str = "fail"
    metric: str = ""
    metric_type: str = ""


def data_type_of(dataset_id: str, deleted_suffix: str | None) -> str:
    if deleted_suffix and dataset_id.endswith(deleted_suffix):
        return dataset_id[: -len(deleted_suffix)]
    return dataset_id


@dataclass(frozen=True)
class Profile:
    name: str
    kind: str
    app_id: str | None = None
    cohort: str | None = None
    # Where an archive's key names its cohort, e.g. ``{app}/{study}/{cohort}/{export}``
    # (docs/ingest.md, "recover exports"); None: the key names none.
    cohort_key_pattern: str | None = None
    # Data types whose files name a subtype after the type, and the column that holds it.
    subtype_data_types: tuple[str, ...] = ()
    subtype_column: str | None = None
    required_metadata: tuple[str, ...] = ()
    partition_fields: tuple[str, ...] = ()
    record_metadata_datasets: tuple[str, ...] = ()
    identity_fields: tuple[str, ...] = ()
    carry_fields: tuple[str, ...] = ()
    enrichment_columns: dict[str, str] = field(default_factory=dict)
    record_metadata_columns: tuple[str, ...] = ()
    dedup: DedupRule = DedupRule()
    # Types of top-level document keys, per dataset, that publish gives their
    # columns whatever the rows hold (docs/publish.md, "The table contract").
    column_types: dict[str, dict[str, str]] = field(default_factory=dict)
    # Datasets that also get a nested table (docs/publish.md, "Nested tables"); ``nested``: every dataset.
    nested: bool = False
    nested_datasets: tuple[str, ...] = ()
    # Field rewrites per dataset (export data type), in order (docs/ingest.md, "Recover transforms").
    transforms: dict[str, tuple[FieldTransform, ...]] = field(default_factory=dict)
    # Data-quality expectations per dataset and table (docs/quality.md, "Expectations").
    expectations: Expectations = field(default_factory=dict)
    # Data types partitioned, after ``partition_fields``, by the month of a key
    # field's date or time: data type -> that field (docs/publish.md, "The table contract").
    time_partitions: dict[str, str] = field(default_factory=dict)

    def cohort_of_key(self, key: str) -> str | None:
        """The cohort an archive's key names through ``cohort_key_pattern``, or None.

        The pattern describes the whole key, one segment per ``/``: a key of
        another number of segments, or whose segment differs from a literal
        one of the pattern, names no cohort; a placeholder matches any one
        segment."""
        if not self.cohort_key_pattern:
            return None
        pattern = self.cohort_key_pattern.split("/")
        segments = key.split("/")
        if len(segments) != len(pattern):
            return None
        for wanted, segment in zip(pattern, segments, strict=True):
            if not _PLACEHOLDER.fullmatch(wanted) and wanted != segment:
                return None
        return segments[pattern.index(COHORT_PLACEHOLDER)] or None

    def publishes_nested(self, dataset_id: str) -> bool:
        """Whether a publish of the dataset adds its nested table."""
        return self.nested or dataset_id in self.nested_datasets

    def identity_columns(self, dataset_id: str) -> tuple[str, ...]:
        """The root-row fields a dataset's relationalize ids are built from
        (docs/relationalize.md, "Ids").

        Where the dataset has a record key, its natural key: the key plus the
        ``version_sequence`` (MTB ``recordid, sourcefile, sourceindex``;
        recover e.g. ``ParticipantIdentifier, LogId``). Dedup leaves one
        version per key in the whole dataset, every partition together, and
        the sequence tells one version's rows apart (a version without one is
        a single row), so these identify a published root row. A record keeps
        its ids in every export, rerun and re-export that holds it. The
        partition (recover's ``cohort``) is left out on purpose: dedup already
        makes the key unique across cohorts, and with it a record moved to
        another cohort would change ids. Without a key (rows not
        deduplicated), ``identity_fields``: where the row was read."""
        key = self.dedup.key_for(dataset_id)
        if not key:
            return self.identity_fields
        return tuple(dict.fromkeys((*key, *self.dedup.version_sequence)))

    def carry_columns(self, dataset_id: str) -> tuple[str, ...]:
        """The root-row fields every child and grand-child table of a dataset
        holds: ``carry_fields``, the record key, then the partition fields."""
        key = self.dedup.key_for(dataset_id)
        return tuple(dict.fromkeys((*self.carry_fields, *key, *self.partition_fields)))

    def time_partition_source(self, dataset_id: str) -> str | None:
        """The field whose month partitions the dataset (per data type, as its key is found), or None."""
        base = data_type_of(dataset_id, self.dedup.deleted_suffix)
        for data_type in (base, base.split("_", 1)[0]):
            if data_type in self.time_partitions:
                return self.time_partitions[data_type]
        return None

    def declared_column_types(self, dataset_id: str) -> dict[str, str]:
        """The column types the profile declares for the dataset (JSON key -> type)."""
        return dict(self.column_types.get(dataset_id, {}))

    def extra_columns(self, dataset_id: str) -> dict[str, str]:
        """Columns ingest adds to the rows of a dataset, with their types."""
        columns = dict(self.enrichment_columns)
        if dataset_id in self.record_metadata_datasets:
            for name in self.record_metadata_columns:
                columns.setdefault(name.lower(), "string")
        return columns

    @classmethod
    def from_mapping(cls, raw: dict) -> Profile:
        if raw.get("kind") not in KINDS:
            raise ProfileError(f"profile {raw.get('name')!r}: kind must be one of {KINDS}, not {raw.get('kind')!r}")
        dedup_raw = raw.get("dedup") or {}
        order_by = []
        for item in dedup_raw.get("order_by", []):
            column, _, direction = str(item).partition(" ")
            direction = direction.strip().lower()
            if direction not in ("", "asc", "desc"):
                raise ProfileError(
                    f"profile {raw.get('name')!r}: dedup order_by {item!r}: the direction is asc or desc"
                )
            order_by.append((column, direction == "desc"))
        version_sequence = tuple(dedup_raw.get("version_sequence", []))
        unknown = [name for name in version_sequence if name not in (raw.get("enrichment_columns") or {})]
        if unknown:
            raise ProfileError(
                f"profile {raw.get('name')!r}: dedup version_sequence {unknown} are not enrichment columns "
                "(only ingest's own fields follow the order rows are written in)"
            )
        dedup = DedupRule(
            key=tuple(dedup_raw.get("key", [])),
            order_by=tuple(order_by),
            keys_by_data_type={k: tuple(v) for k, v in (dedup_raw.get("keys") or {}).items()},
            deleted_suffix=dedup_raw.get("deleted_suffix"),
            version_sequence=version_sequence,
        )
        if not dedup.key and not raw.get("identity_fields"):
            raise ProfileError(
                f"profile {raw.get('name')!r}: identity_fields is needed: a dataset without a dedup key "
                "builds its relationalize ids from them"
            )
        return cls(
            name=raw["name"],
            kind=raw["kind"],
            app_id=raw.get("app_id"),
            cohort=raw.get("cohort"),
            cohort_key_pattern=_cohort_key_pattern(raw),
            subtype_data_types=tuple(raw.get("subtype_data_types") or []),
            subtype_column=raw.get("subtype_column"),
            required_metadata=tuple(raw.get("required_metadata", [])),
            partition_fields=tuple(raw.get("partition_fields", [])),
            record_metadata_datasets=tuple(raw.get("record_metadata_datasets", [])),
            identity_fields=tuple(raw.get("identity_fields", [])),
            carry_fields=tuple(raw.get("carry_fields", [])),
            enrichment_columns=dict(raw.get("enrichment_columns") or {}),
            record_metadata_columns=tuple(raw.get("record_metadata_columns", [])),
            column_types=_column_types(raw),
            dedup=dedup,
            nested=_flag(raw, "nested"),
            nested_datasets=tuple(raw.get("nested_datasets") or []),
            transforms=_transforms(raw),
            expectations=_expectations(raw),
            time_partitions=_time_partitions(raw, dedup),
        )


COHORT_PLACEHOLDER = "{cohort}"
_PLACEHOLDER = re.compile(r"\{[A-Za-z0-9_]+\}")


def _cohort_key_pattern(raw: dict) -> str | None:
    pattern = raw.get("cohort_key_pattern")
    if pattern is None:
        return None
    if not isinstance(pattern, str) or pattern.strip("/").split("/").count(COHORT_PLACEHOLDER) != 1:
        raise ProfileError(
            f"profile {raw.get('name')!r}: cohort_key_pattern {pattern!r} must name {COHORT_PLACEHOLDER} "
            "once, as a whole segment"
        )
    return pattern.strip("/")


def _time_partitions(raw: dict, dedup: DedupRule) -> dict[str, str]:
    """``time_partitions: {data type: field}``: the field is one of the data
    type's dedup key, so a record's versions share its partition."""
    value = raw.get("time_partitions") or {}
    where = f"profile {raw.get('name')!r}: time_partitions"
    if not isinstance(value, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in value.items()):
        raise ProfileError(f"{where} must map data types to the key field holding their date or time")
    for data_type, source in value.items():
        if source not in dedup.keys_by_data_type.get(data_type, ()):
            raise ProfileError(f"{where}.{data_type}: {source!r} is not in the data type's dedup key")
    return dict(value)


def _flag(raw: dict, name: str) -> bool:
    value = raw.get(name, False)
    if not isinstance(value, bool):
        raise ProfileError(f"profile {raw.get('name')!r}: {name} is true or false, not {value!r}")
    return value


def _expectations(raw: dict) -> Expectations:
    try:
        return parse_expectations(raw.get("expectations"), f"profile {raw.get('name')!r}")
    except ExpectationError as error:
        raise ProfileError(str(error)) from error


def builtin_profiles() -> list[str]:
    folder = resources.files("bridge_downstream.config") / "resources" / "profiles"
    return sorted(p.name[:-5] for p in folder.iterdir() if p.name.endswith(".yaml"))


def load_profile(name_or_path: str | os.PathLike) -> Profile:
    """A built-in profile by name, or a profile YAML file by path."""
    text = None
    path = Path(name_or_path)
    if path.suffix in (".yaml", ".yml") and path.is_file():
        text = path.read_text()
    elif re.fullmatch(r"[A-Za-z0-9_-]+", str(name_or_path)):
        resource = resources.files("bridge_downstream.config") / "resources" / "profiles" / f"{name_or_path}.yaml"
        if resource.is_file():
            text = resource.read_text()
    if text is None:
        raise ProfileError(
            f"no profile {str(name_or_path)!r}: built-in profiles are {', '.join(builtin_profiles())}, or give a YAML file"
        )
    return Profile.from_mapping(yaml.safe_load(text))


def _column_types(raw: dict) -> dict[str, dict[str, str]]:
    """``column_types: {dataset: {key: type}}``; the type names are checked
    where plans are made (relationalize's ``SCALAR_KINDS``)."""
    value = raw.get("column_types") or {}
    if not isinstance(value, dict) or not all(
        isinstance(types, dict) and all(isinstance(k, str) and isinstance(t, str) for k, t in types.items())
        for types in value.values()
    ):
        raise ProfileError(f"profile {raw.get('name')!r}: column_types must map datasets to {{key: type}}")
    return {str(dataset): dict(types) for dataset, types in value.items()}


def _transforms(raw: dict) -> dict[str, tuple[FieldTransform, ...]]:
    """``transforms: {dataset: [{field: a.b, kind: ..., ...}, ...]}``, checked here
    so that a profile that loads can be applied to any row."""
    value = raw.get("transforms") or {}
    where = f"profile {raw.get('name')!r}: transforms"
    if not isinstance(value, dict):
        raise ProfileError(f"{where} must map datasets to lists of field transforms")
    transforms = {}
    for dataset, items in value.items():
        if not isinstance(items, list) or not items:
            raise ProfileError(f"{where}.{dataset} must be a non-empty list of field transforms")
        parsed = []
        for item in items:
            if not isinstance(item, dict):
                raise ProfileError(f"{where}.{dataset}: {item!r} is not a mapping")
            problem = _transform_problem(item)
            if problem:
                raise ProfileError(f"{where}.{dataset}: {item!r}: {problem}")
            parsed.append(
                FieldTransform(
                    kind=item["kind"],
                    path=tuple(item["field"].split(".")),
                    malformed=item.get("malformed", "fail"),
                    metric=item.get("metric", ""),
                    metric_type=item.get("type", ""),
                )
            )
        transforms[str(dataset)] = tuple(parsed)
    return transforms


def _transform_problem(item: dict) -> str | None:
    unknown = set(item) - {"field", "kind", "malformed", "metric", "type"}
    if unknown:
        return f"unknown keys {sorted(unknown)}"
    field_path = item.get("field")
    if not isinstance(field_path, str) or not all(field_path.split(".")):
        return "field is a dotted path of keys"
    kind = item.get("kind")
    if kind not in TRANSFORM_KINDS:
        return f"kind is one of {TRANSFORM_KINDS}"
    if kind == "json_text" and item.get("malformed", "fail") not in MALFORMED_TEXT:
        return f"malformed is one of {MALFORMED_TEXT}"
    if kind == "offset_array" and not (isinstance(item.get("metric"), str) and item["metric"]):
        return "an offset_array names its metric"
    if kind == "offset_array" and item.get("type") not in METRIC_TYPES:
        return f"an offset_array's type is one of {METRIC_TYPES}"
    if kind != "offset_array" and ("metric" in item or "type" in item):
        return "metric and type belong to an offset_array"
    if kind != "json_text" and "malformed" in item:
        return "malformed belongs to a json_text"
    return None
