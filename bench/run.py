"""The benchmark: every stage, the whole local pipeline and the baselines, on
the same generated data in one invocation; prints a table and writes JSON.

    pipenv run python bench/run.py                 # the full run (docs/benchmarks.md)
    pipenv run python bench/run.py --quick         # a smoke run at 1k records
    pipenv run python bench/run.py --only-s3       # only ingest against emulated S3 (moto)

Each measured step runs in its own process (``bench/steps.py``); this process
samples the resident memory (RSS) of that process and all its children -- the
JVM and pyspark workers included -- every 20 ms and keeps the peak.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))


def machine() -> dict:
    model = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    memory = 0
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                memory = int(line.split()[1]) * 1024
    except OSError:
        pass
    java = subprocess.run(["java", "-version"], capture_output=True, text=True, check=False).stderr.splitlines()[:1]
    return {
        "nproc": os.cpu_count(),
        "memory_gib": round(memory / 2**30, 1),
        "cpu": model,
        "python": platform.python_version(),
        "java": java[0] if java else None,
        "load_average_at_start": os.getloadavg(),
    }


class TreeMemory:
    """The RSS of a process and its descendants, each address space once,
    sampled many times a second while a step runs.

    The sampler shares the machine with the step it measures, so a sample is
    kept cheap: the descendants come from the kernel's list of each thread's
    children (``psutil.Process.children`` reads every process on the host:
    1.2 ms per sample here, 6% of a core at one sample per 20 ms, taken from
    ours' two workers but not from the original design's one process), and a
    process's psutil handle is kept from one sample to the next.

    The JVM starts helper programs (Hadoop's local file system runs ``chmod``
    for every file and folder Spark writes) with ``posix_spawn``: until the
    helper is loaded, the child shares the JVM's memory and shows the JVM's
    RSS. Such a child -- running the JVM's own executable -- is not counted
    (counted, a sample taken then reads twice the JVM)."""

    def __init__(self, pid: int):
        self.pid = pid
        self._handles: dict[int, Any] = {}
        self._kernel_lists = Path(f"/proc/{pid}/task/{pid}/children").exists()

    def rss(self) -> int:
        import psutil

        handles, self._handles = self._handles, {}
        total = 0
        executables: dict[int, str | None] = {}
        for pid, parent in self._tree():
            try:
                process = self._handles[pid] = handles.get(pid) or psutil.Process(pid)
                executables[pid] = executable = _executable(pid)
                if (
                    parent is not None
                    and executable is not None
                    and executable == executables.get(parent)
                    and os.path.basename(executable) == "java"
                ):
                    continue
                total += process.memory_info().rss
            except psutil.Error:
                pass
        return total

    def _tree(self) -> list[tuple[int, int | None]]:
        """(pid, parent pid) of the process and its descendants, parents first."""
        tree: list[tuple[int, int | None]] = [(self.pid, None)]
        for pid, _ in tree:  # grows while it is walked
            tree.extend((child, pid) for child in self._children(pid))
        return tree

    def _children(self, pid: int) -> list[int]:
        import psutil

        if not self._kernel_lists:  # a kernel built without the lists
            try:
                return [child.pid for child in psutil.Process(pid).children()]
            except psutil.Error:
                return []
        children: list[int] = []
        try:
            for thread in os.listdir(f"/proc/{pid}/task"):
                with open(f"/proc/{pid}/task/{thread}/children", "rb") as listing:
                    children.extend(int(child) for child in listing.read().split())
        except OSError:  # the process or one of its threads ended while read
            pass
        return children


def _executable(pid: int) -> str | None:
    """Read at every sample: psutil's ``exe()`` is remembered by its handle,
    and a handle kept for a pid that a new process took since (the JVM's
    helpers come and go by the thousand) would name the old program -- the
    new one, still sharing the JVM's memory, would be counted."""
    try:
        return os.readlink(f"/proc/{pid}/exe")
    except OSError:
        return None


def fresh_work(work: Path) -> Path | None:
    """Give this invocation an empty work folder without deleting anything yet:
    an earlier invocation's outputs are moved aside (a rename) and removed by
    :func:`remove_stale` once everything is measured. Removing tens of
    thousands of files is work for the file system (ext4 here, mounted with
    ``discard``) that would land in whichever step came next, so no measured
    step follows a removal: every step writes a folder of its own."""
    if not work.exists():
        work.mkdir(parents=True)
        return None
    stale = work.with_name(f"{work.name}.stale-{datetime.now(UTC):%Y%m%dT%H%M%S}")
    work.rename(stale)
    work.mkdir(parents=True)
    for kept in stale.glob("results*.json"):  # each kind of run keeps the others' results
        kept.rename(work / kept.name)
    return stale


