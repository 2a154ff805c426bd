"""The Synapse export shows partition values as they were published: a File's
partition annotation holds the value (``a/b=c%``, not its folder's escapes),
and its name shows the value as far as Synapse names allow."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

from bridge_downstream.common.storage import LocalStorage
from bridge_downstream.config.profiles import load_profile
from bridge_downstream.exports import synapse_plan as sp
from bridge_downstream.publish.arrow_engine import publish_dataset_arrow
from support import ingest_folder

COHORTS = {"a/b=c%": "cohort-a_b_c_", "../up": "cohort-.._up", "adults_v1": "cohort-adults_v1"}


def test_names_and_annotations_show_the_published_values(registry, tmp_path):
    uploads = tmp_path / "in"
    uploads.mkdir()
    for number, cohort in enumerate(COHORTS):
        with zipfile.ZipFile(uploads / f"export-{number}.zip", "w") as archive:
            archive.writestr("Custom_20240101.json", json.dumps({"ParticipantIdentifier": "p", "n": number}) + "\n")
        Path(f"{uploads}/export-{number}.zip.metadata.json").write_text(json.dumps({"cohort": cohort}))
    report = ingest_folder(uploads, tmp_path / "work", registry, profile="recover")
    assert report["archives"]["processed"] == len(COHORTS)
    manifest = publish_dataset_arrow(
        dataset_id="Custom",
        registry=registry,
        profile=load_profile("recover"),
        work=LocalStorage(tmp_path / "work"),
        published=LocalStorage(tmp_path / "published"),
        run_id="run",
    ).manifest

    desired = sp.desired_tree([manifest], lambda key: sp.ObjectLocation("bucket", key))
    files = desired.folders["dataset_custom"].files
    assert len(files) == 2 * len(COHORTS)  # a Parquet and a CSV file per cohort
    published = {f.key: f for f in manifest.tables["dataset_custom"].files}
    for name, file in files.items():
        cohort = published[file.key].partition["cohort"]
        assert file.annotations["cohort"] == [cohort]
        assert name.startswith(COHORTS[cohort] + "__part-") and name.endswith((".parquet", ".csv"))
        assert file.location == sp.ObjectLocation("bucket", file.key)
    assert {f.annotations["cohort"][0] for f in files.values()} == set(COHORTS)


def test_a_file_name_shows_the_value_not_its_escapes():
    assert sp.file_entity_name("cohort=a%2Fb%3Dc/year=2024/part-0.parquet") == "cohort-a_b_c__year-2024__part-0.parquet"
    assert sp.file_entity_name("cohort=%2E.%25/part-0.csv") == "cohort-..___part-0.csv"  # "..%"
    assert sp.file_entity_name("part-0.parquet") == "part-0.parquet"
