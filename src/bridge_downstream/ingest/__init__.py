"""The ingest stage: upload archives -> validated, schema-bucketed NDJSON datasets.

Data flows through these modules in this order:

* :mod:`.listing` -- which archives a run reads;
* :mod:`.archive_ingest` -- one archive: opened, identified, checked, read
  by its format's reader, committed or rolled back;
* :mod:`.safe_archive` -- reading a ZIP member by member within limits;
* :mod:`.bridge_upload` and :mod:`.ndjson_export` -- one reader per input
  format, using :mod:`.resolution` (file -> schema -> dataset) and
  :mod:`.validation`;
* :mod:`.part_writer` -- rows into per-task part files;
* :mod:`.outcomes` -- where every archive ended, the ledger, the run report;
  :mod:`.invalid_sink` -- where invalid records go;
* :mod:`.run` -- a whole run, in worker processes.
"""

from bridge_downstream.ingest.archive_ingest import ingest_archive, open_archive, prefetched
from bridge_downstream.ingest.bridge_upload import parse_uploaded_on
from bridge_downstream.ingest.context import (
    ArchiveOutcome,
    IngestContext,
    InvalidArchive,
    default_prefetch,
)
from bridge_downstream.ingest.invalid_sink import InvalidSink, StorageInvalidSink
from bridge_downstream.ingest.listing import ArchiveInput, ArchiveListing
from bridge_downstream.ingest.ndjson_export import export_dataset_id
from bridge_downstream.ingest.outcomes import (
    INVALID,
    PROCESSED,
    SKIPPED,
    IngestLedger,
    TaskResult,
    finish_run,
    forget_ingested,
    load_ledger,
    read_run_records,
)
from bridge_downstream.ingest.run import new_run_id, process_batch, run_ingest, without_repeated_archives
from bridge_downstream.ingest.safe_archive import ArchiveError, SafeArchive
from bridge_downstream.ingest.validation import ValidationResult, accepted_messages

__all__ = [
    "INVALID",
    "PROCESSED",
    "SKIPPED",
    "ArchiveError",
    "ArchiveInput",
    "ArchiveListing",
    "ArchiveOutcome",
    "IngestContext",
    "IngestLedger",
    "InvalidArchive",
    "InvalidSink",
    "SafeArchive",
    "StorageInvalidSink",
    "TaskResult",
    "ValidationResult",
    "accepted_messages",
    "default_prefetch",
    "export_dataset_id",
    "finish_run",
    "forget_ingested",
    "ingest_archive",
    "load_ledger",
    "new_run_id",
    "open_archive",
    "parse_uploaded_on",
    "prefetched",
    "process_batch",
    "read_run_records",
    "run_ingest",
    "without_repeated_archives",
]
