"""The original design of the ingest stage, reproduced as a baseline.

The first BridgeDownstream ``s3_to_json`` job, as it worked: archives one
after another (no parallelism), and for every file of an archive the ZIP is
opened again -- once to look up the file's schema, once to validate the file,
once to write it -- and every (record, file) becomes its own output object.
Validation is jsonschema's, as it was (no compiled fast path). It produces
the same rows as :func:`bridge_downstream.ingest.run_ingest`, so the two can
be compared on the same input; nothing in the pipeline uses it.
"""

from __future__ import annotations

import hashlib
import json
import posixpath
import zipfile
from collections.abc import Sequence

from bridge_downstream import layout
from bridge_downstream.ingest import ArchiveInput, InvalidArchive, parse_uploaded_on
from bridge_downstream.profiles import Profile
from bridge_downstream.registry import SchemaRegistry
from bridge_downstream.resolution import resolve_file, self_referenced_schemas
from bridge_downstream.storage import Storage
from bridge_downstream.validation import drop_accepted_deviations, validate_document_slow


def _open_member(inp: ArchiveInput, member: str):
    """Open the archive afresh and parse one member (what each step of the original did)."""
    with inp.storage.open_read(inp.key) as stream, zipfile.ZipFile(stream) as archive:
        return json.loads(archive.read(member).decode("utf-8-sig"))


def _ingest_one(inp: ArchiveInput, registry: SchemaRegistry, profile: Profile, output: Storage) -> dict[str, int]:
    metadata = {str(k).lower(): str(v) for k, v in (inp.metadata if inp.metadata is not None else inp.storage.metadata(inp.key)).items()}
    if not metadata or any(not metadata.get(name) for name in profile.required_metadata):
        raise InvalidArchive("Bridge metadata is missing or incomplete")
    with inp.storage.open_read(inp.key) as stream, zipfile.ZipFile(stream) as archive:
        members = [info.filename for info in archive.infolist() if not info.is_dir()]
    record_id, assessment_id = metadata["recordid"], metadata["assessmentid"]
    revision = int(metadata["assessmentrevision"])
    uploaded = parse_uploaded_on(metadata["uploadedon"])
    app_id = metadata.get("appid") or profile.app_id or ""
    validate = not registry.is_legacy_assessment(assessment_id, revision)
    partition = {"assessmentid": assessment_id, "year": uploaded.year, "month": uploaded.month, "day": uploaded.day}
    enrichment = {**partition, "recordid": record_id, "uploadedon": metadata["uploadedon"]}
    if metadata.get("exportedon"):
        enrichment["exportedon"] = metadata["exportedon"]
    # 1. schema lookup: opens the archive for metadata.json
    self_refs = self_referenced_schemas(_open_member(inp, "metadata.json")) if "metadata.json" in members else {}
    resolved = {}
    for member in sorted(members):
        resolution = resolve_file(registry, file_name=posixpath.basename(member), app_id=app_id, assessment_id=assessment_id, revision=revision, self_references=self_refs)
        if not resolution.skipped:
            resolved[member] = resolution
    # 2. validation: opens the archive again for every file
    errors: dict[str, list[str]] = {}
    for member, resolution in resolved.items():
        if validate and resolution.schema_url and registry.schema(resolution.schema_url) is not None:
            remaining = drop_accepted_deviations(
                {member: validate_document_slow(registry, resolution.schema_url, _open_member(inp, member))},
                registry.rules.accepted_deviations,
                app_id=app_id,
                client_info=metadata.get("clientinfo", ""),
                assessment_id=assessment_id,
                file_aliases=registry.rules.file_aliases,
            )
            errors.update(remaining)
    if errors:
        raise InvalidArchive(f"failed validation: {', '.join(sorted(errors))}", errors)
    # 3. write: opens the archive again for every file; one object per record and file
    rows: dict[str, int] = {}
    for member, resolution in resolved.items():
        document = _open_member(inp, member)
        extra = dict(enrichment)
        if resolution.dataset_id in profile.record_metadata_datasets:
            extra.update(metadata)
        extra["sourcefile"] = member
        elements = document if isinstance(document, list) else [document]
        lines = []
        for index, element in enumerate(elements):
            row = dict(element) if isinstance(element, dict) else {"value": element}
            row.update(extra)
            row["sourceindex"] = index
            lines.append(json.dumps(row, ensure_ascii=False, separators=(",", ":")))
        digest = hashlib.sha256(f"{inp.key}/{member}".encode()).hexdigest()[:12]
        name = f"{record_id}-{digest}.ndjson"
        key = "/".join([layout.dataset_prefix(resolution.dataset_id), layout.partition_path(partition), name])
        output.write_bytes(key, ("\n".join(lines) + "\n").encode())
        rows[resolution.dataset_id] = rows.get(resolution.dataset_id, 0) + len(elements)
    return rows


def run_original_ingest(inputs: Sequence[ArchiveInput], *, registry: SchemaRegistry, profile: Profile, output: Storage) -> dict:
    """Serial, one archive at a time; returns counts like the run report's."""
    datasets: dict[str, int] = {}
    status = {"processed": 0, "invalid": 0}
    for inp in sorted(inputs, key=lambda i: i.source):
        try:
            rows = _ingest_one(inp, registry, profile, output)
        except (InvalidArchive, zipfile.BadZipFile, ValueError, KeyError, OSError):
            status["invalid"] += 1
            continue
        status["processed"] += 1
        for dataset_id, count in rows.items():
            datasets[dataset_id] = datasets.get(dataset_id, 0) + count
    return {"archives": {"total": len(inputs), **status}, "datasets": {k: {"rows": v} for k, v in sorted(datasets.items())}}
