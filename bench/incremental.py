"""The incremental publish benchmark (docs/benchmarks.md, "Incremental publish").

A history of ``--records`` uploads is ingested and published in full; then two
deltas are ingested and published incrementally into the same output:

* ``new``: 1 % more uploads, on the days after the history (as a daily run sees them);
* ``reexport``: 0.1 % of the history's records exported again (a later
  ``exportedon``), spread evenly over the history's days.

After the deltas the same output is published once more with ``full=True``
(what ``--full`` does), which gives the same tables. Each publish prints its
time, the Parquet and CSV bytes and files it wrote, the files it carried by
reference, the median Parquet file size of the version, and its time over the
history's full publish.

    pipenv run python bench/incremental.py --records 10000 --engines arrow,spark
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


def ingest(archives: Path, output: Path, registry) -> None:
    from bridge_downstream.common.storage import LocalStorage
    from bridge_downstream.config.profiles import load_profile
    from bridge_downstream.ingest.invalid_sink import StorageInvalidSink
    from bridge_downstream.ingest.listing import ArchiveInput
    from bridge_downstream.ingest.run import run_ingest

    source = LocalStorage(archives)
    inputs = [ArchiveInput(source, p.relative_to(archives).as_posix()) for p in sorted(archives.rglob("*.zip"))]
    out = LocalStorage(output)
    run_ingest(inputs, registry=registry, profile=load_profile("mtb"), output=out, sink=StorageInvalidSink(out))


def publish_all(engine: str, spark_factory, output: Path, registry, full: bool) -> dict:
    """Every dataset published; what the versions wrote and carried."""
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
        for dataset_id in json_datasets(storage)
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


def run(records: int, engine: str, work: Path, registry, seed: int) -> list[dict]:
    from generate import generate

    from bridge_downstream.publish.spark_session import local_spark_session

    data = work / f"data-{records}"
    history = data / "history"
    if not history.exists():  # in parallel, as bench/generate.py writes them
        generate(history, records=records, seed=seed)
    new = data / "new"
    if not new.exists():
        write_uploads(new, list(range(records, records + max(1, int(records * NEW_SHARE)))), seed=seed)
    reexport = data / "reexport"
    if not reexport.exists():
        count = max(1, int(records * REEXPORT_SHARE))
        step = records // count
        write_uploads(reexport, [i * step for i in range(count)], seed=seed, reexport_from=records)
    output = work / f"out-{records}-{engine}"
    shutil.rmtree(output, ignore_errors=True)
    spark_factory = None
    if engine == "spark":
        session = local_spark_session(app_name="bench-incremental")
        spark_factory = lambda: session
    rows = []
    for step, archives, full in (
        ("history (full)", history, False),
        ("delta: 1 % new uploads", new, False),
        ("delta: 0.1 % re-exports", reexport, False),
        ("rebuild (--full)", None, True),
    ):
        if archives is not None:
            ingest(archives, output, registry)
        result = {"records": records, "engine": engine, "step": step} | publish_all(
            engine, spark_factory, output, registry, full
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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", default="10000", help="history sizes, comma-separated (default 10000)")
    parser.add_argument("--engines", default="arrow", help="arrow, spark or arrow,spark (default arrow)")
    parser.add_argument("--work", default="/tmp/bridge-bench/incremental")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--markdown", help="also write the table to this file")
    args = parser.parse_args(argv)

    from run import build_registry

    from bridge_downstream.config.registry import SchemaRegistry

    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    registry = SchemaRegistry.load(build_registry(work))
    rows = []
    for records in (int(n) for n in args.records.split(",")):
        for engine in args.engines.split(","):
            rows += run(records, engine, work, registry, args.seed)
    table = markdown(rows)
    print(table)
    if args.markdown:
        Path(args.markdown).write_text(table + "\n")
    (work / "results.json").write_text(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
