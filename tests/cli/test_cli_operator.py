"""The operator's command line (issue 24, items 1 to 8): outputs that know
their profile, exit codes, only what is needed asked, re-ingest on purpose,
errors instead of tracebacks, the basics, the config file, query formats."""

import json
import shutil

import pytest

from bridge_downstream_cli.cli_context import resolve_dataset_ids, subparsers_of
from bridge_downstream_cli.errors import UsageError
from bridge_downstream_cli.exit_codes import ExitCode, InvalidTolerance, ingest_exit_code
from bridge_downstream_cli.main import build_parser, main
from support import SAMPLES


@pytest.fixture(scope="module")
def registry_dir(registry, tmp_path_factory):
    """The samples' registry folder (the conftest fixture builds it; its folder is what commands take)."""
    from bridge_downstream.config import SchemaRegistry

    assert isinstance(registry, SchemaRegistry)
    out = tmp_path_factory.mktemp("cli-operator") / "registry"
    assert main(["registry", "build", "-q", *_sample_registry_sources(), "--out", str(out)]) == 0
    return out


def _sample_registry_sources() -> list[str]:
    source = SAMPLES / "registry-src"
    return [
        "--archive-map", str(source / "archive-map.json"),
        "--schemas", str(source / "schemas"),
        "--schema-mapping", str(source / "schema-mapping.json"),
        "--dataset-mapping", str(source / "dataset-mapping.json"),
        "--pipeline-rules", str(source / "pipeline-rules.json"),
    ]  # fmt: skip


def _ingest(registry_dir, output, *extra: str, inputs=None) -> int:
    return main(
        ["ingest", str(inputs or SAMPLES / "archives"), "--registry", str(registry_dir), "--output", str(output),
         "--no-progress", *extra]
    )  # fmt: skip


def _one_error_line(capsys) -> str:
    err = capsys.readouterr().err
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    return lines[0]


# ---------------------------------------------------------------- exit codes


@pytest.mark.parametrize(
    ("text", "invalid", "total", "exceeded"),
    [("0", 1, 8, True), ("0", 0, 8, False), ("3", 3, 8, False), ("3", 4, 8, True),
     ("40%", 3, 8, False), ("30%", 3, 8, True), ("100%", 8, 8, False)],
)  # fmt: skip
def test_max_invalid_is_a_count_or_a_percentage(text, invalid, total, exceeded):
    assert InvalidTolerance.parse(text).exceeded_by(invalid, total) is exceeded


@pytest.mark.parametrize("text", ["-1", "1.5", "150%", "many", ""])
def test_a_tolerance_that_is_neither_is_a_usage_error(text):
    with pytest.raises(UsageError, match="--max-invalid"):
        InvalidTolerance.parse(text)


@pytest.mark.parametrize(
    ("archives", "code"),
    [
        ({"total": 0, "processed": 0, "invalid": 0, "skipped": 0}, ExitCode.NOTHING),
        ({"total": 8, "processed": 5, "invalid": 3, "skipped": 0}, ExitCode.INVALID),
        ({"total": 8, "processed": 0, "invalid": 0, "skipped": 8}, ExitCode.OK),  # all ingested before
        ({"total": 8, "processed": 8, "invalid": 0, "skipped": 0}, ExitCode.OK),
    ],
)
def test_the_exit_code_of_an_ingest(archives, code):
    assert ingest_exit_code(archives, InvalidTolerance()) == code


def test_some_invalid_archives_exit_1_unless_tolerated(registry_dir, tmp_path, capsys):
    assert _ingest(registry_dir, tmp_path / "a") == ExitCode.INVALID == 1
    assert "3 of 8 archives invalid, beyond --max-invalid 0" in capsys.readouterr().err
    assert _ingest(registry_dir, tmp_path / "b", "--max-invalid", "3") == ExitCode.OK
    assert _ingest(registry_dir, tmp_path / "c", "--max-invalid", "40%") == ExitCode.OK
    assert _ingest(registry_dir, tmp_path / "d", "--max-invalid", "30%") == ExitCode.INVALID