def remove_stale(stale: Path | None) -> None:
    import shutil

    if stale is not None:
        shutil.rmtree(stale, ignore_errors=True)


def host_probe() -> float:
    """Seconds this process takes for a fixed loop of Python arithmetic (~0.15
    s when the shared host is quiet): timed before every step, so drift in the
    host's speed shows next to the figures it affects."""
    started = time.perf_counter()
    total = 0
    for number in range(3_000_000):
        total += number * number
    return time.perf_counter() - started


def measure(arguments: list[str], label: str, extra_env: dict[str, str] | None = None) -> dict:
    """Run ``bench/steps.py ARGUMENTS``; its result plus wall time and peak RSS
    of its process tree, and the host probe taken just before."""
    # The previous step's files are written back now, not during this one:
    # the kernel's flusher threads would take CPU from a step that keeps both
    # cores busy (ours) and not from one that uses one (the original design).
    os.sync()
    probe = host_probe()
    command = [sys.executable, str(HERE / "steps.py"), *arguments]
    env = dict(
        os.environ,
        PYTHONPATH=os.pathsep.join([str(ROOT / "src"), os.environ.get("PYTHONPATH", "")]),
        **(extra_env or {}),
    )
    started = time.perf_counter()
    child = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=ROOT)
    peak = 0
    done = threading.Event()

    def sample():
        nonlocal peak
        tree = TreeMemory(child.pid)
        while not done.is_set():
            peak = max(peak, tree.rss())
            done.wait(0.02)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    out, err = child.communicate()
    done.set()
    sampler.join()
    wall = time.perf_counter() - started
    lines = [line for line in out.splitlines() if line.startswith("BENCH-RESULT ")]
    if child.returncode != 0 or not lines:
        print(f"  {label}: FAILED (exit {child.returncode})\n{err[-3000:]}", file=sys.stderr)
        return {
            "label": label,
            "failed": True,
            "error": err[-3000:],
            "wall_seconds": wall,
            "peak_rss_bytes": peak,
            "host_probe_s": probe,
        }
    result = json.loads(lines[-1][len("BENCH-RESULT ") :])
    result.update(label=label, wall_seconds=wall, peak_rss_bytes=peak, host_probe_s=probe)
    _print_result(_with_rates(result))
    return result


def _with_rates(result: dict) -> dict:
    seconds = max(result["seconds"], 1e-9)
    result["records_per_s"] = result["records"] / seconds
    result["mb_per_s"] = result["in_bytes"] / seconds / 1e6
    result["out_rows_per_s"] = result["out_rows"] / seconds
    return result


def _print_result(result: dict) -> None:
    print(
        f"  {result['label']:<44} {result['seconds']:8.2f} s  {result['records_per_s']:10.0f} rec/s  {result['mb_per_s']:7.2f} MB/s  "
        f"{result['out_rows_per_s']:10.0f} rows/s  peak {result['peak_rss_bytes'] / 2**20:7.0f} MiB  probe {result['host_probe_s']:.3f} s",
        flush=True,
    )


