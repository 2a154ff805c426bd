"""The original design of the ingest stage, reproduced as a baseline.

The first BridgeDownstream ``s3_to_json`` job, as it worked: archives one
after another (no parallelism), and for every file of an archive the ZIP is
opened again -- once to look up the file's schema, once to validate the file,
once to write it -- and every (record, file) becomes its own output object.
Validation is jsonschema's, as it was (no compiled fast path). It produces
the same rows as :func:`bridge_downstream.ingest.run_ingest`, so the two can
be compared on the same input; nothing in the pipeline uses it.

Two forms, one behaviour:

* :func:`run_original_ingest` on our ``Storage`` interface (the local-disk
  rows of the benchmark): the ZIP is re-read from storage per file and step;
* :func:`run_original_ingest_s3`, the job as it ran against S3 (the
  emulated-S3 rows): for every message a new S3 client and one ``get_object``
  (body read into memory, the record's metadata from the response), the ZIP
  opened three times from those bytes (schema lookup, validation, writing), a
  new jsonschema validator per file whose ``$ref``s resolve through a fresh
  registry that reads the referenced schema files again, each file
  ``json.dump``-ed to a local temporary file and put with a new S3 client as
  its own object (with the archive's metadata), and an invalid record sent to
  the invalid SQS queue. It reproduces the behaviour of the upstream
  ``s3_to_json_s3.py`` job; schemas come from the local registry instead of
  HTTPS (generous to the original), and output rows are ours (one line per
  element, the same enrichment) so both produce the same rows.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import posixpath
import tempfile
import zipfile
from collections.abc import Mapping, Sequence
from pathlib import Path

from bridge_downstream.common import layout
from bridge_downstream.common.storage import Storage
from bridge_downstream.config.profiles import Profile
from bridge_downstream.config.registry import SchemaRegistry
from bridge_downstream.ingest.bridge_upload import parse_uploaded_on
from bridge_downstream.ingest.context import InvalidArchive
from bridge_downstream.ingest.listing import ArchiveInput
from bridge_downstream.ingest.resolution import resolve_file, self_referenced_schemas
from bridge_downstream.ingest.validation import (
    accepted_messages,
    drop_accepted_deviations,
    validate_document_slow,
)


def _open_member(inp: ArchiveInput, member: str):
    """Open the archive afresh and parse one member (what each step of the original did)."""
    with inp.storage.open_read(inp.key) as stream, zipfile.ZipFile(stream) as archive:
        return json.loads(archive.read(member).decode("utf-8-sig"))


def _ingest_one(inp: ArchiveInput, registry: SchemaRegistry, profile: Profile, output: Storage) -> dict[str, int]:
    metadata = {
        str(k).lower(): str(v)
        for k, v in (inp.metadata if inp.metadata is not None else inp.storage.metadata(inp.key)).items()
    }
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
        resolution = resolve_file(
            registry,
            file_name=posixpath.basename(member),
            app_id=app_id,
            assessment_id=assessment_id,
            revision=revision,
            self_references=self_refs,
        )
        if not resolution.skipped:
            resolved[member] = resolution
    # 2. validation: opens the archive again for every file
    errors: dict[str, list[str]] = {}
    for member, resolution in resolved.items():
        if validate and resolution.schema_url and registry.schema(resolution.schema_url) is not None:
            accepted = accepted_messages(
                registry.rules.accepted_deviations,
                member,
                app_id=app_id,
                client_info=metadata.get("clientinfo", ""),
                assessment_id=assessment_id,
                file_aliases=registry.rules.file_aliases,
            )
            messages = validate_document_slow(registry, resolution.schema_url, _open_member(inp, member), accepted)
            if messages:
                errors[member] = messages
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


def run_original_ingest(
    inputs: Sequence[ArchiveInput], *, registry: SchemaRegistry, profile: Profile, output: Storage
) -> dict:
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
    return {
        "archives": {"total": len(inputs), **status},
        "datasets": {k: {"rows": v} for k, v in sorted(datasets.items())},
    }


# -- the job as it ran against S3 ----------------------------------------------


class _FileRetrieval:
    """``$ref`` retrieval as the original had it, minus the network: every
    retrieval reads and parses the referenced schema's file again (the job
    fetched it over HTTPS for every new validator)."""

    def __init__(self, registry: SchemaRegistry, registry_dir: str | os.PathLike):
        self.registry = registry
        self.root = Path(registry_dir)
        self.files = json.loads((self.root / "registry.json").read_text())["schemas"]  # $id -> file

    def __call__(self, uri: str):
        from referencing import Resource
        from referencing.exceptions import NoSuchResource
        from referencing.jsonschema import DRAFT7

        schema_id = self.registry.schema_id_for(uri.split("#", 1)[0])
        if schema_id is None or schema_id not in self.files:
            raise NoSuchResource(ref=uri)
        with open(self.root / self.files[schema_id], encoding="utf-8") as handle:
            return Resource.from_contents(json.load(handle), default_specification=DRAFT7)


def _validate_against_schema(document, schema: dict, retrieval: _FileRetrieval) -> list[str]:
    """A new validator for this one file, a fresh $ref registry, every error collected."""
    from jsonschema import validators
    from referencing import Registry
    from referencing.exceptions import Unresolvable

    validator_cls = validators.validator_for(schema, default=validators.Draft7Validator)
    validator = validator_cls(schema=schema, registry=Registry(retrieve=retrieval))
    try:
        return [error.message for error in validator.iter_errors(document)]
    except Unresolvable as error:
        return [f"unresolvable $ref {error.ref!r}"]


def _self_ref_schemas(archive: zipfile.ZipFile) -> dict[str, str]:
    if "metadata.json" not in archive.namelist():
        return {}
    with archive.open("metadata.json", "r") as handle:
        return self_referenced_schemas(json.loads(handle.read().decode("utf-8-sig")))


def _load_member(archive: zipfile.ZipFile, member: str):
    with archive.open(member, "r") as handle:
        return json.loads(handle.read().decode("utf-8-sig"))


class _Record:
    """What the job knew of one message: the get_object response (body in memory)."""

    def __init__(self, message: Mapping[str, str], response: dict, profile: Profile):
        self.message = message
        self.body: bytes = response["Body"]
        self.s3_metadata: dict[str, str] = response.get("Metadata", {})
        self.metadata = {str(k).lower(): str(v) for k, v in self.s3_metadata.items()}
        if not self.metadata or any(not self.metadata.get(name) for name in profile.required_metadata):
            raise InvalidArchive("Bridge metadata is missing or incomplete")
        self.record_id = self.metadata["recordid"]
        self.assessment_id = self.metadata["assessmentid"]
        self.revision = int(self.metadata["assessmentrevision"])
        self.uploaded = parse_uploaded_on(self.metadata["uploadedon"])
        self.app_id = self.metadata.get("appid") or profile.app_id or ""

    def resolve(self, registry: SchemaRegistry, archive: zipfile.ZipFile) -> dict:
        """Each file's schema and dataset (the job's get_json_schema), for one opening of the ZIP."""
        self_refs = _self_ref_schemas(archive)
        resolved = {}
        for member in archive.namelist():
            if member.endswith("/"):
                continue
            resolution = resolve_file(
                registry,
                file_name=posixpath.basename(member),
                app_id=self.app_id,
                assessment_id=self.assessment_id,
                revision=self.revision,
                self_references=self_refs,
            )
            if not resolution.skipped:
                resolved[member] = resolution
        return resolved


def _update_json_schemas(record: _Record, registry: SchemaRegistry, json_schemas: dict[str, dict]) -> None:
    """Opening 1: collect the schemas of the archive's files (cached by URL across records, as the job did)."""
    with zipfile.ZipFile(io.BytesIO(record.body)) as archive:
        for resolution in record.resolve(registry, archive).values():
            if resolution.schema_url and resolution.schema_url not in json_schemas:
                schema = registry.schema(resolution.schema_url)
                if schema is not None:
                    json_schemas[resolution.schema_url] = schema