def test_no_archive_found_exits_3_and_publish_of_nothing_too(registry_dir, tmp_path, capsys):
    empty = tmp_path / "empty"
    empty.mkdir()
    assert _ingest(registry_dir, tmp_path / "out", inputs=empty) == ExitCode.NOTHING == 3
    assert "no archive was found" in capsys.readouterr().err
    assert main(["publish", "--output", str(tmp_path / "out")]) == ExitCode.NOTHING
    captured = capsys.readouterr()
    assert "holds no ingested dataset" in captured.err
    assert "query them" not in captured.out


# --------------------------------------------------- outputs know their profile


def test_the_root_records_its_profile_and_refuses_another(registry_dir, tmp_path, capsys):
    output = tmp_path / "out"
    _ingest(registry_dir, output, "--max-invalid", "3")
    record = json.loads((output / "pipeline.json").read_text())
    assert record["profile_name"] == "mtb"
    assert record["registry"] == str(registry_dir.resolve())
    assert record["registry_version"].startswith("sha256-")
    capsys.readouterr()

    code = main(["publish", "--output", str(output), "--profile", "recover"])

    assert code == ExitCode.USAGE
    assert "holds data of the 'mtb' profile, not 'recover'" in _one_error_line(capsys)


def test_a_recover_root_needs_no_registry_and_later_commands_take_its_profile(tmp_path, capsys):
    output = tmp_path / "out"
    code = main(["ingest", str(SAMPLES / "exports"), "--profile", "recover", "--output", str(output), "--no-progress"])
    assert code == ExitCode.OK
    assert json.loads((output / "pipeline.json").read_text())["profile_name"] == "recover"
    capsys.readouterr()
    # no --profile: the recorded one, never mtb
    assert main(["publish", "--output", str(output), "--profile", "mtb"]) == ExitCode.USAGE
    assert "not 'mtb'" in _one_error_line(capsys)


def test_the_mtb_profile_without_a_registry_is_told_what_to_give(tmp_path, capsys):
    assert main(["ingest", str(SAMPLES / "archives"), "--output", str(tmp_path / "out")]) == ExitCode.USAGE
    assert "needs a schema registry: give --registry" in _one_error_line(capsys)


# ------------------------------------------------------------ re-ingest on purpose


def test_an_already_ingested_archive_says_how_to_force_it_and_reingest_does(registry_dir, tmp_path, capsys):
    output = tmp_path / "out"
    _ingest(registry_dir, output, "--max-invalid", "3")
    capsys.readouterr()

    assert _ingest(registry_dir, output, "--max-invalid", "3") == ExitCode.OK
    again = capsys.readouterr().out
    assert "5 archives were ingested before: add --reingest" in again
    assert "ledger forget" in again

    assert _ingest(registry_dir, output, "--max-invalid", "3", "--reingest") == ExitCode.OK
    report = json.loads((output / "run-report.json").read_text())
    assert report["archives"]["processed"] == 5


def test_ledger_forget_by_record_id_and_file_name(registry_dir, tmp_path, capsys):
    output = tmp_path / "out"
    _ingest(registry_dir, output, "--max-invalid", "3")
    capsys.readouterr()

    assert main(["ledger", "forget", "rec-0003", "rec-0004-legacy-survey.zip", "--output", str(output)]) == 0
    assert "forgot 2 ledger entries" in capsys.readouterr().out
    _ingest(registry_dir, output, "--max-invalid", "3")
    report = json.loads((output / "run-report.json").read_text())
    assert report["archives"] == {"total": 8, "processed": 2, "invalid": 3, "skipped": 3}

    assert main(["ledger", "forget", "rec-9999", "--output", str(output)]) == ExitCode.NOTHING
    assert "no ledger entry for rec-9999" in _one_error_line(capsys)