def paired_ingest(arguments: list[str], output: Path, label: str, rounds: int) -> tuple[dict, dict]:
    """Ours on all the archives and the original design on one share of them,
    in turn, ``rounds`` times: ours, share 0/R, ours, share 1/R, ...

    This machine's speed drifts (a shared host: the same loop takes from 1x to
    2x its time within a minute). Ours takes seconds and the original a minute,
    so one run of each would compare two moments. Paired, both are sampled
    over the same minute: ours' time is the mean of its rounds, the original's
    the sum of its shares (its cost is per archive; the shares are every R-th
    archive, so every day and assessment). Returns (ours, original), each
    with its rounds; ours also with each round's ratio."""
    ours_runs, original_runs = [], []
    for index in range(rounds):
        tag = f"round {index + 1}/{rounds}"
        # Each run writes a folder of its own (see fresh_work): the last round's
        # "ours" is what the later steps read.
        ours_output = output / ("ours" if index == rounds - 1 else f"ours-round-{index}")
        ours_runs.append(
            measure(["ingest", "--impl", "ours", *arguments, "--output", str(ours_output)], f"{label} ours, {tag}")
        )
        original_runs.append(
            measure(
                [
                    "ingest",
                    "--impl",
                    "original",
                    *arguments,
                    "--output",
                    str(output / f"original-share-{index}"),
                    "--share",
                    f"{index}/{rounds}",
                ],
                f"{label} original, share {index}/{rounds}",
            )
        )
    failed = next((r for r in ours_runs + original_runs if r.get("failed")), None)
    if failed:
        return failed, failed
    ours = dict(ours_runs[-1], label=f"{label} ours, mean of {rounds} rounds", rounds=[r["seconds"] for r in ours_runs])
    ours["seconds"] = sum(ours["rounds"]) / rounds
    ours["wall_seconds"] = sum(r["wall_seconds"] for r in ours_runs) / rounds
    ours["peak_rss_bytes"] = max(r["peak_rss_bytes"] for r in ours_runs)
    ours["host_probe_s"] = max(r["host_probe_s"] for r in ours_runs)
    ours["round_ratios"] = [
        (mine["records"] / mine["seconds"]) / (theirs["records"] / theirs["seconds"])
        for mine, theirs in zip(ours_runs, original_runs, strict=True)
    ]
    original = {
        "label": f"{label} original, {rounds} shares",
        "rounds": [r["seconds"] for r in original_runs],
        "detail": original_runs[-1]["detail"],
    }
    for field in ("seconds", "wall_seconds", "records", "in_bytes", "out_rows"):
        original[field] = sum(r[field] for r in original_runs)
    original["peak_rss_bytes"] = max(r["peak_rss_bytes"] for r in original_runs)
    original["host_probe_s"] = max(r["host_probe_s"] for r in original_runs)
    for result in (_with_rates(ours), _with_rates(original)):
        _print_result(result)
    low, high = min(ours["round_ratios"]), max(ours["round_ratios"])
    print(f"  {'':<44} ratio {ratio(original, ours):.2f}x (rounds {low:.2f}x-{high:.2f}x)", flush=True)
    return ours, original


def ensure_data(data_root: Path, records: int, export_rows: int, args, flavor: str = "sample") -> Path:
    from generate import generate

    folder = data_root / (f"{records}" if flavor == "sample" else f"{flavor}-{records}")
    marker = folder / "generated.json"
    wanted = {
        "records": records,
        "export_rows": export_rows,
        "seed": args.seed,
        "motion": args.motion,
        "steps": args.steps,
        "per_day": 100,
        "flavor": flavor,
    }
    if marker.is_file():
        have = json.loads(marker.read_text())
        if all(have.get(k) == v for k, v in wanted.items()):
            read_into_page_cache(folder)
            return folder
    import shutil

    shutil.rmtree(folder, ignore_errors=True)
    began = time.perf_counter()
    generate(
        folder,
        records=records,
        export_rows=export_rows,
        seed=args.seed,
        motion=args.motion,
        steps=args.steps,
        per_day=100,
        flavor=flavor,
    )
    print(
        f"  generated {records} records ({export_rows} export rows) in {time.perf_counter() - began:.0f} s -> {folder}",
        flush=True,
    )
    read_into_page_cache(folder)
    return folder


def read_into_page_cache(folder: Path) -> tuple[int, int]:
    """Read every file under ``folder`` once, untimed, so the steps read their
    input from memory whatever its size. Data generated in an earlier
    invocation may have left the page cache: the 100k ingest read 30.2 s
    from disk and 21.7 s from memory, while the 10k comparison's rounds read
    a folder its first round had just read. Returns (files, bytes)."""
    began = time.perf_counter()
    files = size = 0
    for directory, _, names in os.walk(folder):
        for name in names:
            with open(os.path.join(directory, name), "rb") as stream:
                while chunk := stream.read(1 << 20):
                    size += len(chunk)
            files += 1
    print(
        f"  read {files} files ({size / 1e6:.0f} MB) of {folder.name} into the page cache in {time.perf_counter() - began:.1f} s",
        flush=True,
    )
    return files, size


def build_registry(work: Path) -> Path:
    from bridge_downstream.config.registry import build_registry as build

    source = ROOT / "samples" / "registry-src"
    out = work / "registry"
    build(
        archive_map=source / "archive-map.json",
        schema_dirs=[source / "schemas"],
        schema_mapping=source / "schema-mapping.json",
        dataset_mapping=source / "dataset-mapping.json",
        pipeline_rules=source / "pipeline-rules.json",
        out=out,
    )
    return out


# Emulated-S3 comparison sizes: the original design takes ~0.15 s per sample-schema
# upload and ~0.6 s per real-schema upload there (2 cores), ~90 s each.
S3_RECORDS = 600
S3_REAL = 120

TASKDATA_URL = "https://raw.githubusercontent.com/MobileToolbox/MobileToolboxSchemas/0.9.8/OldCombinedSchema/taskData_combinedSchema.json"
GRADUAL_ONSET_URL = (
    "https://raw.githubusercontent.com/MobileToolbox/MTBfx/9f7ab73ae52127d46ef417ae807286fcd4bb9d0c/"
    "JSONschema/2022_12_01_taskData_GradualOnset_Schema.json"
)