def _validate_data(
    record: _Record, registry: SchemaRegistry, json_schemas: dict[str, dict], retrieval: _FileRetrieval
) -> dict[str, list[str]]:
    """Opening 2: every file with a schema loaded and validated by its own new validator."""
    if registry.is_legacy_assessment(record.assessment_id, record.revision):
        return {}
    errors: dict[str, list[str]] = {}
    with zipfile.ZipFile(io.BytesIO(record.body)) as archive:
        for member, resolution in record.resolve(registry, archive).items():
            schema = json_schemas.get(resolution.schema_url) if resolution.schema_url else None
            if schema is None:
                continue
            found = _validate_against_schema(_load_member(archive, member), schema, retrieval)
            if found:
                errors[member] = found
    return drop_accepted_deviations(
        errors,
        registry.rules.accepted_deviations,
        app_id=record.app_id,
        client_info=record.metadata.get("clientinfo", ""),
        assessment_id=record.assessment_id,
        file_aliases=registry.rules.file_aliases,
    )


def _process_record(
    record: _Record,
    registry: SchemaRegistry,
    profile: Profile,
    json_bucket: str,
    json_prefix: str,
    workdir: Path,
    credentials: Mapping[str, str],
) -> dict[str, int]:
    """Opening 3: every file loaded again, enriched, dumped to a local file and
    put as its own object by a new S3 client, with the archive's metadata."""
    import boto3

    partition = {
        "assessmentid": record.assessment_id,
        "year": record.uploaded.year,
        "month": record.uploaded.month,
        "day": record.uploaded.day,
    }
    enrichment = {**partition, "recordid": record.record_id, "uploadedon": record.metadata["uploadedon"]}
    if record.metadata.get("exportedon"):
        enrichment["exportedon"] = record.metadata["exportedon"]
    rows: dict[str, int] = {}
    with zipfile.ZipFile(io.BytesIO(record.body)) as archive:
        for member, resolution in record.resolve(registry, archive).items():
            document = _load_member(archive, member)
            extra = dict(enrichment)
            if resolution.dataset_id in profile.record_metadata_datasets:
                extra.update(record.metadata)
            extra["sourcefile"] = member
            elements = document if isinstance(document, list) else [document]
            digest = hashlib.sha256(f"{record.message['source_key']}/{member}".encode()).hexdigest()[:12]
            name = f"{record.record_id}-{digest}.ndjson"
            local_dir = workdir / resolution.dataset_id
            local_dir.mkdir(parents=True, exist_ok=True)
            local_path = local_dir / name
            with open(local_path, "w", encoding="utf-8") as out:
                for index, element in enumerate(elements):
                    row = dict(element) if isinstance(element, dict) else {"value": element}
                    row.update(extra)
                    row["sourceindex"] = index
                    json.dump(row, out, ensure_ascii=False, separators=(",", ":"))
                    out.write("\n")
            key = "/".join(
                p
                for p in (
                    json_prefix.strip("/"),
                    layout.dataset_prefix(resolution.dataset_id),
                    layout.partition_path(partition),
                    name,
                )
                if p
            )
            s3 = boto3.client(
                "s3", **credentials
            )  # a new client per written file, as the job's write_file_to_json_dataset
            with open(local_path, "rb") as body:
                s3.put_object(Body=body, Bucket=json_bucket, Key=key, Metadata=record.s3_metadata)
            rows[resolution.dataset_id] = rows.get(resolution.dataset_id, 0) + len(elements)
    return rows


