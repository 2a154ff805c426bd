"""The wide-document benchmark (docs/benchmarks.md, "A document of 10,000 keys").

One upload whose schemaless document holds ``--keys`` top-level keys is
ingested and published, side by side in one process, by:

* ``arrow``: the Arrow engine;
* ``spark``: the Spark engine as it runs (a dataset this wide and this small is
  published on the driver by the Arrow executor, decision 0027);
* ``spark-on-spark``: the Spark engine made to keep the dataset on Spark
  (its projections then run interpreted, as for any table of 1,000 columns or more);
* ``spark-codegen``: the same with Spark's generated code, as before decision 0027.

Each publish is timed after one warm-up publish of the same engine (Spark's
classes load and compile at the first query). Prints seconds per engine and
size, and each engine's time over the Arrow engine's.

    pipenv run python bench/wide.py --keys 1000,10000
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))

DATASET = "SurveyAnswers_v1"  # answers.json has no schema: its columns come from the data
ENGINES = ("arrow", "spark", "spark-on-spark", "spark-codegen")


def ingested(root: Path, keys: int, registry):
    from bridge_downstream.common.storage import LocalStorage
    from support import ingest_folder, mtb_metadata, write_archive

    document = {f"key{i:05d}": i for i in range(keys)}
    write_archive(root / "in" / "a.zip", {"answers.json": [document]}, mtb_metadata("r", "legacy-survey"))
    report = ingest_folder(root / "in", root / "out", registry)
    assert report["archives"]["processed"] == 1, report["archives"]
    return LocalStorage(root / "out")


@contextmanager
def engine_mode(engine: str):
    """The Spark engine kept on Spark (and, for ``spark-codegen``, compiling its projections)."""
    from bridge_downstream.publish import spark_engine

    saved = spark_engine.DRIVER_PUBLISH_MAX_BYTES, spark_engine.INTERPRETED_PROJECTION_COLUMNS
    if engine in ("spark-on-spark", "spark-codegen"):
        spark_engine.DRIVER_PUBLISH_MAX_BYTES = -1
    if engine == "spark-codegen":
        spark_engine.INTERPRETED_PROJECTION_COLUMNS = sys.maxsize
    try:
        yield
    finally:
        spark_engine.DRIVER_PUBLISH_MAX_BYTES, spark_engine.INTERPRETED_PROJECTION_COLUMNS = saved


def publish_seconds(engine: str, work, registry, spark, run_id: str) -> float:
    from bridge_downstream.config.profiles import load_profile
    from bridge_downstream.publish.arrow_engine import publish_dataset_arrow
    from bridge_downstream.publish.spark_engine import publish_dataset

    arguments = {
        "dataset_id": DATASET,
        "registry": registry,
        "profile": load_profile("mtb"),
        "work": work,
        "published": work,
        "run_id": run_id,
    }
    started = time.perf_counter()
    if engine == "arrow":
        publish_dataset_arrow(**arguments)
    else:
        with engine_mode(engine):
            publish_dataset(spark, **arguments)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--keys", default="1000,10000", help="comma-separated document widths")
    parser.add_argument("--engines", default=",".join(ENGINES), help=f"any of {', '.join(ENGINES)}")
    args = parser.parse_args()
    widths = [int(k) for k in args.keys.split(",")]
    engines = [e for e in args.engines.split(",") if e]

    from bridge_downstream.publish.spark_session import local_spark_session
    from support import build_sample_registry

    root = Path(tempfile.mkdtemp(prefix="bridge-bench-wide-"))
    registry = build_sample_registry(root / "registry")
    spark = local_spark_session(app_name="bench-wide") if any(e != "arrow" for e in engines) else None
    results: dict[tuple[str, int], float] = {}
    for engine in engines:
        publish_seconds(engine, ingested(root / f"warm-{engine}", 200, registry), registry, spark, "warm-up")
        for keys in widths:
            work = ingested(root / f"{engine}-{keys}", keys, registry)
            results[engine, keys] = publish_seconds(engine, work, registry, spark, f"{engine}-{keys}")
            print(f"{engine:15} {keys:>7,} keys  {results[engine, keys]:6.2f} s", flush=True)
    print()
    print(
        "| engine | "
        + " | ".join(f"{k:,} keys s" for k in widths)
        + " | "
        + " | ".join(f"{k:,} / arrow" for k in widths)
        + " |"
    )
    print("|---|" + "---|" * (2 * len(widths)))
    for engine in engines:
        times = [results[engine, k] for k in widths]
        ratios = [results[engine, k] / results["arrow", k] if ("arrow", k) in results else float("nan") for k in widths]
        print(
            f"| {engine} | "
            + " | ".join(f"{t:.2f}" for t in times)
            + " | "
            + " | ".join(f"{r:.1f}" for r in ratios)
            + " |"
        )
    if spark is not None:
        spark.stop()


if __name__ == "__main__":
    main()