def build_real_registry(work: Path, shared: Path) -> Path:
    """The real registry (as tests/support.py builds it): mobile-client-json and the MTB task-data schemas."""
    from bridge_downstream.config.registry import build_registry as build

    rules = work / "real-rules.json"
    rules.write_text(json.dumps({"file_aliases": {"microphone.json": "microphone_levels.json"}}))
    out = work / "real-registry"
    build(
        archive_map=shared / "mobile-client-json" / "archive-map.json",
        schema_dirs=[shared / "mobile-client-json" / "schemas"],
        schema_mapping=shared / "bridge-downstream-config" / "schema_mapping.json",
        dataset_mapping=shared / "bridge-downstream-config" / "dataset_mapping.json",
        aliases={
            TASKDATA_URL: shared / "mtb-taskdata" / "archiveSchemas" / "taskData_combinedSchema.json",
            GRADUAL_ONSET_URL: shared / "mtb-taskdata" / "pinned" / "2022_12_01_taskData_GradualOnset_Schema.json",
        },
        pipeline_rules=rules,
        out=out,
    )
    return out


def s3_comparison(args, data: Path, work: Path, registry: str, real_registry: str | None, results: dict) -> None:
    """Ingest from and to emulated S3, ours and the original design, on one moto
    server (a process of its own: its memory is in neither side's peak). The
    archives and their Bridge metadata (as object metadata) are uploaded to a
    source bucket first (not timed); each side writes to its own new bucket and
    sends invalid records to its own SQS queue on the same server."""
    import moto
    from s3_emulation import MotoServer, aws_environment, create_queue, upload_archives

    c = results["compare"]
    runs = [("ingest_s3", "sample", args.s3_records, registry, 0.0)]
    if args.s3_latency_ms:
        runs.append(("ingest_s3_latency", "sample", args.s3_records, registry, args.s3_latency_ms))
    if args.s3_real and real_registry:
        runs.append(("ingest_real_s3", "real", args.s3_real, real_registry, 0.0))
    info = results["s3_emulation"] = {
        "server": f"moto {moto.__version__} server (ThreadedMotoServer in its own process, bench/s3_emulation.py) on 127.0.0.1",
        "counted_in_peak_rss": False,
        "records": {key: n for key, _, n, _, _ in runs},
        "latency_ms": {key: latency for key, _, _, _, latency in runs},
        "runs": {},
    }
    with MotoServer(work / "moto-server.log") as server:
        env = aws_environment(server.endpoint)
        info["endpoint"] = server.endpoint
        print(
            f"ingest from and to emulated S3 ({server.endpoint}, moto server pid {server.process.pid}, not in the peaks):",
            flush=True,
        )
        uploaded: dict[tuple[str, int], tuple[int, int]] = {}
        for key, flavor, n, reg, latency in runs:
            folder = ensure_data(data, n, 0, args, flavor=flavor)
            bucket = f"bridge-raw-{flavor}-{n}"
            if (flavor, n) not in uploaded:
                began = time.perf_counter()
                uploaded[(flavor, n)] = upload_archives(server.endpoint, folder / "archives", bucket, "archives")
                print(
                    f"  uploaded {uploaded[(flavor, n)][0]} archives ({uploaded[(flavor, n)][1] / 1e6:.1f} MB) with their metadata to s3://{bucket}/archives in {time.perf_counter() - began:.1f} s (not timed)",
                    flush=True,
                )
            count, size = uploaded[(flavor, n)]
            tag = f"{flavor}-{n}-{int(latency)}ms"
            for impl, suffix in (("ours", ""), ("original", "_original")):
                queue = create_queue(server.endpoint, f"invalid-{tag}-{impl}")
                cpu = server.cpu_seconds()
                arguments = [
                    "ingest-s3",
                    "--impl",
                    impl,
                    "--input",
                    f"s3://{bucket}/archives",
                    "--output",
                    f"s3://out-{tag}-{impl}/bridge",
                    "--queue-url",
                    queue,
                    "--registry",
                    reg,
                ]
                if latency:
                    arguments += ["--latency-ms", str(latency)]
                if args.s3_verify:
                    arguments.append("--verify")
                what = "uploads" if flavor == "sample" else "real-schema uploads"
                name = "ours" if impl == "ours" else "original design"
                delay = f", {latency:g} ms per request" if latency else ""
                result = c[key + suffix] = measure(
                    arguments, f"ingest {name}, emulated S3{delay}, {n} {what}", extra_env=env
                )
                result["emulator_cpu_seconds"] = server.cpu_seconds() - cpu
                if not result.get("failed"):
                    detail = result["detail"]
                    print(
                        f"    rows per dataset {json.dumps(detail['rows'], sort_keys=True)}; {detail['ndjson_objects_written']} NDJSON objects, "
                        f"{detail['invalid_queue_messages']} invalid-queue messages; emulator CPU {result['emulator_cpu_seconds']:.1f} s",
                        flush=True,
                    )
            ours, original = c.get(key), c.get(key + "_original")
            same = (
                None
                if not ours or not original or ours.get("failed") or original.get("failed")
                else ours["detail"]["rows"] == original["detail"]["rows"]
            )
            info["runs"][key] = {"archives": count, "archive_bytes": size, "rows_identical": same}
            print(f"    rows per dataset identical (ours vs original): {same}", flush=True)
        info["server_peak_rss_bytes"] = server.peak_rss
    print(
        f"  moto server stopped (peak RSS {info['server_peak_rss_bytes'] / 2**20:.0f} MiB, in neither side's peak)",
        flush=True,
    )


