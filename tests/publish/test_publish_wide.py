"""A document of thousands of keys publishes in a time that grows with its keys,
not their square, on Spark as on Arrow (the Arrow side, and Spark's planning of
the frames, are timed in tests/relationalize/test_hostile_values.py)."""

from __future__ import annotations

import time

import pyarrow.parquet as pq
import pytest

from bridge_downstream.common.storage import LocalStorage
from bridge_downstream.config.profiles import load_profile
from bridge_downstream.publish.spark_engine import PUBLISH_SETTINGS, publish_dataset
from support import ingest_folder, mtb_metadata, write_archive

DATASET = "SurveyAnswers_v1"  # answers.json: no schema, its columns come from the data


def _ingest_wide(registry, root, keys: int) -> LocalStorage:
    document = {f"key{i:05d}": i for i in range(keys)}
    write_archive(root / "in" / "a.zip", {"answers.json": [document]}, mtb_metadata("r", "legacy-survey"))
    report = ingest_folder(root / "in", root / "out", registry)
    assert report["archives"]["processed"] == 1
    return LocalStorage(root / "out")


@pytest.mark.spark
@pytest.mark.slow
def test_a_wide_document_publishes_in_linear_time_on_spark(spark, registry, tmp_path):
    def seconds(keys: int) -> float:
        work = _ingest_wide(registry, tmp_path / str(keys), keys)
        started = time.perf_counter()
        result = publish_dataset(
            spark,
            dataset_id=DATASET,
            registry=registry,
            profile=load_profile("mtb"),
            work=work,
            published=work,
            run_id=f"wide-{keys}",
        )
        elapsed = time.perf_counter() - started
        (table,) = result.manifest.tables.values()
        (file,) = table.files_of("parquet")
        row = pq.read_table(work.root / file.key).to_pylist()[0]
        assert (row["key00000"], row[f"key{keys - 1:05d}"], row["recordid"]) == (0, keys - 1, "r")
        return elapsed

    seconds(250)  # warm up: the first publish loads and compiles Spark's classes
    small = seconds(1_000)
    large = seconds(6_000)
    # Six times the keys: linear took 4.7 times as long (a fixed cost is
    # shared); quadratic, with the writer's projection planned above the
    # table's, 8.6 times, and more with more keys (10,000 keys: 60 s, now 16 s).
    assert large < 6.5 * small, (small, large)


@pytest.mark.spark
def test_a_publish_leaves_the_sessions_settings_as_it_found_them(spark, registry, tmp_path):
    (name, value), *_ = PUBLISH_SETTINGS.items()
    spark.conf.set(name, "true")
    work = _ingest_wide(registry, tmp_path, 3)
    publish_dataset(
        spark, dataset_id=DATASET, registry=registry, profile=load_profile("mtb"), work=work, published=work, run_id="r"
    )
    assert value != "true" and spark.conf.get(name) == "true"
    spark.conf.unset(name)
