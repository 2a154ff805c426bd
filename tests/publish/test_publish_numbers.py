"""An integer that does not fit 64 bits is published, not nulled: its column
becomes decimal(38,0) in Parquet, the manifest and the catalog, on both
engines, and the CSV holds its digits."""

from __future__ import annotations

import csv
import io
import json
from decimal import Decimal

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from bridge_downstream.common.storage import LocalStorage
from bridge_downstream.config.profiles import load_profile
from bridge_downstream.publish.engines import publish_dataset_with

ENGINES = ["arrow", pytest.param("spark", marks=pytest.mark.spark)]
VALUES = {"r0": 7, "r1": 2**63, "r2": 2**64 - 1, "r3": -(2**63) - 1}


@pytest.mark.parametrize("engine", ENGINES)
def test_integers_beyond_64_bits_are_published_as_decimal(request, registry, tmp_path, engine):
    folder = tmp_path / "json" / "dataset=SurveyAnswers_v1" / "assessmentid=legacy-survey/year=2024/month=03/day=03"
    folder.mkdir(parents=True)
    rows = [
        {
            "score": value,
            "recordid": record,
            "assessmentid": "legacy-survey",
            "year": 2024,
            "month": 3,
            "day": 3,
            "uploadedon": f"2024-03-03T0{i}:00:00Z",
            "sourcefile": "answers.json",
            "sourceindex": 0,
        }
        for i, (record, value) in enumerate(VALUES.items())
    ]
    (folder / "part-0.ndjson").write_text("".join(json.dumps(r) + "\n" for r in rows))
    storage = LocalStorage(tmp_path)
    manifest = publish_dataset_with(
        engine,
        (lambda: request.getfixturevalue("spark")) if engine == "spark" else None,
        dataset_id="SurveyAnswers_v1",
        registry=registry,
        profile=load_profile("mtb"),
        work=storage,
        published=storage,
        run_id="numbers",
    ).manifest
    table = manifest.tables["dataset_surveyanswers_v1"]
    assert {c["name"]: c["type"] for c in table.columns}["score"] == "decimal(38,0)"
    assert table.rows == len(VALUES)
    published, texts = {}, {}
    for file in table.files_of("parquet"):
        data = pq.read_table(io.BytesIO((tmp_path / file.key).read_bytes()))
        assert data.schema.field("score").type == pa.decimal128(38, 0)
        published.update(zip(data.column("recordid").to_pylist(), data.column("score").to_pylist()))
    for file in table.files_of("csv"):
        texts.update(
            (r["recordid"], r["score"]) for r in csv.DictReader(io.StringIO((tmp_path / file.key).read_text()))
        )
    assert published == {record: Decimal(value) for record, value in VALUES.items()}
    assert texts == {record: str(value) for record, value in VALUES.items()}
