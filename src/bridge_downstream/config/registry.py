"""The schema registry: a versioned directory artifact, never fetched at run time.

Layout of a registry directory (or S3 prefix)::

    registry.json           index: version, schema files by $id, aliases
    archive-map.json        mobile-client-json archive map
    schema-mapping.json     $id or published URL -> dataset id
    dataset-mapping.json    legacy: assessment -> revision -> file name -> dataset id
    pipeline.json           client deviations accepted and file-name aliases
    schemas/<n>.json        every JSON Schema, as given

A registry is built from a *sources file* (:class:`RegistrySources`, the
project's ``registry-sources/mtb.yaml``) or from each source given alone
(:func:`build_registry`).

``$ref`` resolution happens inside the registry only: a reference to a
schema the registry does not hold is a validation error, not a download.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml
from jsonschema import validators
from referencing import Registry, Resource
from referencing.exceptions import NoSuchResource
from referencing.jsonschema import DRAFT7

from bridge_downstream.common.storage import LocalStorage, Storage, join_key

REGISTRY_FORMAT = 1
INDEX_NAME = "registry.json"


class RegistryError(Exception):
    """A registry cannot be built or loaded; the message says why."""


@dataclass(frozen=True)
class PipelineRules:
    """Configuration that travels with the schemas.

    ``accepted_deviations``: validation errors tolerated for known client
    releases, as ``[{"when": {"appId": ..., "clientInfoContains": ...},
    "file": "motion.json", "messages": [...]}]``.
    ``file_aliases``: archive member names resolved as another name, for
    clients that wrote a file under an older name
    (``{"microphone.json": "microphone_levels.json"}``).
    """

    accepted_deviations: tuple[dict, ...] = ()
    file_aliases: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def from_json(cls, raw: Mapping[str, Any]) -> PipelineRules:
        """Rules from their JSON (or YAML) form; a rule that could not be read
        as meant is refused: a misspelt condition would otherwise accept an
        error for every client."""
        if not isinstance(raw, Mapping):
            raise RegistryError(f"pipeline rules must be an object, not {type(raw).__name__}")
        _refuse_unknown_keys("pipeline rules", raw, {"accepted_deviations", "file_aliases"})
        aliases = raw.get("file_aliases") or {}
        if not isinstance(aliases, Mapping) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in aliases.items()
        ):
            raise RegistryError("file_aliases must map file names to file names")
        deviations = raw.get("accepted_deviations") or []
        if not isinstance(deviations, list):
            raise RegistryError("accepted_deviations must be a list")
        for number, rule in enumerate(deviations):
            _check_deviation(f"accepted_deviations[{number}]", rule)
        return cls(accepted_deviations=tuple(deviations), file_aliases=dict(aliases))

    def to_json(self) -> dict:
        return {"accepted_deviations": list(self.accepted_deviations), "file_aliases": dict(self.file_aliases)}


# What an accepted deviation's ``when`` may name (ingest.validation matches them).
DEVIATION_CONDITIONS = frozenset({"appId", "assessmentId", "clientInfoContains"})


def _refuse_unknown_keys(what: str, raw: Mapping[str, Any], known: set[str] | frozenset[str]) -> None:
    unknown = sorted(set(raw) - set(known))
    if unknown:
        raise RegistryError(f"{what}: unknown {', '.join(map(repr, unknown))} (known: {', '.join(sorted(known))})")


def _check_deviation(where: str, rule: object) -> None:
    if not isinstance(rule, Mapping):
        raise RegistryError(f"{where} must be an object")
    _refuse_unknown_keys(where, rule, {"when", "file", "messages"})
    when = rule.get("when", {})
    if not isinstance(when, Mapping) or not all(isinstance(v, str) for v in when.values()):
        raise RegistryError(f"{where}.when must map conditions to text")
    _refuse_unknown_keys(f"{where}.when", when, DEVIATION_CONDITIONS)
    if not isinstance(rule.get("file"), str):
        raise RegistryError(f"{where}.file must name a file (or '*')")
    messages = rule.get("messages")
    if not isinstance(messages, list) or not messages or not all(isinstance(m, str) for m in messages):
        raise RegistryError(f"{where}.messages must be a non-empty list of error messages")


def _no_retrieval(uri: str):
    raise NoSuchResource(ref=uri)  # type: ignore[call-arg]  # an attrs class; mypy misses its init


class SchemaRegistry:
    """A loaded registry: schemas by $id and alias, mappings and rules."""

    def __init__(
        self,
        *,
        version: str,
        archive_map: dict,
        schemas: Mapping[str, dict],
        aliases: Mapping[str, str],
        schema_mapping: Mapping[str, str],
        dataset_mapping: Mapping[str, Any],
        rules: PipelineRules,
    ):
        self.version = version
        self.archive_map = archive_map
        self.schemas = dict(schemas)  # $id -> schema
        self.aliases = dict(aliases)  # published URL -> $id
        self.schema_mapping = dict(schema_mapping)
        self.dataset_mapping = dict(dataset_mapping)
        self.rules = rules
        resources = []
        for schema_id, schema in self.schemas.items():
            resource = Resource.from_contents(schema, default_specification=DRAFT7)
            resources.append((schema_id, resource))
        for url, schema_id in self.aliases.items():
            resource = Resource.from_contents(self.schemas[schema_id], default_specification=DRAFT7)
            resources.append((url, resource))
        # retrieve= is an attrs alias of Registry's private field, which mypy's attrs support does not see.
        self._referencing = Registry(retrieve=_no_retrieval).with_resources(resources).crawl()  # type: ignore[call-arg]
        self._validators: dict[str, Any] = {}

    # -- lookups -----------------------------------------------------------

    def schema_id_for(self, url: str) -> str | None:
        if url in self.schemas:
            return url
        return self.aliases.get(url)

    def schema(self, url: str) -> dict | None:
        schema_id = self.schema_id_for(url)
        return None if schema_id is None else self.schemas[schema_id]

    def dataset_for_schema(self, url: str) -> str | None:
        """Dataset id through the schema mapping, by $id or published URL."""
        if url in self.schema_mapping:
            return self.schema_mapping[url]
        schema_id = self.schema_id_for(url)
        if schema_id is not None and schema_id in self.schema_mapping:
            return self.schema_mapping[schema_id]
        for alias, target in self.aliases.items():
            if target == schema_id and alias in self.schema_mapping:
                return self.schema_mapping[alias]
        return None

    def legacy_dataset(self, assessment_id: str, revision: str | int, file_name: str) -> str | None:
        revisions = self.dataset_mapping.get("assessmentIdentifier", {}).get(assessment_id, {})
        files = revisions.get("assessmentRevision", {}).get(str(revision), {})
        return files.get(file_name)

    def is_legacy_assessment(self, assessment_id: str, revision: str | int) -> bool:
        revisions = self.dataset_mapping.get("assessmentIdentifier", {}).get(assessment_id, {})
        return str(revision) in revisions.get("assessmentRevision", {})

    def resolver(self):
        """``resolve(ref, base) -> (schema, base)`` for walking schemas offline."""

        def resolve(ref: str, base_uri: str = "") -> tuple[Any, str]:
            resolved = self._referencing.resolver(base_uri=base_uri).lookup(ref)
            return resolved.contents, resolved.resolver._base_uri

        return resolve

    def validator(self, url: str):
        """A draft-appropriate validator whose $refs resolve in the registry."""
        schema_id = self.schema_id_for(url)
        if schema_id is None:
            raise RegistryError(f"schema {url!r} is not in registry {self.version}")
        if schema_id not in self._validators:
            schema = self.schemas[schema_id]
            cls = validators.validator_for(schema, default=validators.Draft7Validator)
            self._validators[schema_id] = cls(schema, registry=self._referencing)
        return self._validators[schema_id]

    # -- loading -----------------------------------------------------------

    @classmethod
    def load(cls, source: str | os.PathLike | Storage, prefix: str = "") -> SchemaRegistry:
        storage = source if isinstance(source, Storage) else LocalStorage(source)

        def read(name: str):
            key = join_key(prefix, name)
            if not storage.exists(key):
                raise RegistryError(f"registry at {storage.uri(prefix or '.')} has no {name}")
            return json.loads(storage.read_bytes(key))

        index = read(INDEX_NAME)
        if index.get("format") != REGISTRY_FORMAT:
            raise RegistryError(f"unsupported registry format {index.get('format')!r}")
        schemas = {schema_id: read(path) for schema_id, path in index["schemas"].items()}
        return cls(
            version=index["version"],
            archive_map=read(index["archive_map"]),
            schemas=schemas,
            aliases=index.get("aliases", {}),
            schema_mapping=read(index["schema_mapping"]),
            dataset_mapping=read(index["dataset_mapping"]),
            rules=PipelineRules.from_json(read(index["pipeline_rules"])),
        )


# -- building ----------------------------------------------------------------


def _schema_files(directories: Iterable[str | os.PathLike]) -> list[Path]:
    files = []
    for directory in directories:
        base = Path(directory)
        if not base.is_dir():
            raise RegistryError(f"schema directory {base} does not exist")
        files.extend(sorted(p for p in base.rglob("*.json") if p.is_file()))
    return files


def _load_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise RegistryError(f"{path}: not readable JSON ({error})") from error


def _prefer(schema_id: str, candidates: list[Path]) -> Path:
    # Several files may claim one $id (copies, or an ArchiveMap.json that
    # kept the previous version's $id). The file whose path ends the way the
    # $id does is the one published at that URL.
    tail_matches = [p for p in candidates if schema_id.endswith(p.as_posix().split("/schemas/")[-1])]
    if len(tail_matches) == 1:
        return tail_matches[0]
    contents = {json.dumps(_load_json(p), sort_keys=True) for p in candidates}
    if len(contents) == 1:
        return candidates[0]
    raise RegistryError(
        f"conflicting schemas claim $id {schema_id!r}: "
        + ", ".join(str(p) for p in candidates)
        + " (pass the intended one with --alias URL=FILE, or remove the others)"
    )


def _safe_name(schema_id: str, taken: set[str]) -> str:
    stem = re.sub(r"[^A-Za-z0-9._-]+", "_", schema_id.split("://", 1)[-1]).strip("_")[-80:]
    name = f"schemas/{stem}"
    if not name.endswith(".json"):
        name += ".json"
    while name in taken:
        name = name[:-5] + "_.json"
    taken.add(name)
    return name


def build_registry(
    *,
    archive_map: str | os.PathLike,
    schema_dirs: Iterable[str | os.PathLike],
    schema_mapping: str | os.PathLike,
    dataset_mapping: str | os.PathLike,
    aliases: Mapping[str, str | os.PathLike] | None = None,
    pipeline_rules: str | os.PathLike | None = None,
    rules: PipelineRules | None = None,
    out: str | os.PathLike,
    version: str | None = None,
    sources_file: str | None = None,
) -> dict:
    """Assemble a registry directory; returns its index.

    ``aliases`` maps a published URL to a schema file whose ``$id`` differs
    from that URL (``sharedSchema`` is published under a GitHub URL).
    The pipeline rules come from a JSON file (``pipeline_rules``) or as
    ``rules``, not both. ``sources_file``: the sources file named them
    (recorded in the index as ``sources``; deployments to prod require one).
    """
    if pipeline_rules is not None and rules is not None:
        raise RegistryError("pipeline rules come from a file or are given, not both")
    out_dir = Path(out)
    claims: dict[str, list[Path]] = {}
    for path in _schema_files(schema_dirs):
        schema = _load_json(path)
        if isinstance(schema, dict) and isinstance(schema.get("$id"), str):
            claims.setdefault(schema["$id"], []).append(path)
    chosen = {schema_id: _prefer(schema_id, paths) for schema_id, paths in claims.items()}

    alias_ids: dict[str, str] = {}
    for url, file_path in dict(aliases or {}).items():
        path = Path(file_path)
        schema = _load_json(path)
        schema_id = schema.get("$id") if isinstance(schema, dict) else None
        if not schema_id:
            raise RegistryError(f"alias {url}: {path} has no $id")
        if schema_id in chosen and chosen[schema_id] != path and _load_json(chosen[schema_id]) != schema:
            raise RegistryError(f"alias {url}: $id {schema_id!r} of {path} is already held by {chosen[schema_id]}")
        chosen[schema_id] = path
        alias_ids[url] = schema_id

    archive = _load_json(Path(archive_map))
    mapping = _load_json(Path(schema_mapping))
    legacy = _load_json(Path(dataset_mapping))
    if rules is None:
        rules = PipelineRules.from_json(_load_json(Path(pipeline_rules)) if pipeline_rules else {})

    missing = [url for url in _archive_map_schema_urls(archive) if url not in chosen and url not in alias_ids]
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "schemas").mkdir(exist_ok=True)
    taken: set[str] = set()
    schema_files: dict[str, str] = {}
    digest = hashlib.sha256()
    for schema_id in sorted(chosen):
        name = _safe_name(schema_id, taken)
        data = chosen[schema_id].read_bytes()
        (out_dir / name).write_bytes(data)
        schema_files[schema_id] = name
        digest.update(schema_id.encode() + b"\0" + data)
    for name, content in (
        ("archive-map.json", archive),
        ("schema-mapping.json", mapping),
        ("dataset-mapping.json", legacy),
        ("pipeline.json", rules.to_json()),
    ):
        text = json.dumps(content, indent=2, sort_keys=True)
        (out_dir / name).write_text(text)
        digest.update(name.encode() + b"\0" + text.encode())
    digest.update(json.dumps(alias_ids, sort_keys=True).encode())
    index = {
        "format": REGISTRY_FORMAT,
        "version": version or f"sha256-{digest.hexdigest()[:16]}",
        "built_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "archive_map": "archive-map.json",
        "schema_mapping": "schema-mapping.json",
        "dataset_mapping": "dataset-mapping.json",
        "pipeline_rules": "pipeline.json",
        "schemas": schema_files,
        "aliases": alias_ids,
        "unresolved_archive_map_urls": missing,
        "sources": sources_file,
    }
    (out_dir / INDEX_NAME).write_text(json.dumps(index, indent=2, sort_keys=True))
    return index


def _archive_map_schema_urls(archive: Mapping[str, Any]) -> list[str]:
    urls = []

    def files(entries):
        for entry in entries or []:
            if isinstance(entry, dict) and entry.get("jsonSchema"):
                urls.append(entry["jsonSchema"])

    files(archive.get("anyOf"))
    for assessment in archive.get("assessments", []):
        files(assessment.get("files"))
    for app in archive.get("apps", []):
        for default in app.get("default", []):
            files(default.get("files"))
        files(app.get("anyOf"))
    return sorted(set(urls))


# -- a registry's sources, named in a file -------------------------------------

SOURCES_FORMAT = 1
_SOURCES_KEYS = frozenset(
    {"format", "roots", "archive_map", "schemas", "schema_mapping", "dataset_mapping", "aliases", "rules"}
)


@dataclass(frozen=True)
class RegistrySources:
    """What a registry is built from, as a sources file names it
    (``registry-sources/mtb.yaml``): the archive map, schema folders, schema
    and dataset mappings and aliased schemas inside checkouts of the schema
    repositories, and the pipeline rules, which are project configuration.

    In the file every path starts with the name of a root declared under
    ``roots:``; a root is the folder of that name under ``root``, or the
    folder ``roots`` gives for it (a checkout anywhere)."""

    archive_map: Path
    schema_dirs: tuple[Path, ...]
    schema_mapping: Path
    dataset_mapping: Path
    aliases: Mapping[str, Path]
    rules: PipelineRules
    file_name: str = ""  # the sources file's, recorded in the registry's index

    @classmethod
    def load(
        cls,
        path: str | os.PathLike,
        *,
        root: str | os.PathLike | None = None,
        roots: Mapping[str, str | os.PathLike] | None = None,
    ) -> RegistrySources:
        try:
            raw = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
        except (OSError, yaml.YAMLError) as error:
            raise RegistryError(f"registry sources {path}: not readable YAML ({error})") from error
        if not isinstance(raw, Mapping):
            raise RegistryError(f"registry sources {path}: not a mapping")
        _refuse_unknown_keys(f"registry sources {path}", raw, _SOURCES_KEYS)
        if raw.get("format") != SOURCES_FORMAT:
            raise RegistryError(f"registry sources {path}: unsupported format {raw.get('format')!r}")
        declared = raw.get("roots")
        if not isinstance(declared, Mapping) or not declared:
            raise RegistryError(f"registry sources {path}: `roots` must name the source folders")
        given = dict(roots or {})
        _refuse_unknown_keys(f"--root NAME=DIR for {path}", given, set(declared))
        folders = {name: Path(given[name]) if name in given else None for name in declared}
        if root is not None:
            folders = {name: folder or Path(root) / name for name, folder in folders.items()}

        def located(field_name: str, text: object) -> Path:
            if not isinstance(text, str) or not text:
                raise RegistryError(f"registry sources {path}: {field_name} must be a path")
            name, _, rest = text.partition("/")
            if name not in folders:
                raise RegistryError(
                    f"registry sources {path}: {field_name} {text!r} does not start with a root "
                    f"({', '.join(sorted(folders))})"
                )
            folder = folders[name]
            if folder is None:
                raise RegistryError(
                    f"registry sources {path}: no folder for root {name}, {declared[name]}: "
                    f"pass --root DIR (a folder holding {name}/) or --root {name}=DIR"
                )
            located_path = folder / rest
            if not located_path.exists():
                raise RegistryError(f"registry sources {path}: {field_name} {located_path} does not exist")
            return located_path

        schema_dirs = raw.get("schemas")
        if not isinstance(schema_dirs, list) or not schema_dirs:
            raise RegistryError(f"registry sources {path}: schemas must list schema folders")
        aliases = raw.get("aliases") or {}
        if not isinstance(aliases, Mapping):
            raise RegistryError(f"registry sources {path}: aliases must map published URLs to schema files")
        return cls(
            archive_map=located("archive_map", raw.get("archive_map")),
            schema_dirs=tuple(located("schemas", folder) for folder in schema_dirs),
            schema_mapping=located("schema_mapping", raw.get("schema_mapping")),
            dataset_mapping=located("dataset_mapping", raw.get("dataset_mapping")),
            aliases={url: located(f"alias {url}", file) for url, file in aliases.items()},
            rules=PipelineRules.from_json(raw.get("rules") or {}),
            file_name=Path(path).name,
        )

    def build(self, out: str | os.PathLike, version: str | None = None) -> dict:
        """Assemble the registry directory (:func:`build_registry`); returns its index."""
        return build_registry(
            archive_map=self.archive_map,
            schema_dirs=self.schema_dirs,
            schema_mapping=self.schema_mapping,
            dataset_mapping=self.dataset_mapping,
            aliases=self.aliases,
            rules=self.rules,
            out=out,
            version=version,
            sources_file=self.file_name,
        )
