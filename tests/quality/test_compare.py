"""``compare`` on small fabricated versions: keys from the version's plan,
tolerances, columns and types, child tables, narrowing, reports, the command."""

from __future__ import annotations

import pytest

from bridge_downstream.common import layout
from bridge_downstream.common.storage import LocalStorage
from bridge_downstream.publish import read_current_manifests, read_manifest
from bridge_downstream.quality.compare import CompareError, CompareOptions, compare_storages, join_columns
from bridge_downstream_cli.main import main
from published_fixtures import publish

ROOT = "dataset_survey_v1"
STEPS = "dataset_survey_v1_steps"


def _plan(key: list[str]) -> dict:
    """The parts of a relationalize plan compare reads: the identity columns and the column roles."""
    return {
        "identity_columns": key,
        "tables": [
            {"name": ROOT, "kind": "root", "columns": [{"name": k, "role": "value", "path": [k]} for k in key]},
            {
                "name": STEPS,
                "kind": "array",
                "columns": [{"name": "id", "role": "id", "path": []}, {"name": "index", "role": "index", "path": []}],
            },
        ],
    }


def _publish(root, tables: dict, *, types: dict | None = None, key=("recordid",), plan=True, dataset="Survey_v1"):
    storage = LocalStorage(root)
    manifest = publish(storage, dataset, "v1", {name: {(("year", "2024"),): rows} for name, rows in tables.items()})
    if plan:
        manifest.plan = _plan(list(key))
    for name, column_types in (types or {}).items():
        manifest.tables[name].columns = [{"name": c, "type": t} for c, t in column_types.items()]
    storage.write_bytes(layout.manifest_key(dataset, "v1"), manifest.to_json().encode())
    return storage


def _root_rows(values=(1.0, 2.0, 3.0)) -> list[dict]:
    return [{"recordid": f"r{i}", "score": v, "name": f"n{i}"} for i, v in enumerate(values)]


def _steps(values=("a", "b")) -> list[dict]:
    return [{"id": "r0/steps", "index": i, "answer": v, "recordid": "r0"} for i, v in enumerate(values)]


def _only(report):
    (table,) = [t for t in report.tables if t.differs]
    return table


def test_same_data_does_not_differ(tmp_path):
    a = _publish(tmp_path / "a", {ROOT: _root_rows(), STEPS: _steps()})
    b = _publish(tmp_path / "b", {ROOT: _root_rows(), STEPS: _steps()})
    report = compare_storages(a, b)
    assert not report.differs
    assert [(t.table, t.rows_a, t.rows_b) for t in report.tables] == [(ROOT, 3, 3), (STEPS, 2, 2)]


def test_the_key_comes_from_the_versions_plan(tmp_path):
    a = _publish(tmp_path / "a", {ROOT: _root_rows(), STEPS: _steps()}, key=("recordid", "name"))
    (manifest,) = read_current_manifests(a)
    assert join_columns(manifest, ROOT) == ["recordid", "name"]
    assert join_columns(manifest, STEPS) == ["id", "index"]
    assert join_columns(manifest, "no_such_table") is None


@pytest.mark.parametrize(
    ("options", "changed"),
    [
        (CompareOptions(), 1),
        (CompareOptions(abs_tol=0.01), 1),
        (CompareOptions(abs_tol=0.1), 0),
        (CompareOptions(rel_tol=0.02), 0),  # 0.05 is 1.6 % of 3.05
        (CompareOptions(rel_tol=0.01), 1),
    ],
)
def test_numbers_differ_beyond_the_tolerances_only(tmp_path, options, changed):
    a = _publish(tmp_path / "a", {ROOT: _root_rows((1.0, 2.0, 3.0))})
    b = _publish(tmp_path / "b", {ROOT: _root_rows((1.0, 2.0, 3.05))})
    report = compare_storages(a, b, options)
    assert report.differs == bool(changed)
    if changed:
        table = _only(report)
        values = table.changed_values()
        assert values[["recordid", "column", "a", "b"]].values.tolist() == [["r2", "score", 3.0, 3.05]]
        assert table.changed[0].max_diff == pytest.approx(0.05)


