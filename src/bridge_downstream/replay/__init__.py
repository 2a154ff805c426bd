"""The replay stage: list invalid records, and re-submit chosen ones to ingest.

* :mod:`.invalid_store` -- where the entries are, behind one interface;
* :mod:`.selection` -- choosing and listing entries;
* :mod:`.replayer` -- the replay itself, and its report.
"""

from bridge_downstream.replay.invalid_store import (
    CollectingSink,
    InvalidStore,
    StorageInvalidStore,
    StoredEntry,
    entry_assessment,
    entry_datasets,
    entry_messages,
    entry_record_id,
)
from bridge_downstream.replay.replayer import (
    NOT_REPLAYED,
    SourceUnavailable,
    archive_metadata,
    choose_metadata,
    format_replay_summary,
    local_archive_input,
    replay,
    replay_report_key,
)
from bridge_downstream.replay.selection import (
    Selection,
    format_table,
    record_matches,
    select,
    summary_row,
)

__all__ = [
    "NOT_REPLAYED",
    "CollectingSink",
    "InvalidStore",
    "Selection",
    "SourceUnavailable",
    "StorageInvalidStore",
    "StoredEntry",
    "archive_metadata",
    "choose_metadata",
    "entry_assessment",
    "entry_datasets",
    "entry_messages",
    "entry_record_id",
    "format_replay_summary",
    "format_table",
    "local_archive_input",
    "record_matches",
    "replay",
    "replay_report_key",
    "select",
    "summary_row",
]
