"""An incremental version carries unchanged partitions by reference
(docs/publish.md, "Incremental versions"): the Glue table's partitions point
at the folders their files lie in -- an older version's for a carried
partition -- and a delivery or Synapse path keeps each file's partition
folders, whichever version wrote it."""

from __future__ import annotations

import boto3
from moto import mock_aws

from bridge_downstream.common.storage import LocalStorage
from bridge_downstream.exports.delivery import _path_in_delivery
from bridge_downstream_adapters.glue_catalog import GlueCatalog
from increment_fixtures import RECORD_DATASET, day_partition, publish, record, write_part

TABLE = "dataset_incrementprobe_v1"


def test_a_carried_partition_is_registered_where_its_files_lie(request, registry, tmp_path):
    work, out = tmp_path / "work", tmp_path / "out"
    write_part(work, RECORD_DATASET, day_partition(1), "a", record("r1", 1, "2024-01-01T10:00:00Z", "one"))
    first = publish("arrow", request, registry, work, out, "mtb", RECORD_DATASET)
    write_part(work, RECORD_DATASET, day_partition(2), "b", record("r2", 2, "2024-01-02T10:00:00Z", "two"))
    second = publish("arrow", request, registry, work, out, "mtb", RECORD_DATASET)
    assert second.version != first.version and second.increment["mode"] == "incremental"

    table = second.tables[TABLE]
    folders = table.partition_folders("parquet")
    day_one = next(folder for values, folder in folders.items() if values[-1] == "01")
    day_two = next(folder for values, folder in folders.items() if values[-1] == "02")
    assert f"/versions/{first.version}/" in day_one and f"/versions/{second.version}/" in day_two

    storage = LocalStorage(out)
    with mock_aws():
        glue = boto3.client("glue", region_name="us-east-1")
        glue.create_database(DatabaseInput={"Name": "db"})
        GlueCatalog("db", storage, glue).register(second)
        partitions = glue.get_partitions(DatabaseName="db", TableName=TABLE)["Partitions"]
    locations = {p["Values"][-1]: p["StorageDescriptor"]["Location"] for p in partitions}
    assert locations == {"1": storage.uri(day_one) + "/", "2": storage.uri(day_two) + "/"}

    paths = sorted(_path_in_delivery(table, file) for file in table.files_of("parquet"))
    assert [path.split("/")[:2] for path in paths] == [["parquet", TABLE]] * 2
    assert ["day=01" in paths[0], "day=02" in paths[1]] == [True, True]  # partition folders kept