def test_columns_and_types_that_differ(tmp_path):
    rows_a = [{"recordid": "r0", "score": 1, "gone": "x"}]
    rows_b = [{"recordid": "r0", "score": 1, "extra": "y"}]
    a = _publish(
        tmp_path / "a", {ROOT: rows_a}, types={ROOT: {"recordid": "string", "score": "bigint", "gone": "string"}}
    )
    b = _publish(
        tmp_path / "b", {ROOT: rows_b}, types={ROOT: {"recordid": "string", "score": "double", "extra": "string"}}
    )
    table = _only(compare_storages(a, b))
    assert table.columns_only_in_a == ["gone"]
    assert table.columns_only_in_b == ["extra"]
    assert table.type_changes == {"score": ("bigint", "double")}
    assert table.changed == []  # the shared columns hold the same values

    ignoring = compare_storages(a, b, CompareOptions(ignore_columns=("gone", "extra", "score")))
    assert not ignoring.differs


def test_child_rows_join_on_id_and_index(tmp_path):
    a = _publish(tmp_path / "a", {ROOT: _root_rows(), STEPS: _steps(("a", "b"))})
    b = _publish(tmp_path / "b", {ROOT: _root_rows(), STEPS: _steps(("a", "B", "c"))})
    table = _only(compare_storages(a, b))
    assert table.table == STEPS and table.join_columns == ["id", "index"]
    assert table.only_in_a_count == 0
    assert table.only_in_b[["id", "index"]].values.tolist() == [["r0/steps", 2]]
    values = table.changed_values()
    assert values[["id", "index", "column", "a", "b"]].values.tolist() == [["r0/steps", 1, "answer", "b", "B"]]


def test_rows_only_on_one_side_and_partition_columns(tmp_path):
    a = _publish(tmp_path / "a", {ROOT: _root_rows((1.0, 2.0, 3.0))})
    b = _publish(tmp_path / "b", {ROOT: _root_rows((1.0, 2.0))})
    table = _only(compare_storages(a, b))
    assert (table.only_in_a_count, table.only_in_b_count) == (1, 0)
    assert table.only_in_a.to_dict("records") == [{"recordid": "r2", "score": 3.0, "name": "n2", "year": 2024}]


def test_datasets_and_tables_only_on_one_side(tmp_path):
    a = _publish(tmp_path / "a", {ROOT: _root_rows(), STEPS: _steps()})
    _publish(tmp_path / "a", {"dataset_other_v1": [{"recordid": "x"}]}, dataset="Other_v1")
    b = _publish(tmp_path / "b", {ROOT: _root_rows()})
    report = compare_storages(a, b)
    assert report.datasets_only_in_a == ["Other_v1"] and report.datasets_only_in_b == []
    assert report.tables_only_in_a == [("Survey_v1", STEPS)]
    assert report.differs

    narrowed = compare_storages(a, b, CompareOptions(tables=(ROOT,)))
    assert (narrowed.datasets_only_in_a, narrowed.tables_only_in_a) == ([], [])
    assert [t.table for t in narrowed.tables] == [ROOT] and not narrowed.differs


def test_where_filters_both_sides_and_a_table_without_its_column_is_not_compared(tmp_path):
    a = _publish(tmp_path / "a", {ROOT: _root_rows((1.0, 2.0, 3.0)), STEPS: _steps()})
    b = _publish(tmp_path / "b", {ROOT: _root_rows((1.0, 2.0, 9.0)), STEPS: _steps()})
    report = compare_storages(a, b, CompareOptions(where="score < 2.5"))
    root, steps = report.tables
    assert (root.rows_a, root.rows_b, root.differs) == (2, 2, False)
    assert steps.not_compared is not None and "where" in steps.not_compared
    assert report.differs  # a table that could not be compared is not called the same


def test_a_version_without_a_plan_is_not_compared(tmp_path):
    a = _publish(tmp_path / "a", {ROOT: _root_rows()}, plan=False)
    b = _publish(tmp_path / "b", {ROOT: _root_rows()}, plan=False)
    table = _only(compare_storages(a, b))
    assert "no plan" in table.not_compared


def test_duplicate_keys_are_flagged(tmp_path):
    rows = [{"recordid": "r0", "score": 1.0}, {"recordid": "r0", "score": 2.0}]
    a = _publish(tmp_path / "a", {ROOT: rows})
    b = _publish(tmp_path / "b", {ROOT: rows})
    (table,) = compare_storages(a, b).tables
    assert table.duplicate_keys and not table.differs


def test_unknown_engine_is_refused(tmp_path):
    a = _publish(tmp_path / "a", {ROOT: _root_rows()})
    with pytest.raises(CompareError, match="engine"):
        compare_storages(a, a, engine="polars")
    with pytest.raises(CompareError, match="Spark session"):
        compare_storages(a, a, engine="spark")