def run_original_ingest_s3(
    messages: Sequence[Mapping[str, str]],
    *,
    registry: SchemaRegistry,
    registry_dir: str | os.PathLike,
    profile: Profile,
    json_bucket: str,
    json_prefix: str,
    invalid_queue_url: str | None,
    credentials: Mapping[str, str] | None = None,
) -> dict:
    """The job's loop: serial, one message (``{source_bucket, source_key}``) at a time.

    Endpoint and region come from the environment (``AWS_ENDPOINT_URL``), as
    the job's clients got theirs; ``credentials`` stand for the per-folder STS
    token the job passed to the client that reads the archive. An invalid
    record (failed validation, unusable metadata or ZIP) becomes one message
    on ``invalid_queue_url`` (skipped when None).
    """
    import boto3
    from botocore.exceptions import ClientError

    credentials = dict(credentials or {})
    sqs = boto3.client("sqs") if invalid_queue_url else None  # one per job
    retrieval = _FileRetrieval(registry, registry_dir)
    json_schemas: dict[str, dict] = {}
    datasets: dict[str, int] = {}
    status = {"processed": 0, "invalid": 0}
    with tempfile.TemporaryDirectory(prefix="original-ingest-") as temporary:
        workdir = Path(temporary)
        for message in sorted(messages, key=lambda m: (m["source_bucket"], m["source_key"])):
            reason, errors, record = None, {}, None
            try:
                bridge_s3 = boto3.client("s3", **credentials)  # a new client per message
                response = bridge_s3.get_object(Bucket=message["source_bucket"], Key=message["source_key"])
                response["Body"] = response["Body"].read()
                record = _Record(message, response, profile)
                _update_json_schemas(record, registry, json_schemas)
                errors = _validate_data(record, registry, json_schemas, retrieval)
                if errors:
                    reason = "failed validation: " + ", ".join(sorted(errors))
                else:
                    rows = _process_record(record, registry, profile, json_bucket, json_prefix, workdir, credentials)
            except (InvalidArchive, zipfile.BadZipFile, ValueError, KeyError, OSError, ClientError) as error:
                reason, errors = str(error) or type(error).__name__, {"archive": [str(error)]}
            if reason is not None:
                status["invalid"] += 1
                if sqs is not None:
                    result = {"errors": {f: m[:10] for f, m in errors.items()}}  # at most 10 per file, as the job sent
                    if record is not None:
                        result = {
                            "assessmentId": record.assessment_id,
                            "assessmentRevision": record.revision,
                            "appId": record.app_id,
                            "recordId": record.record_id,
                            **result,
                        }
                    entry = {**message, "validation_result": result, "reason": reason}
                    sqs.send_message(QueueUrl=invalid_queue_url, MessageBody=json.dumps(entry))
                continue
            status["processed"] += 1
            for dataset_id, count in rows.items():
                datasets[dataset_id] = datasets.get(dataset_id, 0) + count
    return {
        "archives": {"total": len(messages), **status},
        "datasets": {k: {"rows": v} for k, v in sorted(datasets.items())},
    }
