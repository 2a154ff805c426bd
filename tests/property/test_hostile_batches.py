"""Property-based: batches of generated upload archives -- names, metadata,
nesting, numbers, encodings, duplicates and ties -- through ingest and the
Arrow publish. Whatever hypothesis generates, the invariants hold:

* every input is accounted for exactly once (processed, invalid or skipped);
* nothing is written outside the output, and a dataset's rows are its own;
* the published table holds exactly one version per record: the processed
  version with the latest upload instant;
* no value of that version is lost.
"""

from __future__ import annotations

import json
import zipfile
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import duckdb
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from bridge_downstream.common.storage import LocalStorage
from bridge_downstream.config.profiles import load_profile
from bridge_downstream.ingest import ArchiveInput, StorageInvalidSink, read_run_records, run_ingest
from bridge_downstream.publish import DuckDBCatalog, publish_dataset_with

DATASET = "SurveyAnswers_v1"  # legacy-survey revision 1's answers.json: not validated, columns inferred
TABLE = "dataset_surveyanswers_v1"
EXAMPLES = 60

# Printable text, the characters keys and ids are built from, and the hostile ones.
HOSTILE = ["/", "=", "%", "..", "|", "\\", "\n", "\x1b[31m", "'", '"', "#", "?", "*", "é", "\u2028", " "]
text = st.text(alphabet=st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=12)
record_ids = st.one_of(
    st.from_regex(r"rec-[a-z0-9]{1,6}", fullmatch=True),
    st.builds(
        lambda a, h, b: f"{a}{h}{b}", st.from_regex(r"[a-z]{1,4}", fullmatch=True), st.sampled_from(HOSTILE), text
    ),
)
BASE = datetime(2024, 3, 1, 10, 0, tzinfo=UTC)
# The same instants written in different ways: offsets, fractions, Z.


def written(seconds: int, offset_hours: int, millis: bool) -> str:
    when = (BASE + timedelta(seconds=seconds)).astimezone(timezone(timedelta(hours=offset_hours)))
    return when.isoformat(timespec="milliseconds" if millis else "seconds").replace("+00:00", "Z")


instants = st.builds(written, st.integers(0, 5), st.sampled_from([0, 0, -2, 5]), st.booleans())
# A key's first letter fixes its type across the batch (mixed types are another rule's business).
VALUES = {
    "b": st.booleans(),
    "i": st.integers(-(2**70), 2**70),  # beyond int64 too
    "f": st.floats(allow_nan=False, allow_infinity=False, width=64),
    "s": text,
}
answers = st.dictionaries(
    st.from_regex(r"[bifs][a-z0-9]{0,5}", fullmatch=True), st.just(None), min_size=1, max_size=6
).flatmap(lambda keys: st.fixed_dictionaries({key: st.one_of(st.none(), VALUES[key[0]]) for key in keys}))


@st.composite
def batches(draw):
    """A list of (archive name, members, metadata) with repeated records, ties and exact duplicates."""
    records = draw(st.lists(record_ids, min_size=1, max_size=4, unique=True))
    archives = []
    for number in range(draw(st.integers(1, 8))):
        record = draw(st.sampled_from(records))
        metadata = {
            "recordid": record,
            "assessmentid": "legacy-survey",
            "assessmentrevision": "1",
            "uploadedon": draw(instants),
            "appid": "sample-app",
        }
        members = {"metadata.json": {"taskIdentifier": "legacy-survey"}, "answers.json": draw(answers)}
        archives.append((f"a{number:03d}.zip", members, metadata))
        if draw(st.booleans()):  # the same bytes and metadata again, under another name
            archives.append((f"a{number:03d}-again.zip", members, metadata))
    return archives


def write_batch(folder: Path, batch) -> list[str]:
    folder.mkdir(parents=True)
    for name, members, metadata in batch:
        with zipfile.ZipFile(folder / name, "w", zipfile.ZIP_DEFLATED) as archive:
            for member, document in members.items():
                info = zipfile.ZipInfo(member, date_time=(2024, 1, 1, 0, 0, 0))  # same bytes for the same content
                archive.writestr(info, json.dumps(document))
        (folder / f"{name}.metadata.json").write_text(json.dumps(metadata))
    return sorted(name for name, _, _ in batch)