def test_reports_written_through_a_storage(tmp_path):
    a = _publish(tmp_path / "a", {ROOT: _root_rows((1.0, 2.0, 3.0)), STEPS: _steps()})
    b = _publish(tmp_path / "b", {ROOT: _root_rows((1.0, 5.0)), STEPS: _steps()})
    written = compare_storages(a, b).write(LocalStorage(tmp_path / "report"), "run-1")
    assert sorted(written) == [
        "run-1/Survey_v1/dataset_survey_v1.changed.csv",
        "run-1/Survey_v1/dataset_survey_v1.only_in_a.csv",
        "run-1/compare.json",
        "run-1/report.html",
        "run-1/summary.txt",
    ]
    csv_text = (tmp_path / "report" / "run-1" / "Survey_v1" / "dataset_survey_v1.changed.csv").read_text()
    assert csv_text.splitlines() == ["recordid,column,a,b", "r1,score,2.0,5.0"]


def test_the_command_takes_published_prefixes_and_refuses_a_folder_without(tmp_path, capsys):
    _publish(tmp_path / "a", {ROOT: _root_rows()})
    _publish(tmp_path / "b", {ROOT: _root_rows((1.0, 2.0, 4.0))})
    args = [str(tmp_path / "a" / "published"), str(tmp_path / "b" / "published")]
    assert main(["compare", *args]) == 0  # differences are reported, not failed, without --fail-on-diff
    assert main(["compare", *args, "--fail-on-diff"]) == 1
    assert main(["compare", *args, "--fail-on-diff", "--abs-tol", "1"]) == 0
    assert "r2" in capsys.readouterr().out
    (tmp_path / "empty").mkdir()
    assert main(["compare", str(tmp_path / "empty"), str(tmp_path / "a"), "--fail-on-diff"]) == 2


@pytest.mark.spark
def test_the_spark_engine_finds_what_pandas_finds(tmp_path, spark):
    a = _publish(tmp_path / "a", {ROOT: _root_rows((1.0, 2.0, 3.0)), STEPS: _steps(("a", "b"))})
    b = _publish(tmp_path / "b", {ROOT: _root_rows((1.0, 2.5)), STEPS: _steps(("a", "B", "c"))})
    found = {}
    for engine in ("pandas", "spark"):
        report = compare_storages(a, b, CompareOptions(abs_tol=0.1), engine=engine, spark=spark)
        found[engine] = [
            (
                t.table,
                t.rows_a,
                t.rows_b,
                t.only_in_a[t.join_columns].values.tolist(),
                t.only_in_b[t.join_columns].values.tolist(),
                t.changed_values()[[*t.join_columns, "column", "a", "b"]].values.tolist(),
            )
            for t in report.tables
        ]
    assert found["spark"] == found["pandas"]
    assert found["pandas"] == [
        (ROOT, 3, 2, [["r2"]], [], [["r1", "score", 2.0, 2.5]]),
        (STEPS, 2, 3, [], [["r0/steps", 2]], [["r0/steps", 1, "answer", "b", "B"]]),
    ]


@pytest.mark.spark
def test_the_spark_engine_reads_partitions_an_incremental_version_carries(tmp_path, spark):
    """A's current version writes 2024 anew and lists 2023's files where v1 wrote
    them (as an incremental publish does); B holds the same rows in one version."""
    earlier, later = (("year", "2023"),), (("year", "2024"),)
    first, second = _root_rows((1.0, 2.0)), [{"recordid": "r9", "score": 9.0, "name": "n9"}]
    a = LocalStorage(tmp_path / "a")
    publish(a, "Survey_v1", "v1", {ROOT: {earlier: first}})
    manifest = publish(a, "Survey_v1", "v2", {ROOT: {later: second}})
    manifest.tables[ROOT].files = [
        *read_manifest(a, "Survey_v1", "v1").tables[ROOT].files,
        *manifest.tables[ROOT].files,
    ]
    manifest.tables[ROOT].rows = 3
    manifest.plan = _plan(["recordid"])
    a.write_bytes(layout.manifest_key("Survey_v1", "v2"), manifest.to_json().encode())
    b = LocalStorage(tmp_path / "b")
    both = publish(b, "Survey_v1", "v1", {ROOT: {earlier: first, later: second}})
    both.plan = _plan(["recordid"])
    b.write_bytes(layout.manifest_key("Survey_v1", "v1"), both.to_json().encode())
    for engine in ("pandas", "spark"):
        (table,) = compare_storages(a, b, engine=engine, spark=spark).tables
        assert (table.rows_a, table.rows_b, table.differs) == (3, 3, False), engine
