"""One archive, start to end: opened (read ahead on threads where storage is
remote), identified, checked against the ledger, the run's other archives
and the profile's required metadata, read by its format's reader, and
committed or rolled back -- one outcome, whatever happens."""

from __future__ import annotations

import hashlib
import io
import itertools
import json
import posixpath
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, BinaryIO

from bridge_downstream.common.storage import NO_METADATA, UnreadableMetadata
from bridge_downstream.common.text import printable
from bridge_downstream.config.profiles import Profile
from bridge_downstream.ingest.bridge_upload import read_bridge_upload
from bridge_downstream.ingest.context import ArchiveOutcome, IngestContext, InvalidArchive, TaskCopies
from bridge_downstream.ingest.listing import ArchiveInput
from bridge_downstream.ingest.ndjson_export import read_ndjson_export
from bridge_downstream.ingest.outcomes import (
    INVALID,
    PROCESSED,
    SKIPPED,
)
from bridge_downstream.ingest.part_writer import PartWriter
from bridge_downstream.ingest.safe_archive import (
    ArchiveError,
    SafeArchive,
)
from bridge_downstream.ingest.validation import (
    ValidationResult,
    metadata_problem,
)

_ERROR_TEXT_LENGTH = 500  # of an unexpected error's message, in a reason

# An archive up to this size is read into memory once, then hashed and
# unzipped from there: one read instead of dozens of small seeks and reads
# through zipfile (most uploads are a few KB). Larger ones are streamed.
IN_MEMORY_ARCHIVE_BYTES = 8 << 20


def in_memory_if_small(stream: BinaryIO) -> BinaryIO:
    """``stream`` itself, or (when it holds at most IN_MEMORY_ARCHIVE_BYTES)
    an in-memory copy of it; either way positioned at its start."""
    if isinstance(stream, io.BytesIO):
        return stream
    size = stream.seek(0, io.SEEK_END)
    stream.seek(0)
    return io.BytesIO(stream.read(size)) if size <= IN_MEMORY_ARCHIVE_BYTES else stream


def archive_identity(stream: BinaryIO, metadata: dict[str, str]) -> str:
    """The archive's bytes and its metadata, hashed; the stream is left at its start."""
    if isinstance(stream, io.BytesIO):
        digest = hashlib.sha256(stream.getbuffer())
    else:
        digest = hashlib.sha256()
        while chunk := stream.read(1 << 20):
            digest.update(chunk)
        stream.seek(0)
    # The ledger holds these digests: the metadata's encoding must never change.
    digest.update(b"\0" + _METADATA_JSON(metadata).encode())
    return digest.hexdigest()


# json.dumps(metadata, sort_keys=True), without making an encoder per archive.
_METADATA_JSON = json.JSONEncoder(sort_keys=True).encode


PROCESSORS: dict[str, Callable] = {"bridge-archive": read_bridge_upload, "ndjson-export": read_ndjson_export}


def _invalid_entry(
    inp: ArchiveInput, metadata: dict[str, str], ctx: IngestContext, reason: str, errors: dict, identity: str
) -> dict:
    result = ValidationResult(
        assessment_id=metadata.get("assessmentid", ""),
        assessment_revision=metadata.get("assessmentrevision", ""),
        app_id=metadata.get("appid") or ctx.app_id or ctx.profile.app_id or "",
        record_id=metadata.get("recordid") or posixpath.basename(inp.key),
        errors=errors,
    )
    return {
        "source_bucket": inp.source_bucket,
        "source_key": inp.key,
        "source": inp.source,
        "raw_folder_id": inp.raw_folder_id,
        "validation_result": result.to_json(),
        "reason": reason,
        "identity": identity,
        "profile": ctx.profile.name,
        "registry_version": ctx.registry.version,
        "metadata": metadata,
    }


