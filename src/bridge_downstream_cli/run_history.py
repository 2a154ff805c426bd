"""What an output folder knows of its past runs: the committed runs (their
summaries under ``commits/``), where each archive of a run ended
(``reports/<run>.records.jsonl``) and the ledger's lines. Read by
``status``, ``locate`` and ``backfill``; a run that never committed counts
for nothing, as for the pipeline itself."""

from __future__ import annotations

import json
from collections.abc import Iterator

from bridge_downstream.common import layout
from bridge_downstream.common.run_commits import COMMITS_PREFIX
from bridge_downstream.common.storage import Storage
from bridge_downstream.ingest import read_run_records


def committed_runs(storage: Storage) -> list[dict]:
    """The committed runs' summaries, oldest first (run ids sort by time)."""
    runs = []
    for info in storage.list(COMMITS_PREFIX + "/"):
        if info.key.endswith(".json"):
            summary = json.loads(storage.read_bytes(info.key))
            if "run_id" in summary:
                runs.append(summary)
    return sorted(runs, key=lambda run: run["run_id"])


def run_records(storage: Storage) -> Iterator[tuple[str, dict]]:
    """Every archive outcome of every committed run: (run id, record line)."""
    for run in committed_runs(storage):
        for record in read_run_records(storage, run["run_id"]):
            yield run["run_id"], record


def ledger_lines(storage: Storage) -> Iterator[dict]:
    """The ledger's lines (archives ingested), whatever run wrote them."""
    for info in storage.list(layout.LEDGER_PREFIX + "/"):
        if info.key.endswith(".jsonl"):
            for line in storage.read_bytes(info.key).splitlines():
                if line.strip():
                    yield json.loads(line)