def human(n: float) -> str:
    return f"{n / 1000:.0f}k" if n >= 1000 and n % 1000 == 0 else str(int(n))


def ratio(a, b) -> float | None:
    if not a or not b or a.get("failed") or b.get("failed"):
        return None
    return a["seconds"] / b["seconds"]


def render(results: dict) -> str:
    """The Markdown tables of docs/benchmarks.md."""
    out = []
    n = results["compare_records"]
    c = results["compare"]
    if "ingest" in c:
        out.append(f"### Stages and baselines at {human(n)} records (same data, same run)\n")
    elif c:  # --only-s3
        out.append("### Ingest from and to emulated S3 (same data for both sides, same run)\n")
    if c:
        out.append("| step | implementation | time s | records/s | MB/s in | output rows/s | peak RSS MiB | ratio |")
        out.append("|---|---|---:|---:|---:|---:|---:|---|")

    def row(key, step, impl, note=""):
        r = c.get(key)
        if not r:
            return
        if r.get("failed"):
            out.append(f"| {step} | {impl} | failed | | | | | {note} |")
            return
        out.append(
            f"| {step} | {impl} | {r['seconds']:.2f} | {r['records_per_s']:,.0f} | {r['mb_per_s']:.2f} | {r['out_rows_per_s']:,.0f} | "
            f"{r['peak_rss_bytes'] / 2**20:,.0f} | {note} |"
        )

    fmt = lambda x, suffix="": "n/a" if x is None else f"{x:.2f}{suffix}"

    def rounds(key: str) -> str:
        ratios = (c.get(key) or {}).get("round_ratios")
        return f" (rounds {min(ratios):.1f}x-{max(ratios):.1f}x)" if ratios else ""

    def paired(key: str) -> str:
        runs = (c.get(key) or {}).get("rounds")
        return f"; {len(runs)} paired rounds" if runs else ""

    speedup = ratio(c.get("ingest_original"), c.get("ingest"))
    row(
        "ingest",
        "ingest (MTB archives)",
        f"ours: parallel, compiled validation, batched part files{paired('ingest')}",
        f"**{fmt(speedup, 'x')} the original's records/s**{rounds('ingest')}",
    )
    row(
        "ingest_original",
        "ingest (MTB archives)",
        f"original design: serial, ZIP opened per file and step, one object per record and file{paired('ingest_original')}",
        "baseline",
    )
    real_speedup = ratio(c.get("ingest_real_original"), c.get("ingest_real"))
    row(
        "ingest_real",
        "ingest (real-schema MTB uploads)",
        f"ours{paired('ingest_real')}",
        f"**{fmt(real_speedup, 'x')} the original's records/s**{rounds('ingest_real')}",
    )
    row(
        "ingest_real_original",
        "ingest (real-schema MTB uploads)",
        f"original design{paired('ingest_real_original')}",
        "baseline",
    )
    s3 = results.get("s3_emulation") or {}
    latency = (s3.get("latency_ms") or {}).get("ingest_s3_latency") or 0
    for key, step, what in (
        ("ingest_s3", "ingest (MTB archives, emulated S3)", "uploads"),
        ("ingest_s3_latency", f"ingest (MTB archives, emulated S3 + {latency:g} ms per request)", "uploads"),
        ("ingest_real_s3", "ingest (real-schema MTB uploads, emulated S3)", "real-schema uploads"),
    ):
        if key not in c:
            continue
        count = human(s3.get("records", {}).get(key, c[key].get("records", 0)))
        s3_speedup = ratio(c.get(key + "_original"), c.get(key))
        row(
            key,
            step,
            f"ours: S3 in and out, parallel workers, archives read ahead, batched part files ({count} {what})",
            f"**{fmt(s3_speedup, 'x')} the original's records/s**",
        )
        row(
            key + "_original",
            step,
            f"original design on S3: serial, a new S3 client per archive and per written file, one GET per archive, ZIP opened 3x in memory, "
            f"a new validator per file, a temp file and one PUT per record and file ({count} {what})",
            "baseline",
        )
    row("ingest_recover", "ingest (recover exports)", "ours", "records = export rows")
    for engine, impl in (
        ("arrow", "ours: Arrow executor"),
        ("spark", "ours: Spark executor"),
        ("duckdb", "DuckDB read_json + unnest"),
        ("pyarrow", "pyarrow list_flatten + list_parent_indices"),
        ("dlt", "dlt normalizer (extract + normalize)"),
    ):
        key = f"relationalize_{engine}"
        note = ""
        if engine != "arrow":
            note = f"{fmt(ratio(c.get(key), c.get('relationalize_arrow')), 'x')} Arrow executor's time"
        if engine == "dlt":
            note += f"; {fmt(ratio(c.get(key), c.get('relationalize_spark')), 'x')} Spark executor's time"
        if engine == "duckdb":
            note = f"Arrow executor takes {fmt(ratio(c.get('relationalize_arrow'), c.get(key)), 'x')} DuckDB's time"
        row(key, "relationalize (NDJSON -> tables -> Parquet)", impl, note)
    row(
        "publish_arrow",
        "publish (dedup, relationalize, Parquet + CSV, manifest)",
        "ours: Arrow engine (local default)",
        "",
    )
    row(
        "publish_spark",
        "publish (dedup, relationalize, Parquet + CSV, manifest)",
        "ours: Spark engine (as on Glue)",
        f"{fmt(ratio(c.get('publish_spark'), c.get('publish_arrow')), 'x')} Arrow engine's time; + Spark start below",
    )
    row("pipeline_arrow", "whole local pipeline (ingest + publish)", "ours: `run` with the Arrow engine", "")
    start = c.get("spark_start")
    if start and not start.get("failed"):
        out.append(
            f"| Spark session start | local[{results['machine']['nproc']}] | {start['seconds']:.2f} | | | | {start['peak_rss_bytes'] / 2**20:,.0f} | not in the times above |"
        )
    if s3:
        parts = []
        for key in ("ingest_s3", "ingest_s3_latency", "ingest_real_s3"):
            ours, original = c.get(key) or {}, c.get(key + "_original") or {}
            if ours.get("emulator_cpu_seconds") is not None and original.get("emulator_cpu_seconds") is not None:
                same = (s3.get("runs", {}).get(key) or {}).get("rows_identical")
                parts.append(
                    f"{key}: the emulator used {ours['emulator_cpu_seconds']:.1f} s CPU serving ours and {original['emulator_cpu_seconds']:.1f} s serving the original; "
                    f"rows per dataset identical: {'yes' if same else 'NO' if same is False else 'n/a'}"
                )
        out.append("")
        out.append(
            f"Emulated S3: one {s3.get('server', 'moto server')} shared by both sides (also the SQS invalid queues), on the same "
            f"{results['machine']['nproc']} cores; its memory (peak {s3.get('server_peak_rss_bytes', 0) / 2**20:,.0f} MiB) is in neither side's peak RSS. "
            + "; ".join(parts)
            + "."
        )
    probes = [
        r["host_probe_s"]
        for r in [*c.values(), *(x for size in results["scale"].values() for x in size.values())]
        if r.get("host_probe_s")
    ]
    if probes:
        out.append("")
        out.append(
            f"Host probe (bench/run.py `host_probe`, a fixed Python loop timed before each step; ~0.15 s when the shared host is quiet): "
            f"{min(probes):.3f}-{max(probes):.3f} s over this run's steps."
        )
    if not results["scale"]:
        return "\n".join(out) + "\n"
    out.append("")
    out.append("### Scale curve (time and peak memory per stage)\n")
    sizes = results["sizes"]
    out.append(
        "| stage | "
        + " | ".join(f"{human(s)} s | {human(s)} MiB" for s in sizes)
        + " | time per record, largest / 10k | memory, largest / 10k |"
    )
    out.append("|---|" + "---:|---:|" * len(sizes) + "---:|---:|")
    for key, label in (
        ("ingest", "ingest (ours)"),
        ("publish_arrow", "publish, Arrow engine"),
        ("publish_spark", "publish, Spark engine"),
    ):
        cells, by_size = [], {}
        for size in sizes:
            r = results["scale"].get(str(size), {}).get(key)
            if r and not r.get("failed"):
                cells.append(f"{r['seconds']:.1f} | {r['peak_rss_bytes'] / 2**20:,.0f}")
                by_size[size] = r
            else:
                cells.append("not run | " if not r else "failed | ")
        largest = max(by_size) if by_size else None
        per_record = memory = "n/a"
        if largest and 10000 in by_size and largest != 10000:
            a, b = by_size[largest], by_size[10000]
            per_record = f"{(a['seconds'] / a['records']) / (b['seconds'] / b['records']):.2f}"
            memory = f"{a['peak_rss_bytes'] / b['peak_rss_bytes']:.2f}"
        out.append(f"| {label} | " + " | ".join(cells) + f" | {per_record} | {memory} |")
    return "\n".join(out) + "\n"


