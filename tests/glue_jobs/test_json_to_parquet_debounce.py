"""The debounced JSON->Parquet job publishes a dataset only when committed
NDJSON (its own or its ``_Deleted`` companion's) changed since the digest
its last publish recorded."""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path

from bridge_downstream.common import layout
from bridge_downstream.common.storage import LocalStorage
from support import ingest_folder, load_job


def _export(folder: Path, name: str, files: dict[str, list[str]]) -> None:
    path = folder / "recover" / "pilot" / "adults_v1" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for file_name, logs in files.items():
            rows = [{"ParticipantIdentifier": "RX-1", "LogId": log} for log in logs]
            archive.writestr(file_name, "".join(json.dumps(r) + "\n" for r in rows))
    path.write_bytes(buffer.getvalue())


def test_only_datasets_with_new_ndjson_are_published_again(registry, tmp_path):
    job = load_job("json_to_parquet")
    out = tmp_path / "out"
    storage = LocalStorage(out)
    _export(tmp_path / "in1", "a.zip", {"FitbitSleepLogs_20230112-20230114.json": ["l1"]})
    ingest_folder(tmp_path / "in1", out, registry, profile="recover")

    digest = job.inputs_digest(storage, "FitbitSleepLogs", "_Deleted")
    assert job.has_new_data(storage, "FitbitSleepLogs", digest)  # never published
    storage.write_bytes(layout.published_inputs_key("FitbitSleepLogs"), digest.encode())
    assert not job.has_new_data(storage, "FitbitSleepLogs", job.inputs_digest(storage, "FitbitSleepLogs", "_Deleted"))

    _export(tmp_path / "in2", "b.zip", {"FitbitSleepLogs_Deleted_20230115-20230117.json": ["l1"]})
    ingest_folder(tmp_path / "in2", out, registry, profile="recover")
    later = job.inputs_digest(storage, "FitbitSleepLogs", "_Deleted")
    assert later != digest  # a deletion is new data for the dataset it deletes from
    assert job.has_new_data(storage, "FitbitSleepLogs", later)
    assert job.inputs_digest(storage, "FitbitSleepLogs", None) == digest  # without the companion: unchanged