# ---------------------------------------------------------- errors, not tracebacks


def test_a_registry_that_changed_is_recorded_and_said(registry_dir, tmp_path, capsys):
    output = tmp_path / "out"
    _ingest(registry_dir, output, "--max-invalid", "3")
    other = tmp_path / "registry2"
    shutil.copytree(registry_dir, other)
    index = json.loads((other / "registry.json").read_text())
    index["version"] = "fixed-1"
    (other / "registry.json").write_text(json.dumps(index))
    capsys.readouterr()

    main(["ingest", str(SAMPLES / "archives"), "--registry", str(other), "--output", str(output), "--max-invalid", "3"])

    printed = capsys.readouterr().out
    assert "the registry changed since" in printed
    assert "-> fixed-1" in printed
    assert json.loads((output / "pipeline.json").read_text())["registry_version"] == "fixed-1"


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["ingest", "/no/such/folder", "--output", "{tmp}/out", "--registry", "{registry}"], "does not exist"),
        (["invalid", "list", "--output", "{tmp}/missing"], "is not a directory"),
        (["ingest", "{samples}", "--output", "{tmp}/out", "--registry", "{tmp}/no-registry"], "registry"),
        (["ingest", "{samples}", "--output", "{tmp}/out", "--registry", "{registry}", "--profile", "nosuch"], "nosuch"),
        (
            ["ingest", "{samples}", "--output", "{tmp}/out", "--registry", "{registry}", "--max-invalid", "x"],
            "a count (N)",
        ),
        (["query", "--output", "{tmp}/missing", "SHOW TABLES"], "does not exist"),
        (["catalog", "rebuild", "--output", "{tmp}/missing"], "no published datasets"),
        (["ledger", "forget", "x", "--output", "{tmp}/missing"], "is not a directory"),
        (["ingest", "{samples}", "--config", "{tmp}/no.yaml"], "no such file"),
    ],
)
def test_ordinary_mistakes_are_one_line_and_exit_2(argv, expected, registry_dir, tmp_path, capsys):
    filled = [item.format(tmp=tmp_path, registry=registry_dir, samples=SAMPLES / "archives") for item in argv]

    assert main(filled) == ExitCode.USAGE

    line = _one_error_line(capsys)
    assert line.startswith("bridge-downstream: error: ")
    assert expected in line


def test_a_dataset_in_another_case_or_its_table_name_is_accepted_and_an_unknown_one_gets_close_matches():
    known = ["MotionRecord_v1", "TaskData_v1", "TaskData_v2"]
    assert resolve_dataset_ids(["taskdata_V1"], known) == ["TaskData_v1"]
    assert resolve_dataset_ids(["dataset_taskdata_v2"], known) == ["TaskData_v2"]
    assert resolve_dataset_ids(["dataset_taskdata_v1_steps"], known) == ["TaskData_v1"]
    with pytest.raises(UsageError, match="did you mean TaskData_v1"):
        resolve_dataset_ids(["TaskDta_v1"], known)


def test_publish_of_an_unknown_dataset_is_one_line_with_close_matches(registry_dir, tmp_path, capsys):
    output = tmp_path / "out"
    _ingest(registry_dir, output, "--max-invalid", "3")
    capsys.readouterr()

    assert main(["publish", "--output", str(output), "--datasets", "TaskDta_v1"]) == ExitCode.USAGE

    line = _one_error_line(capsys)
    assert "no dataset 'TaskDta_v1'; did you mean TaskData_v1" in line


def test_no_aws_region_is_one_line(monkeypatch, tmp_path, capsys):
    for name in ("AWS_REGION", "AWS_DEFAULT_REGION", "AWS_PROFILE", "AWS_ENDPOINT_URL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")

    code = main(["invalid", "list", "--queue-url", "https://sqs.example/123/q"])

    assert code == ExitCode.USAGE
    assert "no AWS region: set AWS_REGION" in _one_error_line(capsys)