def instant(value: str | datetime) -> datetime:
    """An upload's instant: metadata spells it, the table holds it as a timestamp."""
    moment = value if isinstance(value, datetime) else datetime.fromisoformat(value)
    return moment.astimezone(UTC)


def files_under(root: Path) -> set[Path]:
    return {p for p in root.rglob("*") if p.is_file()}


@pytest.mark.slow
@settings(
    max_examples=EXAMPLES,
    deadline=None,
    database=None,  # nothing written into the checkout
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(batch=batches())
def test_a_generated_batch_keeps_every_invariant(batch, registry, tmp_path_factory):
    work = tmp_path_factory.mktemp("batch")
    names = write_batch(work / "in", batch)
    output = work / "out"
    before = files_under(work)
    storage = LocalStorage(output)
    inputs = [ArchiveInput(LocalStorage(work / "in"), name) for name in names]
    report = run_ingest(
        inputs, registry=registry, profile=load_profile("mtb"), output=storage, sink=StorageInvalidSink(storage)
    )

    # Every input accounted for exactly once.
    outcomes = {record["source"]: record for record in read_run_records(storage, report["run_id"])}
    assert sorted(outcomes) == sorted(inputs_source.source for inputs_source in inputs)
    assert report["archives"]["total"] == len(inputs)
    assert sum(report["archives"][s] for s in ("processed", "invalid", "skipped")) == len(inputs)
    by_name = {name: members_metadata for name, *members_metadata in batch}
    processed = [by_name[Path(source).name] for source, o in outcomes.items() if o["status"] == "processed"]
    # An exact duplicate is processed at most once.
    seen = [json.dumps([m, md]) for m, md in processed]  # as written: the same bytes and metadata
    assert len(seen) == len(set(seen))

    # Nothing outside the output; a dataset's rows are its own.
    assert {p for p in files_under(work) - before if output not in p.parents} == set()
    for part in (output / "json").rglob("*.ndjson"):
        dataset = next(s for s in part.relative_to(output / "json").parts if s.startswith("dataset="))
        for line in part.read_bytes().splitlines():  # bytes: str.splitlines also splits at U+2028
            row = json.loads(line)
            if dataset == f"dataset={DATASET}":
                assert row["sourcefile"] == "answers.json"

    event(f"{len(processed)} of {len(inputs)} processed")
    if not processed:
        return
    publish_dataset_with(
        "arrow",
        None,
        dataset_id=DATASET,
        registry=registry,
        profile=load_profile("mtb"),
        work=storage,
        published=storage,
        run_id=report["run_id"],
        catalog=DuckDBCatalog(storage),
    )
    with duckdb.connect(str(output / "catalog.duckdb"), read_only=True) as connection:
        published = connection.sql(f"SELECT * FROM {TABLE}").fetchall()
        columns = [c[0] for c in connection.sql(f"DESCRIBE {TABLE}").fetchall()]
    rows = [dict(zip(columns, values, strict=True)) for values in published]

    # Exactly one version per record: the latest upload instant wins.
    latest: dict[str, datetime] = {}
    for _, metadata in processed:
        record, when = metadata["recordid"], instant(metadata["uploadedon"])
        latest[record] = max(latest.get(record, when), when)
    assert sorted(row["recordid"] for row in rows) == sorted(latest)
    for row in rows:
        assert instant(row["uploadedon"]) == latest[row["recordid"]]

        # No value of the winning version is lost.
        winners = [
            m
            for m, md in processed
            if md["recordid"] == row["recordid"] and instant(md["uploadedon"]) == latest[row["recordid"]]
        ]
        assert any(all(_same(row.get(key), value) for key, value in m["answers.json"].items()) for m in winners)


def _same(published, value) -> bool:
    if value is None or isinstance(value, bool | str):
        return published == value
    if isinstance(value, float):
        return published is not None and float(published) == value
    return published is not None and int(published) == value
