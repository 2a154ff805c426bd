"""The run report page, rendered by a real headless Chromium: the figures it
shows after its scripts ran are the JSON report's."""

from __future__ import annotations

import html
import json
import shutil
import subprocess
from html.parser import HTMLParser

import pytest

from bridge_downstream_cli.exit_codes import ExitCode
from bridge_downstream_cli.html_report import (
    REPORT_PAGE_NAME,
    grouped_reasons,
    reason_group,
    render_run_report,
    rows_per_upload_day,
)
from bridge_downstream_cli.main import main
from bridge_downstream_cli.pipeline_commands import print_ingest_summary
from support import SAMPLES, build_sample_registry

CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
)


class Figures(HTMLParser):
    """``data-figure`` cells and ``data-day`` bars of a page, as the browser left its DOM."""

    def __init__(self):
        super().__init__()
        self.figures: dict[str, str] = {}
        self.days: dict[str, int] = {}
        self._open: str | None = None

    def handle_starttag(self, tag, attrs):
        attributes = dict(attrs)
        if "data-figure" in attributes:
            self._open = attributes["data-figure"]
            self.figures[self._open] = ""
        if "data-day" in attributes:
            self.days[attributes["data-day"]] = int(attributes["data-rows"])

    def handle_data(self, data):
        if self._open is not None:
            self.figures[self._open] += data

    def handle_endtag(self, tag):
        self._open = None


def chromium_dom(page, profile_dir) -> str:
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if browser is None:
        pytest.skip("no Chromium: `make test` installs it (apt-get install -y chromium)")
    done = subprocess.run(
        [browser, *CHROMIUM_FLAGS, f"--user-data-dir={profile_dir}", "--dump-dom", page.as_uri()],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    return done.stdout


@pytest.fixture(scope="module")
def sample_run(tmp_path_factory):
    folder = tmp_path_factory.mktemp("html")
    build_sample_registry(folder / "registry")
    output = folder / "out"
    argv = ["run", str(SAMPLES / "archives"), "--registry", str(folder / "registry"), "--output", str(output)]
    assert main([*argv, "--no-progress"]) == ExitCode.INVALID  # three sample archives are invalid on purpose
    return output


def test_the_page_beside_the_report_shows_the_reports_figures_in_chromium(sample_run, tmp_path):
    report = json.loads((sample_run / "run-report.json").read_text())
    page = sample_run / REPORT_PAGE_NAME
    dom = chromium_dom(page, tmp_path / "chromium-profile")
    assert "<svg" in dom and "http" not in page.read_text().replace("http://www.w3.org", "")  # no external asset
    shown = Figures()
    shown.feed(dom)
    for status in ("total", "processed", "invalid", "skipped"):
        assert int(shown.figures[f"archives.{status}"]) == report["archives"][status]
    assert {k: int(v) for k, v in shown.figures.items() if k.startswith("invalid.")} == {
        "invalid.failed validation": 1,
        "invalid.corrupt-archive": 1,
        "invalid.no Bridge metadata": 1,
    }
    for dataset_id, counts in report["datasets"].items():
        assert int(shown.figures[f"ingested.{dataset_id}"]) == counts["rows"]
    assert int(shown.figures["published.MotionRecord_v1"]) == report["tables"]["dataset_motionrecord_v1"]["rows"] == 19
    assert int(shown.figures["ingested.MotionRecord_v1"]) == 28  # rec-0001's re-export superseded 9 rows
    assert int(shown.figures["files_skipped.info.json"]) == 1
    parts = [json.loads(line) for line in (sample_run / report["parts"]).read_text().splitlines() if line]
    assert shown.days == rows_per_upload_day(parts)
    assert sum(shown.days.values()) == sum(counts["rows"] for counts in report["datasets"].values())


def test_the_terminal_summary_names_the_parquet_of_each_table(sample_run, capsys, tmp_path):
    argv = ["run", str(SAMPLES / "archives"), "--registry", str(sample_run.parent / "registry")]
    main([*argv, "--output", str(tmp_path / "again"), "--no-progress"])
    printed = capsys.readouterr().out
    assert "/published/TaskData_v1/versions/" in printed and "/parquet/dataset_taskdata_v1_steps" in printed


def test_the_terminal_summary_sums_many_invalid_archives_up_by_reason(sample_run, capsys):
    report = json.loads((sample_run / "run-report.json").read_text())
    reasons = ["failed validation: taskData.json"] * 900 + ["corrupt-archive: not a ZIP"] * 100
    report["invalid"] = [{"source": f"s3://raw/{i}.zip", "reason": r} for i, r in enumerate(reasons)]
    print_ingest_summary(report, sample_run)
    printed = capsys.readouterr().out
    assert "invalid      900 archives: failed validation" in printed
    assert "invalid      100 archives: corrupt-archive" in printed
    assert "s3://raw/" not in printed  # one line per reason, not per archive


def test_reasons_group_by_their_kind():
    assert reason_group("failed validation: taskData.json") == "failed validation"
    assert reason_group(None) == "no reason given"
    entries = [{"reason": "failed validation: a.json"}, {"reason": "failed validation: b.json"}, {"reason": "x"}]
    assert grouped_reasons(entries) == [("failed validation", 2), ("x", 1)]


def test_a_page_escapes_what_the_report_holds():
    page = render_run_report({"run_id": "<script>alert(1)</script>", "invalid": [{"reason": "<b>bad</b>: x"}]})
    assert "<script>alert" not in page and "&lt;script&gt;" in page and "&lt;b&gt;bad&lt;/b&gt;" in page


def test_the_page_shows_the_failed_expectations_with_their_keys_in_chromium(sample_run, tmp_path):
    expectations = tmp_path / "expectations.yaml"
    expectations.write_text(
        "expectations:\n"
        "  MotionRecord_v1:\n"
        "    root:\n"
        "      - {kind: in_set, column: sensorType, values: [accelerometer, gyro], policy: block}\n"
    )
    output = tmp_path / "out"
    argv = [
        "run",
        str(SAMPLES / "archives"),
        "--registry",
        str(sample_run.parent / "registry"),
        "--output",
        str(output),
    ]
    assert main([*argv, "--no-progress", "--max-invalid", "100%", "--expectations", str(expectations)]) == (
        ExitCode.INVALID  # a block expectation failed
    )
    report = json.loads((output / "run-report.json").read_text())
    found = report["quality_failures"]["MotionRecord_v1"]
    (failed,) = found["failed"]
    assert found["blocked"] and failed["unexpected_count"] > 0 and failed["samples"]

    dom = chromium_dom(output / REPORT_PAGE_NAME, tmp_path / "chromium-profile")
    shown = Figures()
    shown.feed(dom)
    figure = f"quality.MotionRecord_v1.{failed['table']}.{failed['expectation']}"
    assert int(shown.figures[figure]) == failed["unexpected_count"]
    assert "blocked: the previous version stays current" in dom
    shown_text = html.unescape(dom)
    for sample in failed["samples"]:
        assert f'{json.dumps(sample["key"], sort_keys=True)} → "magnetometer"' in shown_text


def test_a_page_with_no_failed_expectation_says_so():
    assert "every expectation passed" in render_run_report({"run_id": "r"})
