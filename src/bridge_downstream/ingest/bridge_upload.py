"""Bridge upload archives (the ``bridge-archive`` profile kind, MTB): every JSON file
resolved to its schema and dataset, validated, enriched with the record's
metadata and written as rows."""

from __future__ import annotations

import functools
import posixpath
import sys

from bridge_downstream.common import jsoncodec
from bridge_downstream.common.text import printable
from bridge_downstream.ingest.context import ArchiveOutcome, IngestContext, InvalidArchive
from bridge_downstream.ingest.part_writer import PartWriter
from bridge_downstream.ingest.resolution import resolve_file, self_referenced_schemas
from bridge_downstream.ingest.safe_archive import (
    SafeArchive,
)
from bridge_downstream.ingest.validation import (
    accepted_messages,
    parse_instant,
    validate_document,
)

# The name the ingest package has always exported for reading ``uploadedon``.
parse_uploaded_on = parse_instant

# Columns the relationalize step gives its child tables (their row's id and
# the element's position): never a metadata field's.
RELATIONALIZE_COLUMNS = ("id", "index")

# A document that holds no element gives no row (not a row of nulls).
EMPTY_DOCUMENT_REASON = "empty document ([] or null): no rows"


def read_bridge_upload(
    archive: SafeArchive, metadata: dict[str, str], ctx: IngestContext, writer: PartWriter, outcome: ArchiveOutcome
) -> None:
    """The archive's rows, file by file. The metadata has passed
    :func:`~bridge_downstream.ingest.validation.metadata_problem`: its ids,
    revision and instants have their form."""
    profile, registry = ctx.profile, ctx.registry
    record_id = metadata["recordid"]
    assessment_id = metadata["assessmentid"]
    revision = int(metadata["assessmentrevision"])
    uploaded = parse_uploaded_on(metadata["uploadedon"])
    app_id = metadata.get("appid") or ctx.app_id or profile.app_id or ""
    # metadata.json names the schemas of the other files, and is a data file itself: read once.
    metadata_document = archive.read_json("metadata.json") if archive.has("metadata.json") else None
    self_refs = self_referenced_schemas(metadata_document)
    validate = not registry.is_legacy_assessment(assessment_id, revision)
    partition = (
        ("assessmentid", assessment_id),
        ("year", uploaded.year),
        ("month", uploaded.month),
        ("day", uploaded.day),
    )
    enrichment = {
        "assessmentid": assessment_id,
        "year": uploaded.year,
        "month": uploaded.month,
        "day": uploaded.day,
        "recordid": record_id,
        "uploadedon": metadata["uploadedon"],
    }
    if metadata.get("exportedon"):
        enrichment["exportedon"] = metadata["exportedon"]
    # What the pipeline derives is its own: a metadata field of the same name
    # reaches no row (record-metadata datasets get the other fields).
    derived = {*profile.enrichment_columns, *profile.partition_fields, *RELATIONALIZE_COLUMNS, *enrichment}
    record_metadata = {name: value for name, value in metadata.items() if name not in derived}
    errors: dict[str, list[str]] = {}

    def accepted(member: str) -> tuple[str, ...]:  # asked for only when a file is not plainly valid
        return accepted_messages(
            registry.rules.accepted_deviations,
            member,
            app_id=app_id,
            client_info=metadata.get("clientinfo", ""),
            assessment_id=assessment_id,
            file_aliases=registry.rules.file_aliases,
        )

    for member in sorted(archive.names):
        file_name = posixpath.basename(member)
        resolution = resolve_file(
            registry,
            file_name=file_name,
            app_id=app_id,
            assessment_id=assessment_id,
            revision=revision,
            self_references=self_refs,
        )
        dataset_id = resolution.dataset_id
        if dataset_id is None:
            # Interned: one string per distinct name/reason, also after pickling to the parent.
            outcome.files_skipped.append({"file": sys.intern(member), "reason": sys.intern(resolution.reason or "")})
            continue
        archive.check_dataset_member(member)
        document = metadata_document if member == "metadata.json" else archive.read_json(member)
        if validate and resolution.schema_url and registry.schema(resolution.schema_url) is not None:
            messages = validate_document(registry, resolution.schema_url, document, functools.partial(accepted, member))
            if messages:
                errors[member] = messages
                continue
        if document is None or document == []:
            outcome.files_skipped.append({"file": sys.intern(member), "reason": EMPTY_DOCUMENT_REASON})
            continue
        if dataset_id in profile.record_metadata_datasets:
            extra = {**enrichment, **record_metadata, "sourcefile": member}
        else:
            extra = {**enrichment, "sourcefile": member}
        elements = document if isinstance(document, list) else [document]
        archive.count_rows(len(elements))
        # One write per file, not per row.
        rows = jsoncodec.Rows(extra)
        writer.write_block(dataset_id, partition, rows.block(elements), len(elements))
        outcome.rows[dataset_id] = outcome.rows.get(dataset_id, 0) + len(elements)
        if rows.wide_integer_rows:
            outcome.wide_integer_rows[dataset_id] = (
                outcome.wide_integer_rows.get(dataset_id, 0) + rows.wide_integer_rows
            )
    if errors:
        files = ", ".join(printable(name) for name in sorted(errors))
        raise InvalidArchive(f"failed validation: {files}", errors)