def bridge_metadata(given: Mapping[str, object]) -> dict[str, str]:
    """Bridge metadata as the pipeline reads it: lower-case names, text values.

    A null value is no value: a required field that is null is missing,
    never the text "None". A number or a boolean is its text, as it always
    was (identities of archives already ingested do not change). A list or an
    object is refused, and so are two names that differ only in case but
    not in value: S3 lower-cases metadata names, so which value Bridge meant
    cannot be told (:class:`InvalidArchive`)."""
    metadata: dict[str, str] = {}
    spelled: dict[str, str] = {}
    for given_name, value in given.items():
        if value is None:
            continue
        name = str(given_name).lower()
        if isinstance(value, dict | list):
            kind = "object" if isinstance(value, dict) else "array"
            raise InvalidArchive(f"Bridge metadata {printable(name)} is not text but a JSON {kind}")
        text = str(value)
        if metadata.get(name, text) != text:
            raise InvalidArchive(
                f"ambiguous Bridge metadata: '{printable(spelled[name])}' and '{printable(str(given_name))}' "
                "differ only in case and give different values"
            )
        metadata[name], spelled[name] = text, str(given_name)
    return metadata


def open_archive(inp: ArchiveInput) -> tuple[Any, dict[str, str] | None]:
    """The archive's stream and its Bridge metadata (from the input, or the
    object's), as :func:`bridge_metadata` reads it; None when there is none:
    the store holds none for it (no sidecar), or the input's own is empty (a
    replay of a record that had none) -- where an empty sidecar is metadata
    with no fields."""
    if inp.metadata is not None:
        metadata = bridge_metadata(inp.metadata) if inp.metadata else None
        return inp.storage.open_read(inp.key), metadata
    stream, given = inp.storage.open_read_with_metadata(inp.key)
    try:
        return stream, None if given is NO_METADATA else bridge_metadata(given)
    except InvalidArchive:
        stream.close()
        raise


def with_key_cohort(metadata: dict[str, str], key: str, profile: Profile) -> dict[str, str]:
    """The metadata with the cohort the archive's key names (the profile's
    ``cohort_key_pattern``), so that the same bytes under two cohorts are two
    archives; a metadata ``cohort`` that says otherwise is refused
    (:class:`InvalidArchive`): which one is meant cannot be told."""
    cohort = profile.cohort_of_key(key)
    if cohort is None:
        return metadata
    given = metadata.get("cohort")
    if given is not None and given != cohort:
        raise InvalidArchive(f"cohort conflict: the key names {printable(cohort)!r}, the metadata {printable(given)!r}")
    return {**metadata, "cohort": cohort}


def prefetched(inputs: Iterable[ArchiveInput], depth: int) -> Iterator[tuple[ArchiveInput, Future | None]]:
    """The inputs in order, each with its archive being opened up to ``depth``
    archives ahead on threads (None: open it when due). A failed read is
    raised by ``Future.result()``, for the archive it belongs to."""
    if depth <= 0:
        for inp in inputs:
            yield inp, None
        return
    iterator = iter(inputs)
    with ThreadPoolExecutor(max_workers=depth, thread_name_prefix="archive-prefetch") as pool:

        def opening(inp: ArchiveInput) -> Future | None:
            # A refused entry (a FIFO, a dangling link) is never opened: reading it could wait for ever.
            return None if inp.refused is not None else pool.submit(open_archive, inp)

        pending = deque((inp, opening(inp)) for inp in itertools.islice(iterator, depth))
        try:
            while pending:
                inp, future = pending.popleft()
                following = next(iterator, None)
                if following is not None:
                    pending.append((following, opening(following)))
                yield inp, future
        finally:
            for _, future in pending:  # stopped early: close what was read ahead
                if future is not None and not future.cancel() and future.exception() is None:
                    future.result()[0].close()


