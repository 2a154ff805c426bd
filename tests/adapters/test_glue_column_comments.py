"""Glue column comments carry the JSON Schema's descriptions: on the real MTB
Spelling upload, published and registered in Glue (moto), a column reads its
property's description (through ``$ref``s, under an array's ``items``),
cut to Glue's 255 bytes on one line; a column the schema does not describe
has no comment."""

from __future__ import annotations

import dataclasses
import json

import boto3
import pytest
from moto import mock_aws

from bridge_downstream.common.storage import LocalStorage
from bridge_downstream.config.profiles import load_profile
from bridge_downstream.publish.arrow_engine import publish_dataset_arrow
from bridge_downstream_adapters.glue_catalog import MAX_COMMENT_BYTES, GlueCatalog, glue_comment
from project_paths import shared_path
from support import SPELLING_ARCHIVE, SPELLING_METADATA, ingest_folder


def test_a_comment_is_one_line_cut_to_glues_limit():
    assert glue_comment("Time, in\n  milliseconds.\t") == "Time, in milliseconds."
    long = "é" * 200  # 400 bytes
    cut = glue_comment(long)
    assert len(cut.encode("utf-8")) <= MAX_COMMENT_BYTES and cut.endswith("…")
    assert cut[:-1] == "é" * len(cut[:-1])  # cut between characters, never inside one
    exact = "x" * MAX_COMMENT_BYTES
    assert glue_comment(exact) == exact


@pytest.fixture(scope="module")
def glue_columns(real_registry, tmp_path_factory):
    """``{table: [its Glue columns]}`` of the real upload's sharedSchema_v1, and its schema."""
    source = shared_path("bridge-archives", SPELLING_ARCHIVE)
    folder = tmp_path_factory.mktemp("comments")
    (folder / "in").mkdir()
    (folder / "in" / source.name).symlink_to(source)
    (folder / "in" / f"{source.name}.metadata.json").write_text(json.dumps(SPELLING_METADATA))
    assert ingest_folder(folder / "in", folder / "out", real_registry)["archives"]["processed"] == 1
    storage = LocalStorage(folder / "out")
    manifest = publish_dataset_arrow(
        dataset_id="sharedSchema_v1",
        registry=real_registry,
        profile=dataclasses.replace(load_profile("mtb"), nested=True),
        work=storage,
        published=storage,
        run_id="comments",
    ).manifest
    with mock_aws():
        glue = boto3.client("glue", region_name="us-east-1")
        glue.create_database(DatabaseInput={"Name": "db"})
        GlueCatalog("db", storage, glue).register(manifest)
        found = {
            name: glue.get_table(DatabaseName="db", Name=name)["Table"]["StorageDescriptor"]["Columns"]
            for name in manifest.tables
        }
    schema = json.loads(shared_path("mtb-taskdata", "archiveSchemas", "taskData_combinedSchema.json").read_text())
    return found, schema


def by_name(columns: list[dict]) -> dict[str, dict]:
    return {column["Name"]: column for column in columns}


@pytest.mark.shared_data
def test_real_descriptions_arrive_as_glue_comments(glue_columns):
    columns, schema = glue_columns
    definitions = schema["definitions"]
    root = by_name(columns["dataset_sharedschema_v1"])
    assert root["startdate"]["Comment"] == definitions["timemarks"]["description"]  # through a $ref
    assert root["taskname"]["Comment"] == schema["properties"]["taskName"]["description"]
    interactions = by_name(columns["dataset_sharedschema_v1_userinteractions"])
    # under "items": a oneOf of objects, the property through a $ref
    assert interactions["responsetime"]["Comment"] == definitions["responseTime"]["description"]
    assert "Comment" not in root["recordid"]  # added by the pipeline: no schema describes it
    nested = by_name(columns["dataset_sharedschema_v1_nested"])
    assert nested["taskname"]["Comment"] == root["taskname"]["Comment"]
    # an array column: its property's description, as the root table's link column has it
    assert nested["userinteractions"]["Comment"] == root["userinteractions"]["Comment"]
    assert nested["userinteractions"]["Type"].startswith("array<struct<")


@pytest.mark.shared_data
def test_a_long_real_description_is_cut_to_glues_limit(glue_columns):
    columns, schema = glue_columns
    written = schema["properties"]["consideredSteps"]["items"][0]["properties"]["exposure"]["description"]
    assert len(written.encode("utf-8")) > MAX_COMMENT_BYTES
    comment = by_name(columns["dataset_sharedschema_v1_consideredsteps"])["exposure"]["Comment"]
    assert len(comment.encode("utf-8")) <= MAX_COMMENT_BYTES
    assert comment.endswith("…") and " ".join(written.split()).startswith(comment[:-1])


@pytest.mark.shared_data
def test_every_glue_column_name_is_lower_case_and_unique(glue_columns):
    columns, _ = glue_columns
    assert len(columns) > 3
    for table, listed in columns.items():
        names = [column["Name"] for column in listed]
        assert names == [name.lower() for name in names], table
        assert len(names) == len(set(names)), table