def local_benchmark(
    args, data: Path, work: Path, registry: str, real_registry: str | None, results: dict, sizes: list[int]
) -> None:
    """Every step on local disk: the comparison at ``--compare`` records (and
    the emulated-S3 ingest comparison, unless ``--no-s3``), then the scale curve."""
    n = args.compare
    folder = ensure_data(data, n, n * args.export_factor, args)
    w = work / str(n)
    c = results["compare"]
    print(f"comparison at {n} records:", flush=True)
    common = ["--registry", registry]
    c["ingest"], c["ingest_original"] = paired_ingest(
        ["--input", str(folder / "archives"), *common], w, f"ingest {n}", args.rounds
    )
    if real_registry:
        real = ensure_data(data, args.real, 0, args, flavor="real")
        c["ingest_real"], c["ingest_real_original"] = paired_ingest(
            ["--input", str(real / "archives"), "--registry", real_registry],
            w / "real",
            f"ingest real-schema {args.real}",
            args.rounds,
        )
    if not args.no_s3:
        s3_comparison(args, data, work, registry, real_registry, results)
    c["ingest_recover"] = measure(
        [
            "ingest",
            "--impl",
            "ours",
            "--profile",
            "recover",
            "--input",
            str(folder / "exports"),
            "--output",
            str(w / "recover"),
            *common,
        ],
        f"ingest recover exports {n * args.export_factor} rows",
    )
    c["spark_start"] = measure(["spark-start"], "spark session start")
    for engine in ("arrow", "spark", "duckdb", "pyarrow", "dlt"):
        c[f"relationalize_{engine}"] = measure(
            [
                "relationalize",
                "--engine",
                engine,
                "--work",
                str(w / "ours"),
                "--out",
                str(w / f"rel-{engine}"),
                *common,
            ],
            f"relationalize {engine}",
        )
    for engine in ("arrow", "spark"):
        c[f"publish_{engine}"] = measure(
            [
                "publish",
                "--engine",
                engine,
                "--work",
                str(w / "ours"),
                "--published",
                str(w / f"pub-{engine}"),
                *common,
            ],
            f"publish {engine}",
        )
    c["pipeline_arrow"] = measure(
        [
            "pipeline",
            "--engine",
            "arrow",
            "--input",
            str(folder / "archives"),
            "--output",
            str(w / "pipeline"),
            *common,
        ],
        "whole pipeline arrow",
    )
    results["scale"][str(n)] = {k: c[k] for k in ("ingest", "publish_arrow", "publish_spark")}
    scale_curve(args, data, work, registry, results, [size for size in sizes if size != n])