def ingest_archive(
    inp: ArchiveInput,
    ctx: IngestContext,
    writer: PartWriter,
    opening: Future | None = None,
    copies: TaskCopies | None = None,
) -> ArchiveOutcome:
    """One archive, one outcome, whatever happens: ``processed``, ``invalid``
    with the reason (anything raised while it is read, checked, enriched or
    encoded, its rows rolled back) or ``skipped`` with the reason. Only what
    is the process's trouble and not the archive's -- KeyboardInterrupt,
    SystemExit, MemoryError -- goes on up. ``copies``: the task's record of
    the archives it was given (a second copy of one is skipped)."""
    source = inp.source  # a path computation: once per archive
    if inp.refused is not None:  # an entry the listing could not use (a FIFO, a dangling link): nothing to open
        return ArchiveOutcome(source=source, status=SKIPPED, reason=inp.refused)
    outcome = ArchiveOutcome(source=source, status=PROCESSED)
    metadata: dict[str, str] = {}
    identity = None
    token = writer.checkpoint()

    def invalid(reason: str, errors: dict | None = None) -> ArchiveOutcome:
        writer.rollback(token)
        outcome.status, outcome.reason, outcome.rows, outcome.wide_integer_rows = INVALID, reason, {}, {}
        # An archive that could not be read is known by its source.
        known_as = identity or hashlib.sha256(source.encode()).hexdigest()
        outcome.invalid_entry = _invalid_entry(inp, metadata, ctx, reason, errors or {"archive": [reason]}, known_as)
        if copies is not None and identity is not None:
            copies.taken(identity, source, ctx.kept_copies)
        return outcome

    try:
        opened, held = opening.result() if opening is not None else open_archive(inp)
        metadata = held if held is not None else {}
        outcome.record_id = metadata.get("recordid")
        with opened:
            metadata = with_key_cohort(metadata, inp.key, ctx.profile)
            stream = in_memory_if_small(opened)
            identity = outcome.identity = archive_identity(stream, metadata)
            if identity in ctx.already_ingested:
                outcome.status, outcome.reason = (
                    SKIPPED,
                    "already ingested: the same archive and metadata are in the ingest ledger",
                )
                return outcome
            earlier = copies.earlier_copy(identity, source, ctx.kept_copies) if copies is not None else None
            if earlier is not None:
                outcome.status, outcome.reason = (
                    SKIPPED,
                    f"duplicate of {printable(earlier)} in this run: the same archive and metadata",
                )
                return outcome
            if held is None and ctx.profile.required_metadata:
                return invalid(
                    "no Bridge metadata: expected the S3 object's metadata, or locally a sidecar file "
                    f"{printable(posixpath.basename(inp.key))}.metadata.json"
                )
            problem = metadata_problem(metadata, ctx.profile)
            if problem:
                return invalid(problem)
            with SafeArchive(stream, ctx.limits, source) as archive:
                PROCESSORS[ctx.profile.kind](archive, metadata, ctx, writer, outcome)
    except ArchiveError as error:
        return invalid(str(error), {error.member or "archive": [str(error)]})
    except InvalidArchive as error:
        return invalid(error.reason, error.errors or None)
    except FileNotFoundError as error:
        return invalid(f"archive not found: {error}")
    except PermissionError as error:
        return invalid(f"archive not readable: {error}")
    except UnreadableMetadata as error:
        return invalid(f"unreadable Bridge metadata: {error}")
    except MemoryError:
        raise  # the process's trouble, not the archive's
    except Exception as error:  # noqa: BLE001 - one archive, one outcome, whatever it raises
        return invalid(f"unexpected-error: {type(error).__name__}: {printable(str(error))[:_ERROR_TEXT_LENGTH]}")
    if not outcome.rows:
        writer.rollback(token)
        outcome.status = SKIPPED
        skipped = "; ".join(f"{printable(f['file'])}: {f['reason']}" for f in outcome.files_skipped) or "no files"
        outcome.reason = f"no file of the archive gives rows ({skipped})"
        return outcome
    writer.commit(identity)
    if copies is not None:
        copies.taken(identity, source, ctx.kept_copies)
    return outcome
