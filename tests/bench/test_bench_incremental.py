"""The incremental benchmark: its deltas publish only what their ingest
reported, the fixed delta has one size at every history, and the growth it
reports is the larger history's seconds over the smallest's."""

from __future__ import annotations

import json
import sys

from project_paths import PROJECT_ROOT

sys.path.insert(0, str(PROJECT_ROOT / "bench"))  # bench/ is scripts, not a package

import incremental


def row(engine: str, records: int, step: str, seconds: float) -> dict:
    return {"engine": engine, "records": records, "step": step, "seconds": seconds}


def test_growth_is_each_larger_history_over_the_smallest_per_engine_and_step():
    fixed = incremental.fixed_step(100)
    rows = [
        row("arrow", 10_000, fixed, 0.4),
        row("arrow", 10_000, incremental.NEW_STEP, 0.5),
        row("arrow", 100_000, fixed, 0.5),
        row("arrow", 100_000, incremental.NEW_STEP, 4.0),
        row("arrow", 1_000_000, fixed, 0.6),
        row("spark", 10_000, fixed, 0.0),
        row("spark", 100_000, fixed, 2.0),
        row("spark", 100_000, "rebuild (--full)", 9.0),
    ]
    assert incremental.growth(rows, [fixed, incremental.NEW_STEP]) == [
        "growth arrow delta: 100 new uploads 10,000->100,000: 1.25x",
        "growth arrow delta: 100 new uploads 10,000->1,000,000: 1.50x",
        "growth arrow delta: 1 % new uploads 10,000->100,000: 8.00x",
        "growth spark delta: 100 new uploads 10,000->100,000: n/a (0 s at the smaller)",
    ]


def test_a_tiny_run_publishes_each_delta_s_reported_datasets_and_a_fixed_delta(monkeypatch, tmp_path, capsys):
    reports, published = [], []
    real_ingest, real_publish = incremental.ingest, incremental.publish

    def recording_ingest(archives, output, registry):
        reports.append(real_ingest(archives, output, registry))
        return reports[-1]

    def recording_publish(engine, spark_factory, output, registry, full, datasets):
        published.append(datasets)
        return real_publish(engine, spark_factory, output, registry, full, datasets)

    monkeypatch.setattr(incremental, "ingest", recording_ingest)
    monkeypatch.setattr(incremental, "publish", recording_publish)
    work, table = tmp_path / "work", tmp_path / "table.md"
    argv = [
        "--records",
        "100,200",
        "--engines",
        "arrow",
        "--fixed-delta",
        "3",
        "--fixed-runs",
        "2",
        "--work",
        str(work),
    ]
    assert incremental.main([*argv, "--markdown", str(table)]) == 0

    fixed = [incremental.fixed_step(3, run, 2) for run in (1, 2)]
    assert fixed == ["delta: 3 new uploads (1 of 2)", "delta: 3 new uploads (2 of 2)"]
    rows = json.loads((work / "results.json").read_text())
    steps = [incremental.HISTORY_STEP, incremental.NEW_STEP, "delta: 0.1 % re-exports", *fixed, "rebuild (--full)"]
    assert [(r["records"], r["step"]) for r in rows] == [(n, step) for n in (100, 200) for step in steps]
    assert [r["mode"] for r in rows if r["step"].startswith("delta")] == ["incremental"] * 8
    # Per size: five ingests (history, four deltas), six publishes. The
    # history and the rebuild publish every dataset (None); a delta, what its
    # ingest reported.
    delta_reports = [report for size in (0, 1) for report in reports[5 * size + 1 : 5 * size + 5]]
    assert all(report["datasets"] for report in delta_reports)
    delta_datasets = [sorted(report["datasets"]) for report in delta_reports]
    assert published == [None, *delta_datasets[:4], None, None, *delta_datasets[4:], None]
    # The fixed deltas: 3 uploads each at both sizes, the ones after the 1 % delta's.
    for records in (100, 200):
        for run in (1, 2):
            archives = sorted(p.name for p in (work / f"data-{records}" / f"fixed-3-{run}").glob("*.zip"))
            first = records + records // 100 + (run - 1) * 3
            assert [name[:7] for name in archives] == [f"{i:07d}" for i in range(first, first + 3)]

    seconds = {(r["records"], r["step"]): r["seconds"] for r in rows}
    expected = [
        f"growth arrow {step} 100->200: {seconds[200, step] / seconds[100, step]:.2f}x"
        for step in (*fixed, incremental.NEW_STEP)
    ]
    assert capsys.readouterr().out.splitlines()[-3:] == expected
    assert table.read_text().endswith("\n\n" + "".join(f"- {line}\n" for line in expected))


def test_the_steady_growth_is_that_of_the_median_of_the_fourth_fixed_delta_on():
    runs = 6
    seconds = {10_000: [0.9, 0.5, 0.4, 0.3, 0.9, 0.35], 100_000: [2.0, 1.0, 0.6, 0.5, 0.45, 0.4]}
    rows = [
        row("arrow", records, incremental.fixed_step(100, run, runs), value)
        for records, values in seconds.items()
        for run, value in enumerate(values, start=1)
    ]
    steady = incremental.steady_step(100, runs)
    assert steady == "delta: 100 new uploads, steady (median of 4 to 6 of 6)"
    with_steady = incremental.with_steady(rows, 100, runs)
    assert [(r["records"], r["seconds"]) for r in with_steady if r["step"] == steady] == [
        (10_000, 0.35),
        (100_000, 0.45),
    ]
    assert incremental.growth(with_steady, [steady]) == [f"growth arrow {steady} 10,000->100,000: 1.29x"]
    assert incremental.with_steady(rows[:3], 100, 3) == rows[:3]  # fewer than four runs: no steady one
