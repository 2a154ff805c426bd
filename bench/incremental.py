"""The incremental publish benchmark (docs/benchmarks.md, "Incremental publish").

A history of ``--records`` uploads is ingested and published in full (every
dataset under ``json/``); then three deltas are ingested and published
incrementally into the same output:

* ``new``: 1 % more uploads, on the days after the history (as a daily run sees them);
* ``reexport``: 0.1 % of the history's records exported again (a later
  ``exportedon``), spread evenly over the history's days;
* ``fixed-N-I``: ``--fixed-delta`` new uploads (default 100, 1 % of 10,000), the
  ones after ``new``'s, published ``--fixed-runs`` times in a row (default 8),
  each with its own uploads: the same delta at every history size. The first
  one prunes the history's full version (retention 3); from the fourth on, the
  version each prunes is a fixed delta too, as in a steady daily publish.

A delta publishes what ``bridge-downstream run`` publishes: only the datasets
its ingest reported, not every dataset of the history. Before each publish,
what the earlier steps wrote is flushed to disk (``os.sync``), so that no
publish is timed with the writeback of another's files (the history's full
publish writes 10 times more at 100k than at 10k).

After the deltas the same output is published once more with ``full=True``
(what ``--full`` does), every dataset, which gives the same tables. Each
publish prints its time, the Parquet and CSV bytes and files it wrote, the
files it carried by reference, the median Parquet file size of the version,
and its time over the history's full publish.

Issue 22 asks that a delta's cost follow the new data, not the history. The
1 % delta grows with the history, the fixed one does not; so after every size
and engine, the growth of each from the smallest history to each larger one is
printed (and written under the Markdown table): ``growth ENGINE STEP
SMALL->LARGE: RATIOx``, the seconds at the larger history over the smaller's,
for the first and the last fixed delta, for the median of the steady ones
(the fourth on) and for the 1 % delta.

    pipenv run python bench/incremental.py --records 10000,100000 --engines arrow,spark
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

NEW_SHARE = 0.01
REEXPORT_SHARE = 0.001
HISTORY_STEP = "history (full)"
NEW_STEP = "delta: 1 % new uploads"


def fixed_step(uploads: int, run: int = 1, runs: int = 1) -> str:
    return f"delta: {uploads} new uploads" + (f" ({run} of {runs})" if runs > 1 else "")


def write_uploads(folder: Path, indexes: list[int], *, seed: int, reexport_from: int | None = None) -> None:
    """Archives for ``indexes`` (bench/generate.py's uploads); with
    ``reexport_from``, the same records exported again after the history."""
    from generate import _zip_bytes, upload

    folder.mkdir(parents=True, exist_ok=True)
    for index in indexes:
        name, members, metadata = upload(index, seed, motion_samples=25, steps=5)
        if reexport_from is not None:
            metadata["exportedon"] = "2030-01-01T00:00:00.000Z"  # later than every export of the history
            name = f"reexport-{reexport_from:07d}-{name}"
        _zip_bytes(folder / name, members)
        (folder / f"{name}.metadata.json").write_text(json.dumps(metadata))


def ingest(archives: Path, output: Path, registry) -> dict:
    """The ingest's report (``datasets``: the datasets it wrote rows to)."""
    from bridge_downstream.common.storage import LocalStorage
    from bridge_downstream.config.profiles import load_profile
    from bridge_downstream.ingest.invalid_sink import StorageInvalidSink
    from bridge_downstream.ingest.listing import ArchiveInput
    from bridge_downstream.ingest.run import run_ingest

    source = LocalStorage(archives)
    inputs = [ArchiveInput(source, p.relative_to(archives).as_posix()) for p in sorted(archives.rglob("*.zip"))]
    out = LocalStorage(output)
    return run_ingest(inputs, registry=registry, profile=load_profile("mtb"), output=out, sink=StorageInvalidSink(out))


def publish(engine: str, spark_factory, output: Path, registry, full: bool, datasets: list[str] | None) -> dict:
    """``datasets`` published (``None``: every dataset under ``json/``); what the
    versions wrote and carried."""
    from bridge_downstream.common.storage import LocalStorage
    from bridge_downstream.config.profiles import load_profile
    from bridge_downstream.publish.engine_steps import json_datasets
    from bridge_downstream.publish.engines import publish_dataset_with

    storage = LocalStorage(output)
    profile = load_profile("mtb")
    started = time.perf_counter()
    manifests = [
        publish_dataset_with(
            engine,
            spark_factory,
            dataset_id=dataset_id,
            registry=registry,
            profile=profile,
            work=storage,
            published=storage,
            run_id="bench-incremental",
            full=full,
        ).manifest
        for dataset_id in (json_datasets(storage) if datasets is None else datasets)
    ]
    seconds = time.perf_counter() - started
    written = referenced = written_bytes = 0
    parquet_sizes = []
    modes = set()
    for manifest in manifests:
        modes.add(manifest.increment.get("mode"))
        own = f"/versions/{manifest.version}/"
        for table in manifest.tables.values():
            for file in table.files:
                if own in file.key:
                    written += 1
                    written_bytes += file.size
                else:
                    referenced += 1
                if file.format == "parquet":
                    parquet_sizes.append(file.size)
    return {
        "seconds": round(seconds, 2),
        "mode": "/".join(sorted(modes)),
        "files_written": written,
        "bytes_written": written_bytes,
        "files_referenced": referenced,
        "median_parquet_bytes": int(statistics.median(parquet_sizes)) if parquet_sizes else 0,
    }


def run(records: int, engine: str, work: Path, registry, seed: int, fixed_delta: int, fixed_runs: int) -> list[dict]:
    from generate import generate

    from bridge_downstream.publish.spark_session import local_spark_session

    data = work / f"data-{records}"
    history = data / "history"
    if not history.exists():  # in parallel, as bench/generate.py writes them
        generate(history, records=records, seed=seed)
    new = data / "new"
    new_count = max(1, int(records * NEW_SHARE))
    if not new.exists():
        write_uploads(new, list(range(records, records + new_count)), seed=seed)
    reexport = data / "reexport"
    if not reexport.exists():
        count = max(1, int(records * REEXPORT_SHARE))
        step = records // count
        write_uploads(reexport, [i * step for i in range(count)], seed=seed, reexport_from=records)
    fixed = [data / f"fixed-{fixed_delta}-{run}" for run in range(1, fixed_runs + 1)]
    for run, folder in enumerate(fixed):
        if not folder.exists():
            first = records + new_count + run * fixed_delta
            write_uploads(folder, list(range(first, first + fixed_delta)), seed=seed)
    output = work / f"out-{records}-{engine}"
    shutil.rmtree(output, ignore_errors=True)
    spark_factory = None
    if engine == "spark":
        session = local_spark_session(app_name="bench-incremental")
        spark_factory = lambda: session
    rows = []
    # The history's publish comes first: it pays the first publish's imports
    # (pandas, pyarrow.dataset; Spark's JVM), which no delta should be timed with.
    for step, archives, full in (
        (HISTORY_STEP, history, False),
        (NEW_STEP, new, False),
        ("delta: 0.1 % re-exports", reexport, False),
        *((fixed_step(fixed_delta, run, fixed_runs), folder, False) for run, folder in enumerate(fixed, start=1)),
        ("rebuild (--full)", None, True),
    ):
        report = ingest(archives, output, registry) if archives is not None else None
        # what earlier steps wrote is flushed first: a delta after the history's
        # full publish would otherwise be timed with the writeback of its files
        os.sync()
        is_delta = report is not None and step != HISTORY_STEP
        datasets = sorted(report["datasets"]) if is_delta else None  # as `bridge-downstream run` publishes
        result = {"records": records, "engine": engine, "step": step} | publish(
            engine, spark_factory, output, registry, full, datasets
        )
        result["ratio_to_full"] = round(result["seconds"] / rows[0]["seconds"], 3) if rows else 1.0
        result["load_average"] = round(os.getloadavg()[0], 2)  # a shared host: how busy it was, per step
        rows.append(result)
        print(json.dumps(result), flush=True)
    return rows


def markdown(rows: list[dict]) -> str:
    lines = [
        "| history | engine | publish | mode | seconds | / full | files written | MB written | files referenced | median Parquet KB |",
        "|---:|---|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['records']:,} | {r['engine']} | {r['step']} | {r['mode']} | {r['seconds']} | {r['ratio_to_full']} "
            f"| {r['files_written']} | {r['bytes_written'] / 1e6:.1f} | {r['files_referenced']} "
            f"| {r['median_parquet_bytes'] / 1e3:.1f} |"
        )
    return "\n".join(lines)


STEADY_FROM = 4  # the first fixed delta that prunes a fixed delta's version


def steady_step(uploads: int, runs: int) -> str:
    return f"delta: {uploads} new uploads, steady (median of {STEADY_FROM} to {runs} of {runs})"


def with_steady(rows: list[dict], uploads: int, runs: int) -> list[dict]:
    """``rows`` and, per history size and engine, the median seconds of the
    fixed deltas from the :data:`STEADY_FROM`-th on (each prunes a fixed
    delta's version, as a daily publish does): one delta's seconds on a
    shared host vary by more than the growth it is compared with."""
    if runs < STEADY_FROM:
        return rows
    steady = {fixed_step(uploads, run, runs) for run in range(STEADY_FROM, runs + 1)}
    medians = []
    for engine, records in dict.fromkeys((r["engine"], r["records"]) for r in rows):
        seconds = [
            r["seconds"] for r in rows if (r["engine"], r["records"]) == (engine, records) and r["step"] in steady
        ]
        if seconds:
            step = steady_step(uploads, runs)
            medians.append({"records": records, "engine": engine, "step": step, "seconds": statistics.median(seconds)})
    return rows + medians


def growth(rows: list[dict], steps: list[str]) -> list[str]:
    """Per engine and step, the seconds at each larger history over those at
    the smallest one's."""
    lines = []
    for engine in dict.fromkeys(r["engine"] for r in rows):
        for step in steps:
            by_size = {r["records"]: r["seconds"] for r in rows if r["engine"] == engine and r["step"] == step}
            if not by_size:
                continue
            small = min(by_size)
            for large in sorted(size for size in by_size if size > small):
                ratio = f"{by_size[large] / by_size[small]:.2f}x" if by_size[small] else "n/a (0 s at the smaller)"
                lines.append(f"growth {engine} {step} {small:,}->{large:,}: {ratio}")
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", default="10000", help="history sizes, comma-separated (default 10000)")
    parser.add_argument("--engines", default="arrow", help="arrow, spark or arrow,spark (default arrow)")
    parser.add_argument("--work", default="/tmp/bridge-bench/incremental")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument(
        "--fixed-delta",
        type=int,
        default=100,
        help="new uploads of the delta of one size at every history (default 100)",
    )
    parser.add_argument(
        "--fixed-runs",
        type=int,
        default=8,
        help=f"fixed deltas published in a row (default 8: from the {STEADY_FROM}th on, each prunes a fixed delta)",
    )
    parser.add_argument("--markdown", help="also write the table and the growth to this file")
    args = parser.parse_args(argv)

    from run import build_registry

    from bridge_downstream.config.registry import SchemaRegistry

    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    registry = SchemaRegistry.load(build_registry(work))
    rows = []
    for records in (int(n) for n in args.records.split(",")):
        for engine in args.engines.split(","):
            rows += run(records, engine, work, registry, args.seed, args.fixed_delta, args.fixed_runs)
    table = markdown(rows)
    fixed_steps = dict.fromkeys(fixed_step(args.fixed_delta, run, args.fixed_runs) for run in (1, args.fixed_runs))
    steady = [steady_step(args.fixed_delta, args.fixed_runs)] if args.fixed_runs >= STEADY_FROM else []
    growth_lines = growth(with_steady(rows, args.fixed_delta, args.fixed_runs), [*fixed_steps, *steady, NEW_STEP])
    print(table)
    print("\n".join(growth_lines))
    if args.markdown:
        under_table = "".join(f"- {line}\n" for line in growth_lines)
        Path(args.markdown).write_text(f"{table}\n\n{under_table}" if under_table else f"{table}\n")
    (work / "results.json").write_text(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
