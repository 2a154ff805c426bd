"""One measured step, run in its own process by ``bench/run.py`` (which samples
the memory of this process and all its children, the JVM included).

Prints one JSON line: ``seconds`` (the timed work only: no interpreter start,
no Spark session start unless the step is ``spark-start``), ``records`` and
``in_bytes`` (what went in), ``out_rows`` (rows written), ``detail``.

    pipenv run python bench/steps.py ingest --impl ours --input DATA/archives --output WORK/out --registry WORK/registry
    AWS_ENDPOINT_URL=http://127.0.0.1:PORT ... bench/steps.py ingest-s3 --impl original --input s3://src/archives --output s3://out-original --queue-url URL --registry WORK/registry
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))


def _inputs(folder: Path):
    from bridge_downstream.common.storage import LocalStorage
    from bridge_downstream.ingest.listing import ArchiveListing

    # As the command line lists them: spooled to a file, nothing per archive in memory.
    listing = ArchiveListing.of_storage(LocalStorage(folder), (".zip",))
    return listing, listing.total_bytes


def _share(listing, share: str):
    """Share ``K/R`` of a listing: archives K, K+R, K+2R, ... in key order (every
    day and assessment, as the whole), and their bytes."""
    index, count = (int(part) for part in share.split("/"))
    if not 0 <= index < count:
        raise SystemExit(f"--share {share}: expected K/R with 0 <= K < R")
    view = listing[index::count]
    return view, sum(os.path.getsize(view.storage.path(inp.key)) for inp in view)


def _ndjson(work: Path, dataset_id: str) -> list[str]:
    return sorted(str(p) for p in (work / "json" / f"dataset={dataset_id}").rglob("*.ndjson"))


def _lines_and_bytes(paths: list[str]) -> tuple[int, int]:
    lines = size = 0
    for path in paths:
        with open(path, "rb") as handle:
            data = handle.read()
        size += len(data)
        lines += data.count(b"\n")
    return lines, size


def step_ingest(args) -> dict:
    from bridge_downstream.common.storage import LocalStorage
    from bridge_downstream.config.profiles import load_profile
    from bridge_downstream.config.registry import SchemaRegistry
    from bridge_downstream.ingest.invalid_sink import StorageInvalidSink

    registry = SchemaRegistry.load(args.registry)
    profile = load_profile(args.profile)
    inputs, in_bytes = _inputs(Path(args.input))
    if args.share:
        inputs, in_bytes = _share(inputs, args.share)
    shutil.rmtree(args.output, ignore_errors=True)
    output = LocalStorage(args.output)
    started = time.perf_counter()
    if args.impl == "original":
        from original_ingest import run_original_ingest

        report = run_original_ingest(inputs, registry=registry, profile=profile, output=output)
    else:
        from bridge_downstream.ingest.run import run_ingest

        report = run_ingest(
            inputs,
            registry=registry,
            profile=profile,
            output=output,
            sink=StorageInvalidSink(output),
            workers=args.workers,
        )
    seconds = time.perf_counter() - started
    rows = sum(d["rows"] for d in report["datasets"].values())
    records = rows if profile.kind == "ndjson-export" else len(inputs)  # an export's records are its lines
    return {
        "seconds": seconds,
        "records": records,
        "in_bytes": in_bytes,
        "out_rows": rows,
        "detail": {"archives": report["archives"], "rows": {k: v["rows"] for k, v in report["datasets"].items()}},
    }


def _add_request_latency(seconds: float) -> None:
    """Every AWS request from a client made after this waits ``seconds`` first:
    the emulator answers on loopback in well under a millisecond, S3 does not
    (AWS's S3 performance guidelines: small requests' median latency is in the
    tens of milliseconds). Both designs' clients come from boto3's default
    session, so both pay it per request; worker processes inherit it."""
    import boto3

    if boto3.DEFAULT_SESSION is None:
        boto3.setup_default_session()
    boto3.DEFAULT_SESSION.events.register("before-send", lambda **_: time.sleep(seconds))


def step_ingest_s3(args) -> dict:
    """Ingest from emulated S3 to emulated S3 (``AWS_ENDPOINT_URL``): archives
    under ``--input s3://bucket/prefix``, output under ``--output s3://...``,
    invalid records to the SQS queue ``--queue-url``. Listing the archives (the
    job gets them as messages) and creating the output bucket are not timed;
    building the inputs, clients and storages is."""
    import boto3
    from s3_emulation import count_dataset_rows, list_objects, queue_length

    from bridge_downstream.config.profiles import load_profile
    from bridge_downstream.config.registry import SchemaRegistry
    from bridge_downstream_adapters.s3 import parse_s3_uri

    endpoint = os.environ["AWS_ENDPOINT_URL"]
    registry = SchemaRegistry.load(args.registry)
    profile = load_profile(args.profile)
    source_bucket, source_prefix = parse_s3_uri(args.input)
    out_bucket, out_prefix = parse_s3_uri(args.output)
    client = boto3.client("s3")
    client.create_bucket(Bucket=out_bucket)
    archives = list_objects(client, source_bucket, source_prefix, ".zip")
    messages = [{"source_bucket": source_bucket, "source_key": key} for key, _ in archives]
    in_bytes = sum(size for _, size in archives)
    if args.latency_ms:
        _add_request_latency(args.latency_ms / 1000)
    started = time.perf_counter()
    if args.impl == "original":
        from original_ingest import run_original_ingest_s3

        credentials = {
            k.lower(): os.environ[k]
            for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN")
            if k in os.environ
        }
        report = run_original_ingest_s3(
            messages,
            registry=registry,
            registry_dir=args.registry,
            profile=profile,
            json_bucket=out_bucket,
            json_prefix=out_prefix,
            invalid_queue_url=args.queue_url,
            credentials=credentials,
        )
    else:
        from bridge_downstream.ingest.context import default_prefetch
        from bridge_downstream.ingest.listing import ArchiveInput
        from bridge_downstream.ingest.run import run_ingest
        from bridge_downstream_adapters.s3 import S3Storage
        from bridge_downstream_adapters.sqs import SqsInvalidSink

        # As the Glue job builds them: one storage per source bucket, metadata=None
        # (read from the object, as Bridge wrote it), archives read ahead on threads.
        source = S3Storage(source_bucket, endpoint_url=endpoint)
        inputs = [ArchiveInput(source, m["source_key"], source_bucket=source_bucket) for m in messages]
        output = S3Storage(out_bucket, out_prefix, endpoint_url=endpoint)
        sink = SqsInvalidSink(args.queue_url, boto3.client("sqs", endpoint_url=endpoint))
        report = run_ingest(
            inputs,
            registry=registry,
            profile=profile,
            output=output,
            sink=sink,
            workers=args.workers,
            prefetch=default_prefetch(profile),
        )
    seconds = time.perf_counter() - started
    rows = {k: v["rows"] for k, v in report["datasets"].items()}
    written = list_objects(client, out_bucket, "/".join(p for p in (out_prefix.strip("/"), "json/") if p), ".ndjson")
    detail = {
        "archives": report["archives"],
        "rows": rows,
        "ndjson_objects_written": len(written),
        "invalid_queue_messages": queue_length(endpoint, args.queue_url) if args.queue_url else None,
        "endpoint": endpoint,
    }
    if args.verify:
        read_back = count_dataset_rows(client, out_bucket, out_prefix)
        detail["rows_read_back"] = read_back
        if read_back != rows:
            raise SystemExit(
                f"rows read back from s3://{out_bucket}/{out_prefix} {read_back} differ from the run's {rows}"
            )
    print(f"rows per dataset ({args.impl}): {json.dumps(rows, sort_keys=True)}", file=sys.stderr)
    return {
        "seconds": seconds,
        "records": len(messages),
        "in_bytes": in_bytes,
        "out_rows": sum(rows.values()),
        "detail": detail,
    }


def _start_spark():
    """A local Spark session and the seconds it took to start (reported apart from the step's work)."""
    from bridge_downstream.publish.spark_session import local_spark_session

    began = time.perf_counter()
    session = local_spark_session(app_name="bench")
    return session, time.perf_counter() - began


def _datasets(work: Path, wanted: list[str] | None) -> list[str]:
    from bridge_downstream.common.storage import LocalStorage
    from bridge_downstream.publish.engine_steps import json_datasets

    return wanted or json_datasets(LocalStorage(work))


def step_publish(args) -> dict:
    """Publish (dedup -> relationalize -> Parquet + CSV -> manifest -> CURRENT) every dataset."""
    from bridge_downstream.common.storage import LocalStorage
    from bridge_downstream.config.profiles import load_profile
    from bridge_downstream.config.registry import SchemaRegistry
    from bridge_downstream.publish.engines import publish_dataset_with

    registry = SchemaRegistry.load(args.registry)
    profile = load_profile(args.profile)
    work = Path(args.work)
    datasets = _datasets(work, args.datasets)
    lines, size = _lines_and_bytes([p for d in datasets for p in _ndjson(work, d)])
    shutil.rmtree(args.published, ignore_errors=True)
    spark_factory = None
    start_seconds = 0.0
    if args.engine == "spark":
        session, start_seconds = _start_spark()
        spark_factory = lambda: session
    started = time.perf_counter()
    out_rows, tables = 0, {}
    for dataset_id in datasets:
        result = publish_dataset_with(
            args.engine,
            spark_factory,
            dataset_id=dataset_id,
            registry=registry,
            profile=profile,
            work=LocalStorage(work),
            published=LocalStorage(args.published),
            run_id="bench",
        )
        for name, table in result.manifest.tables.items():
            tables[name] = table.rows
            out_rows += table.rows
    seconds = time.perf_counter() - started
    return {
        "seconds": seconds,
        "records": lines,
        "in_bytes": size,
        "out_rows": out_rows,
        "detail": {"tables": tables, "spark_start_seconds": start_seconds},
    }


def step_relationalize(args) -> dict:
    """NDJSON of each dataset -> its tables -> one Parquet file per table (no dedup, no CSV)."""
    from bridge_downstream.common.storage import LocalStorage
    from bridge_downstream.config.profiles import load_profile
    from bridge_downstream.config.registry import SchemaRegistry
    from bridge_downstream.publish.engine_steps import plan_dataset

    registry = SchemaRegistry.load(args.registry)
    profile = load_profile(args.profile)
    work = Path(args.work)
    out = Path(args.out)
    shutil.rmtree(out, ignore_errors=True)
    # ArchiveMetadata_v1 is left out: its rows hold appVersion and appversion,
    # which DuckDB cannot read as two columns (names are case-insensitive there).
    datasets = args.datasets or [d for d in _datasets(work, None) if d != "ArchiveMetadata_v1"]
    paths = {d: _ndjson(work, d) for d in datasets}
    lines, size = _lines_and_bytes([p for d in datasets for p in paths[d]])
    plans = {d: plan_dataset(registry, profile, d, LocalStorage(work))[0] for d in datasets}
    session = None
    start_seconds = 0.0
    if args.engine == "spark":
        session, start_seconds = _start_spark()
    elif args.engine == "dlt":
        import dlt  # noqa: F401 - import time is not the normalizer's work
    started = time.perf_counter()
    counts: dict[str, int] = {}
    for dataset_id in datasets:
        plan, target = plans[dataset_id], out / dataset_id
        if args.engine == "arrow":
            import pyarrow.parquet as pq

            from bridge_downstream.relationalize import relationalize_arrow

            target.mkdir(parents=True, exist_ok=True)
            # The part files as ingest wrote them: the executor reads them as one stream.
            for name, table in relationalize_arrow(plan, paths[dataset_id]).items():
                pq.write_table(table, target / f"{name}.parquet", compression="snappy")
                counts[name] = table.num_rows
        elif args.engine == "spark":
            from bridge_downstream.relationalize import relationalize_spark

            frames = relationalize_spark(session, plan, session.read.text(paths[dataset_id]), persist=True)
            for name, frame in frames.items():
                frame.write.mode("overwrite").parquet(str(target / name))
            session.catalog.clearCache()
            for name in frames:
                counts[name] = sum(
                    __import__("pyarrow.parquet", fromlist=["x"]).read_metadata(p).num_rows
                    for p in (target / name).glob("*.parquet")
                )
        elif args.engine == "duckdb":
            from relationalize_baselines import relationalize_duckdb

            counts.update(relationalize_duckdb(plan, paths[dataset_id], target))
        elif args.engine == "pyarrow":
            from relationalize_baselines import relationalize_pyarrow

            counts.update(relationalize_pyarrow(plan, paths[dataset_id], target))
        elif args.engine == "dlt":
            from relationalize_baselines import normalize_dlt

            counts.update(
                {
                    f"{dataset_id}:{k}": v
                    for k, v in normalize_dlt(dataset_id, paths[dataset_id], target, workers=args.dlt_workers).items()
                }
            )
        else:
            raise SystemExit(f"unknown engine {args.engine}")
    seconds = time.perf_counter() - started
    return {
        "seconds": seconds,
        "records": lines,
        "in_bytes": size,
        "out_rows": sum(counts.values()),
        "detail": {"tables": counts, "spark_start_seconds": start_seconds},
    }


def step_pipeline(args) -> dict:
    """The whole local pipeline in one process, as ``bridge-downstream run`` does it:
    ingest every archive, then publish every dataset it wrote."""
    from bridge_downstream.common.storage import LocalStorage
    from bridge_downstream.config.profiles import load_profile
    from bridge_downstream.config.registry import SchemaRegistry
    from bridge_downstream.ingest.invalid_sink import StorageInvalidSink
    from bridge_downstream.ingest.run import run_ingest
    from bridge_downstream.publish.engines import publish_dataset_with

    registry = SchemaRegistry.load(args.registry)
    profile = load_profile(args.profile)
    inputs, in_bytes = _inputs(Path(args.input))
    shutil.rmtree(args.output, ignore_errors=True)
    output = LocalStorage(args.output)
    started = time.perf_counter()
    report = run_ingest(
        inputs, registry=registry, profile=profile, output=output, sink=StorageInvalidSink(output), workers=args.workers
    )
    ingested = time.perf_counter() - started
    spark_factory = None
    if args.engine == "spark":
        from bridge_downstream.publish.spark_session import local_spark_session

        spark_factory = lambda: local_spark_session(app_name="bench")
    out_rows = 0
    for dataset_id in sorted(report["datasets"]):
        result = publish_dataset_with(
            args.engine,
            spark_factory,
            dataset_id=dataset_id,
            registry=registry,
            profile=profile,
            work=output,
            published=output,
            run_id="bench",
        )
        out_rows += sum(t.rows for t in result.manifest.tables.values())
    seconds = time.perf_counter() - started
    return {
        "seconds": seconds,
        "records": len(inputs),
        "in_bytes": in_bytes,
        "out_rows": out_rows,
        "detail": {"ingest_seconds": ingested, "publish_seconds": seconds - ingested},
    }


def step_spark_start(args) -> dict:
    started = time.perf_counter()
    session, _ = _start_spark()
    session.range(1).count()
    seconds = time.perf_counter() - started
    session.stop()
    return {"seconds": seconds, "records": 0, "in_bytes": 0, "out_rows": 0, "detail": {}}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest="step", required=True)
    ingest = sub.add_parser("ingest")
    ingest.add_argument("--impl", choices=["ours", "original"], default="ours")
    ingest.add_argument("--input", required=True)
    ingest.add_argument("--output", required=True)
    ingest.add_argument("--registry", required=True)
    ingest.add_argument("--profile", default="mtb")
    ingest.add_argument("--workers", type=int, default=None)
    ingest.add_argument(
        "--share",
        help="K/R: only archives K, K+R, K+2R, ... of the listing (a round of bench/run.py's paired comparison)",
    )
    ingest_s3 = sub.add_parser("ingest-s3", help="ingest from and to emulated S3 (needs AWS_ENDPOINT_URL)")
    ingest_s3.add_argument("--impl", choices=["ours", "original"], default="ours")
    ingest_s3.add_argument("--input", required=True, help="s3://bucket/prefix of the archives")
    ingest_s3.add_argument("--output", required=True, help="s3://bucket/prefix of the output (the bucket is created)")
    ingest_s3.add_argument("--queue-url", help="invalid-records SQS queue")
    ingest_s3.add_argument("--registry", required=True, help="local registry directory")
    ingest_s3.add_argument("--profile", default="mtb")
    ingest_s3.add_argument("--workers", type=int, default=None)
    ingest_s3.add_argument(
        "--verify", action="store_true", help="read the output back and check its rows per dataset (untimed)"
    )
    ingest_s3.add_argument(
        "--latency-ms", type=float, default=0, help="added before every AWS request, as S3's own latency (default 0)"
    )
    publish = sub.add_parser("publish")
    publish.add_argument("--engine", choices=["spark", "arrow"], required=True)
    publish.add_argument("--work", required=True)
    publish.add_argument("--published", required=True)
    publish.add_argument("--registry", required=True)
    publish.add_argument("--profile", default="mtb")
    publish.add_argument("--datasets", nargs="*")
    rel = sub.add_parser("relationalize")
    rel.add_argument("--engine", choices=["spark", "arrow", "duckdb", "pyarrow", "dlt"], required=True)
    rel.add_argument("--work", required=True)
    rel.add_argument("--out", required=True)
    rel.add_argument("--registry", required=True)
    rel.add_argument("--profile", default="mtb")
    rel.add_argument("--datasets", nargs="*")
    rel.add_argument("--dlt-workers", type=int, default=1)
    pipeline = sub.add_parser("pipeline")
    pipeline.add_argument("--engine", choices=["spark", "arrow"], default="arrow")
    pipeline.add_argument("--input", required=True)
    pipeline.add_argument("--output", required=True)
    pipeline.add_argument("--registry", required=True)
    pipeline.add_argument("--profile", default="mtb")
    pipeline.add_argument("--workers", type=int, default=None)
    sub.add_parser("spark-start")
    args = parser.parse_args(argv)
    os.environ.setdefault("PYTHONHASHSEED", "0")
    handler = {
        "ingest": step_ingest,
        "ingest-s3": step_ingest_s3,
        "pipeline": step_pipeline,
        "publish": step_publish,
        "relationalize": step_relationalize,
        "spark-start": step_spark_start,
    }[args.step]
    result = handler(args)
    print("BENCH-RESULT " + json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
