"""The real recover export, two of its sleep logs seeded out of recover's
range: recover's expectation flags exactly those two, by key, and the
version's report names them."""

from __future__ import annotations

import json
import zipfile

import pytest

from bridge_downstream.common import layout
from bridge_downstream.common.storage import LocalStorage
from bridge_downstream.config.profiles import load_profile
from bridge_downstream.publish.arrow_engine import publish_dataset_arrow
from bridge_downstream.publish.engine_steps import publishing_with_quality_check
from bridge_downstream.quality import REPORT_NAME, publish_quality_check
from project_paths import shared_path
from support import ingest_folder

pytestmark = pytest.mark.shared_data

EXPORT = "recover-2023-01-13T21--08--51Z_TESTDATA.zip"
SLEEP_LOGS = "FitbitSleepLogs_20230112-20230114.json"
SEEDED = {0: "2000", 5: "-5"}  # line -> MinutesAsleep out of 0..1440


def test_a_recover_expectation_flags_exactly_the_rows_seeded_in_the_real_export(tmp_path, registry):
    source = shared_path("bridge-archives", EXPORT)
    folder = tmp_path / "in"
    folder.mkdir()
    seeded_keys = set()
    with zipfile.ZipFile(source) as original, zipfile.ZipFile(folder / EXPORT, "w") as seeded:
        for member in original.namelist():
            data = original.read(member)
            if member == SLEEP_LOGS:
                lines = data.decode().splitlines()
                for number, minutes in SEEDED.items():
                    row = json.loads(lines[number])
                    row["MinutesAsleep"] = minutes
                    lines[number] = json.dumps(row)
                    seeded_keys.add((row["ParticipantIdentifier"], row["LogId"]))
                data = ("\n".join(lines) + "\n").encode()
            seeded.writestr(member, data)
    (folder / f"{EXPORT}.metadata.json").write_text(json.dumps({"cohort": "adults_v1"}))
    ingest_folder(folder, tmp_path / "out", registry, profile="recover")
    storage = LocalStorage(tmp_path / "out")
    profile = load_profile("recover")

    with publishing_with_quality_check(publish_quality_check(profile)):
        manifest = publish_dataset_arrow(
            dataset_id="FitbitSleepLogs",
            registry=registry,
            profile=profile,
            work=storage,
            published=storage,
            run_id="q",
        ).manifest

    failed = [r for r in manifest.quality["results"] if not r["passed"]]
    assert [r["expectation"] for r in failed] == ["MinutesAsleep between 0 and 1440"]
    assert failed[0]["unexpected_count"] == len(SEEDED)
    assert {(s["key"]["ParticipantIdentifier"], s["key"]["LogId"]) for s in failed[0]["samples"]} == seeded_keys
    html = storage.read_bytes(f"{layout.version_prefix('FitbitSleepLogs', manifest.version)}/{REPORT_NAME}").decode()
    assert all(log_id in html for _, log_id in seeded_keys)