def test_a_closed_pipe_is_quiet(tmp_path):
    import subprocess
    import sys

    import duckdb

    output = tmp_path / "out"
    output.mkdir()
    duckdb.connect(str(output / "catalog.duckdb")).close()  # a catalog with no views yet

    # `| head -1` leaves after one line of 300,000: the writer's next write fails with EPIPE
    result = subprocess.run(
        f"set -o pipefail; {sys.executable} -m bridge_downstream_cli query --output {output} --format csv "
        "'SELECT range AS n FROM range(300000)' | head -1",
        shell=True,
        executable="/bin/bash",
        capture_output=True,
        text=True,
        check=False,
    )

    assert result.stdout == "n\n"
    assert result.stderr == ""
    assert result.returncode == 0


# ----------------------------------------------------------------- the basics


def test_version(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--version"])
    assert exit_info.value.code == 0
    assert capsys.readouterr().out.startswith("bridge-downstream ")


def test_every_command_takes_the_common_options():
    parser = build_parser()
    commands = list(subparsers_of(parser))
    assert len(commands) > 15
    for command in commands:
        for option in ("-v", "-q", "--log-format"):
            assert option in command._option_string_actions, (command.prog, option)


def test_json_logs_carry_run_archive_outcome_and_reason(registry_dir, tmp_path, capsys):
    _ingest(registry_dir, tmp_path / "out", "-v", "--log-format", "json", "--max-invalid", "3")
    events = [json.loads(line) for line in capsys.readouterr().err.splitlines() if line.startswith("{")]
    by_archive = {event["file.path"].rsplit("/", 1)[-1]: event for event in events if "file.path" in event}
    assert len(by_archive) == 8
    invalid = by_archive["rec-0005-invalid-response-time.zip"]
    assert invalid["event.outcome"] == "invalid"
    assert invalid["event.reason"].startswith("failed validation")
    assert invalid["labels.record_id"] == "rec-0005"
    report = json.loads((tmp_path / "out" / "run-report.json").read_text())
    assert {event["labels.run_id"] for event in by_archive.values()} == {report["run_id"]}
    assert by_archive["rec-0001-number-match.zip"]["event.outcome"] == "processed"


def test_quiet_logs_nothing(registry_dir, tmp_path, capsys):
    _ingest(registry_dir, tmp_path / "out", "-q", "--max-invalid", "3")
    assert capsys.readouterr().err == ""


# ----------------------------------------------------------------- config file


def test_the_config_file_gives_defaults_and_flags_override_it(registry_dir, tmp_path, monkeypatch, capsys):
    project = tmp_path / "project"
    project.mkdir()
    (project / "bridge-downstream.yaml").write_text(
        f"registry: {registry_dir}\noutput: out\nmax-invalid: 3\nworkers: 1\n"
    )
    monkeypatch.chdir(project)

    assert main(["ingest", str(SAMPLES / "archives"), "--no-progress"]) == ExitCode.OK
    assert (project / "out" / "run-report.json").is_file()
    # a flag wins over the file
    assert main(["ingest", str(SAMPLES / "archives"), "--output", "other", "--max-invalid", "0"]) == ExitCode.INVALID
    assert (project / "other" / "run-report.json").is_file()

    # --config FILE from elsewhere: its relative paths are its folder's
    monkeypatch.chdir(tmp_path)
    assert main(["ingest", str(SAMPLES / "archives"), "--config", str(project / "bridge-downstream.yaml")]) == 0
    capsys.readouterr()


def test_an_unknown_config_key_names_the_close_one(tmp_path, monkeypatch, capsys):
    (tmp_path / "bridge-downstream.yaml").write_text("regsitry: reg/\n")
    monkeypatch.chdir(tmp_path)

    assert main(["ingest", str(SAMPLES / "archives")]) == ExitCode.USAGE

    assert "unknown key 'regsitry'; did you mean registry?" in _one_error_line(capsys)


# ------------------------------------------------------------------- query


@pytest.fixture(scope="module")
def published_output(registry_dir, tmp_path_factory):
    output = tmp_path_factory.mktemp("published") / "out"
    code = main(
        ["run", str(SAMPLES / "archives"), "--registry", str(registry_dir), "--output", str(output),
         "--engine", "arrow", "--max-invalid", "3", "--no-progress", "-q"]
    )  # fmt: skip
    assert code == ExitCode.OK
    return output


SQL = "SELECT recordid FROM dataset_taskdata_v1 ORDER BY recordid"


def test_query_as_csv_json_and_into_a_file(published_output, tmp_path, capsys):
    capsys.readouterr()
    assert main(["query", "--output", str(published_output), "--format", "csv", SQL]) == 0
    assert capsys.readouterr().out == "recordid\nrec-0001\nrec-0003\n"

    assert main(["query", "--output", str(published_output), "--format", "json", "--max-rows", "1", SQL]) == 0
    assert json.loads(capsys.readouterr().out) == [{"recordid": "rec-0001"}]

    target = tmp_path / "rows.json"
    assert main(["query", "--output", str(published_output), "-o", str(target), SQL]) == 0
    assert json.loads(target.read_text()) == [{"recordid": "rec-0001"}, {"recordid": "rec-0003"}]


def test_query_of_an_unknown_table_or_a_dataset_id_is_one_line(published_output, capsys):
    capsys.readouterr()
    assert main(["query", "--output", str(published_output), "SELECT * FROM dataset_taskdat_v1"]) == 2
    assert "did you mean dataset_taskdata_v1" in _one_error_line(capsys)
    assert main(["query", "--output", str(published_output), "SELECT * FROM TaskData_v1"]) == 2
    assert "the dataset TaskData_v1's table is dataset_taskdata_v1" in _one_error_line(capsys)


def test_publish_takes_a_table_name_in_any_case(published_output, capsys):
    capsys.readouterr()
    assert main(["publish", "--output", str(published_output), "--datasets", "DATASET_TASKDATA_V2", "-q"]) == 0
    printed = capsys.readouterr().out
    assert "published 1 datasets" in printed
    assert "dataset_taskdata_v2_steps" in printed


# ------------------------------------------------------ only what is needed is asked


def test_run_wide_metadata_fills_in_and_an_archives_own_wins(registry_dir, tmp_path, capsys):
    inputs = tmp_path / "in"
    inputs.mkdir()
    shutil.copy(SAMPLES / "archives" / "rec-0007-no-metadata.zip", inputs / "a.zip")  # no sidecar
    shutil.copy(SAMPLES / "archives" / "rec-0001-number-match.zip", inputs / "b.zip")
    shutil.copy(SAMPLES / "archives" / "rec-0001-number-match.zip.metadata.json", inputs / "b.zip.metadata.json")
    run_wide = ["--metadata", "RecordId=rec-run", "--metadata", "assessmentid=number-match"]
    run_wide += ["--metadata", "assessmentrevision=1", "--metadata", "uploadedon=2024-03-02T00:00:00.000Z"]

    assert _ingest(registry_dir, tmp_path / "out", *run_wide, inputs=inputs) == ExitCode.OK

    records = [
        json.loads(line)
        for path in (tmp_path / "out" / "reports").glob("*.records.jsonl")
        for line in path.read_text().splitlines()
    ]
    assert sorted((r["source"].rsplit("/", 1)[-1], r["status"], r["recordid"]) for r in records) == [
        ("a.zip", "processed", "rec-run"),
        ("b.zip", "processed", "rec-0001"),
    ]
    capsys.readouterr()
    assert _ingest(registry_dir, tmp_path / "out2", "--metadata", "novalue", inputs=inputs) == ExitCode.USAGE
    assert "--metadata takes KEY=VALUE" in _one_error_line(capsys)