def scale_curve(args, data: Path, work: Path, registry: str, results: dict, sizes: list[int]) -> None:
    """Ingest and publish (Arrow at every size, Spark up to ``--spark-max``) at each size."""
    common = ["--registry", registry]
    for size in sizes:
        print(f"scale curve at {size} records:", flush=True)
        folder = ensure_data(data, size, 0, args)
        w = work / str(size)
        entry = results["scale"][str(size)] = {}
        entry["ingest"] = measure(
            ["ingest", "--impl", "ours", "--input", str(folder / "archives"), "--output", str(w / "ours"), *common],
            f"ingest ours {size}",
        )
        entry["publish_arrow"] = measure(
            ["publish", "--engine", "arrow", "--work", str(w / "ours"), "--published", str(w / "pub-arrow"), *common],
            f"publish arrow {size}",
        )
        if size <= args.spark_max:
            entry["publish_spark"] = measure(
                [
                    "publish",
                    "--engine",
                    "spark",
                    "--work",
                    str(w / "ours"),
                    "--published",
                    str(w / "pub-spark"),
                    *common,
                ],
                f"publish spark {size}",
            )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--sizes", default="1000,10000,100000", help="records for the scale curve (default 1000,10000,100000)"
    )
    parser.add_argument(
        "--compare", type=int, default=10000, help="records for the side-by-side comparison (default 10000)"
    )
    parser.add_argument(
        "--spark-max", type=int, default=10000, help="largest size the Spark publish runs at (default 10000)"
    )
    parser.add_argument(
        "--export-factor", type=int, default=10, help="recover export rows per record at the comparison size"
    )
    parser.add_argument(
        "--real", type=int, default=500, help="real-schema uploads for the second ingest comparison (default 500)"
    )
    parser.add_argument("--no-real", action="store_true", help="skip the real-schema ingest comparison")
    parser.add_argument(
        "--rounds",
        type=int,
        default=5,
        help="rounds of the paired local ingest comparisons (default 5; see paired_ingest)",
    )
    parser.add_argument(
        "--s3-records",
        type=int,
        default=S3_RECORDS,
        help=f"uploads for the emulated-S3 ingest comparison (default {S3_RECORDS})",
    )
    parser.add_argument(
        "--s3-real",
        type=int,
        default=S3_REAL,
        help=f"real-schema uploads for the emulated-S3 ingest comparison (default {S3_REAL}; 0 skips)",
    )
    parser.add_argument(
        "--s3-verify",
        action="store_true",
        help="read each side's S3 output back and check its rows per dataset (untimed)",
    )
    parser.add_argument(
        "--s3-latency-ms",
        type=float,
        default=20,
        help="also run the sample comparison with this latency added to every AWS request (default 20; 0 skips)",
    )
    parser.add_argument("--no-s3", action="store_true", help="skip the emulated-S3 ingest comparison")
    parser.add_argument("--only-s3", action="store_true", help="run only the emulated-S3 ingest comparison")
    parser.add_argument(
        "--only-scale", action="store_true", help="run only the scale curve, at --sizes (no comparison)"
    )
    parser.add_argument("--motion", type=int, default=25)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--data", default="/tmp/bridge-bench/data", help="generated data (kept between runs)")
    parser.add_argument("--work", default="/tmp/bridge-bench/work", help="outputs of the measured steps")
    parser.add_argument("--json", dest="json_path", help="write the results here (default WORK/results.json)")
    parser.add_argument("--markdown", help="also write the Markdown tables here")
    parser.add_argument("--quick", action="store_true", help="smoke run: 1k records, comparison at 1k")
    args = parser.parse_args(argv)
    if args.quick:
        args.sizes, args.compare, args.spark_max, args.real, args.rounds = "1000", 1000, 1000, 100, 2
        args.s3_records, args.s3_real = min(args.s3_records, 100), min(args.s3_real, 20)
    sizes = sorted({int(s) for s in args.sizes.split(",") if s} | (set() if args.only_scale else {args.compare}))
    work, data = Path(args.work), Path(args.data)
    stale = fresh_work(work)
    began = time.perf_counter()
    results = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "command": " ".join(["pipenv run python bench/run.py", *(argv if argv is not None else sys.argv[1:])]),
        "machine": machine(),
        "settings": {
            "motion": args.motion,
            "steps": args.steps,
            "seed": args.seed,
            "per_day": 100,
            "export_factor": args.export_factor,
        },
        "compare_records": args.compare,
        "sizes": sizes,
        "compare": {},
        "scale": {},
    }
    print(f"machine: {results['machine']}", flush=True)
    registry = str(build_registry(work))
    real_registry = None
    if not args.no_real:
        from generate import shared_data_dir

        shared = shared_data_dir()
        if (shared / "mtb-taskdata").is_dir():
            real_registry = str(build_real_registry(work, shared))
        else:
            print(f"  (no real data at {shared}: real-schema ingest comparisons skipped)")
    if args.only_s3:
        s3_comparison(args, data, work, registry, real_registry, results)
    elif args.only_scale:
        scale_curve(args, data, work, registry, results, sizes)
    else:
        local_benchmark(args, data, work, registry, real_registry, results, sizes)
    results["total_seconds"] = time.perf_counter() - began
    results["machine"]["load_average_at_end"] = os.getloadavg()
    name = "results-s3.json" if args.only_s3 else "results-scale.json" if args.only_scale else "results.json"
    path = Path(args.json_path) if args.json_path else work / name
    path.write_text(json.dumps(results, indent=2))
    table = render(results)
    if args.markdown:
        Path(args.markdown).write_text(table)
    print()
    print(table)
    print(f"results: {path}   ({results['total_seconds'] / 60:.1f} min)")
    remove_stale(stale)  # after every measurement (see fresh_work)
    return 0


if __name__ == "__main__":
    sys.exit(main())
