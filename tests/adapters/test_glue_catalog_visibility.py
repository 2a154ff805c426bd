"""Athena never sees a publish's catalog update half-done: after every single
Glue call of a re-publish, each partition the table shows is whole (its old
location or its new one), none of the partitions both versions hold is
missing, and the table's columns only grow."""

from __future__ import annotations

import boto3
import pytest
from moto import mock_aws

from bridge_downstream.common.storage import LocalStorage
from bridge_downstream.publish.manifest import PublishedFile, PublishedFiles, PublishedTable, PublishManifest
from bridge_downstream_adapters.glue_catalog import GlueCatalog

DATABASE = "db"
TABLE = "dataset_fitbitdailydata"


def _manifest(version: str, partitions: list[str], columns: list[str]) -> PublishManifest:
    files = PublishedFiles()
    for month in partitions:
        key = f"published/FitbitDailyData/versions/{version}/parquet/{TABLE}/cohort=adults_v1/month={month}/part-0.parquet"
        files.append(
            PublishedFile(
                key=key,
                format="parquet",
                size=1,
                md5="",
                sha256="",
                rows=1,
                partition={"cohort": "adults_v1", "month": month},
            )
        )
    table = PublishedTable(
        name=TABLE,
        dataset_id="FitbitDailyData",
        parent=None,
        columns=[{"name": name, "type": "string"} for name in columns],
        partition_keys=["cohort", "month"],
        rows=len(partitions),
        files=files,
    )
    return PublishManifest(
        dataset_id="FitbitDailyData",
        version=version,
        run_id=version,
        created_at="2026-01-01T00:00:00+00:00",
        registry_version="r",
        tables={TABLE: table},
    )


class RecordingGlue:
    """A boto3 Glue client that, after every call that changes the catalog,
    records the partitions (values -> location) and columns visible."""

    def __init__(self, client):
        self._client = client
        self.seen: list[tuple[str, dict, list[str]]] = []

    def __getattr__(self, name):
        attribute = getattr(self._client, name)
        if not callable(attribute) or name.startswith(("get_", "can_")):
            return attribute

        def call(*args, **kwargs):
            result = attribute(*args, **kwargs)
            self.seen.append((name, *self.visible()))
            return result

        return call

    def visible(self) -> tuple[dict, list[str]]:
        try:
            table = self._client.get_table(DatabaseName=DATABASE, Name=TABLE)["Table"]
        except self._client.exceptions.EntityNotFoundException:
            return {}, []
        partitions = self._client.get_partitions(DatabaseName=DATABASE, TableName=TABLE)["Partitions"]
        located = {tuple(p["Values"]): p["StorageDescriptor"]["Location"] for p in partitions}
        return located, [c["Name"] for c in table["StorageDescriptor"]["Columns"]]


@pytest.fixture
def glue():
    with mock_aws():
        client = boto3.client("glue", region_name="us-east-1")
        client.create_database(DatabaseInput={"Name": DATABASE})
        yield client


def test_every_glue_call_of_a_republish_leaves_whole_partitions(glue, tmp_path):
    storage = LocalStorage(tmp_path)
    old_months = [f"{m:02d}" for m in range(1, 121)]  # more than one batch of 100
    new_months = [f"{m:02d}" for m in range(3, 131)]  # two months stale, ten new, the rest moved
    old = _manifest("v1", old_months, ["ParticipantIdentifier", "Steps"])
    new = _manifest("v2", new_months, ["ParticipantIdentifier", "Steps", "Floors"])
    GlueCatalog(DATABASE, storage, glue).register(old)
    recording = RecordingGlue(glue)
    before, _ = recording.visible()
    assert len(before) == 120

    GlueCatalog(DATABASE, storage, recording).register(new)

    after, columns = recording.visible()
    assert columns == ["participantidentifier", "steps", "floors"]
    assert sorted(after) == sorted(("adults_v1", str(int(m))) for m in new_months)
    assert all("/versions/v2/" in location for location in after.values())
    assert [name for name, _, _ in recording.seen] == [
        "batch_create_partition",
        "batch_update_partition",
        "batch_update_partition",
        "update_table",
        "batch_delete_partition",
    ]
    kept = set(before) & set(after)
    for call, partitions, visible_columns in recording.seen:
        assert kept <= set(partitions), (call, "a partition both versions hold is missing")
        for values, location in partitions.items():
            assert location in (before.get(values), after.get(values)), (call, values, location)
        assert visible_columns[:2] == ["participantidentifier", "steps"], call


def test_columns_a_new_version_lacks_stay_in_the_table(glue, tmp_path):
    storage = LocalStorage(tmp_path)
    catalog = GlueCatalog(DATABASE, storage, glue)
    catalog.register(_manifest("v1", ["01"], ["ParticipantIdentifier", "Steps"]))
    catalog.register(_manifest("v2", ["01", "02"], ["ParticipantIdentifier", "Floors"]))
    table = glue.get_table(DatabaseName=DATABASE, Name=TABLE)["Table"]
    assert [c["Name"] for c in table["StorageDescriptor"]["Columns"]] == ["participantidentifier", "steps", "floors"]
    partitions = glue.get_partitions(DatabaseName=DATABASE, TableName=TABLE)["Partitions"]
    assert sorted(tuple(p["Values"]) for p in partitions) == [("adults_v1", "1"), ("adults_v1", "2")]
