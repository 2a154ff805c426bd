"""Seeded benchmark data: MTB-like upload archives and recover-like NDJSON exports.

The archives follow the bundled samples' registry (``samples/registry-src``):
``metadata.json``, ``taskData.json`` (nested: steps, each with interactions),
``motion.json`` (an array of ``--motion`` samples) and ``info.json``; a few
per cent are re-exports of an earlier record (exercises dedup), Android
uploads whose motion file is ``motion_data.json`` without ``stepPath``
(alias + accepted deviation), and invalid records (a string responseTime).
A *record* is one upload archive. Exports: one ZIP of NDJSON files per
``--export-rows`` rows, FitbitIntradayCombined-, FitbitSleepLogs- and
HealthKitV2Samples-like, all values strings as in real recover data.

    pipenv run python bench/generate.py --records 10000 --out /tmp/bench-data/10k

Output is a function of the arguments only (same seed, same bytes).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import zipfile
from concurrent.futures import ProcessPoolExecutor
from datetime import date as Date
from datetime import timedelta
from pathlib import Path

STAMP = (2024, 3, 1, 12, 0, 0)
FIRST_DAY = Date(2022, 1, 1)
SENSORS = ("accelerometer", "gyro", "magnetometer")
CONTROL_EVENTS = ("tap", "swipe", "longPress", "hold")
ASSESSMENTS = (("number-match", 1), ("number-match", 3), ("flanker", 2))


def _zip_bytes(path: Path, members: dict[str, bytes]) -> int:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED, compresslevel=6) as archive:
        for name, content in members.items():
            info = zipfile.ZipInfo(name, STAMP)
            info.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(info, content)
    return path.stat().st_size


def _dumps(value) -> bytes:
    return json.dumps(value, separators=(",", ":")).encode()


def upload(
    index: int, seed: int, motion_samples: int, steps: int, per_day: int = 100
) -> tuple[str, dict[str, bytes], dict[str, str]]:
    """One archive: (file name, members, Bridge S3 metadata)."""
    rng = random.Random(seed * 1_000_003 + index)
    kind = rng.random()
    reexport = index > 10 and kind < 0.02
    original = rng.randrange(0, index) if reexport else index
    record_id = f"bench-{seed}-{original:07d}"
    assessment, revision = ASSESSMENTS[original % len(ASSESSMENTS)]
    android = 0.02 <= kind < 0.07
    invalid = 0.07 <= kind < 0.08
    date = FIRST_DAY + timedelta(days=original // per_day)  # ~per_day uploads a day, for years
    year, month, day = date.year, date.month, date.day
    uploaded = f"{year}-{month:02d}-{day:02d}T{original % 24:02d}:{original % 60:02d}:00.000Z"
    start = f"{year}-{month:02d}-{day:02d}T09:00:00.000-08:00"
    task = {
        "taskIdentifier": assessment,
        "taskRunUUID": f"{record_id}-{rng.getrandbits(32):08x}",
        "startDate": start,
        "endDate": f"{year}-{month:02d}-{day:02d}T09:04:00.000-08:00",
        "scores": {"rawScore": rng.randrange(0, 40), "theta": round(rng.uniform(-3, 3), 4)},
        "steps": [
            {
                "identifier": f"item-{i}",
                "response": str(rng.randrange(10)),
                "responseTime": "fast" if invalid and i == 0 else round(rng.uniform(0.2, 9.0), 3),
                "interactions": [
                    {
                        "controlEvent": rng.choice(CONTROL_EVENTS),
                        "timestamp": f"{year}-{month:02d}-{day:02d}T09:{i % 60:02d}:{j % 60:02d}Z",
                    }
                    for j in range(rng.randrange(0, 4))
                ],
            }
            for i in range(steps)
        ],
    }
    if revision == 3:
        task["locale"] = rng.choice(("en_US", "es_US", "fr_CA"))
    motion = []
    for i in range(motion_samples):
        sample = {
            "timestamp": round(i * 0.01, 2),
            "sensorType": SENSORS[i % 3],
            "x": round(rng.gauss(0, 1), 6),
            "y": round(rng.gauss(0, 1), 6),
            "z": round(rng.gauss(0.98, 0.05), 6),
        }
        if not android:
            sample["stepPath"] = f"{assessment}/step-{i * steps // max(1, motion_samples)}"
        motion.append(sample)
    members = {
        "metadata.json": _dumps(
            {
                "appName": "SampleApp",
                "appVersion": "2.1.0",
                "taskIdentifier": assessment,
                "startDate": start,
                "endDate": task["endDate"],
                "files": [
                    {"filename": "taskData.json", "contentType": "application/json"},
                    {"filename": "motion.json", "contentType": "application/json"},
                ],
            }
        ),
        "taskData.json": _dumps(task),
        ("motion_data.json" if android else "motion.json"): _dumps(motion),
        "info.json": _dumps({"format": "v2_generic", "dataFilename": "taskData.json"}),
    }
    metadata = {
        "recordid": record_id,
        "assessmentid": assessment,
        "assessmentrevision": str(revision),
        "uploadedon": uploaded,
        "appid": "sample-app",
        "clientinfo": f"ClientInfo [appName=SampleApp, appVersion=21, osName={'Android' if android else 'iOS'}]",
    }
    if reexport:
        metadata["exportedon"] = f"2026-01-{1 + index % 28:02d}T00:00:00.000Z"
    name = f"{index:07d}-{record_id}{'-reexport' if reexport else ''}.zip"
    return name, members, metadata


# -- real-schema flavor ----------------------------------------------------------

SPELLING_ARCHIVE = "bridge-archives/OCJByUtSrVTYtqObYp7XZV_J-mtbSpelling.zip"
EXPECTED_OUTCOMES = Path(__file__).resolve().parents[1] / "tests" / "data" / "mtb_taskdata_expected_outcomes.json"
_REAL: dict = {}


def shared_data_dir() -> Path:
    return Path(
        os.environ.get("BRIDGE_DOWNSTREAM_SHARED_DATA", Path(__file__).resolve().parents[2] / "shared" / "data")
    )


def _real_templates(shared: Path) -> dict:
    """The real Spelling upload's members and the real taskData documents (valid and failing)."""
    if not _REAL:
        with zipfile.ZipFile(shared / SPELLING_ARCHIVE) as archive:
            _REAL["members"] = {name: archive.read(name) for name in archive.namelist()}
        outcomes = json.loads(EXPECTED_OUTCOMES.read_text())
        root = shared / "mtb-taskdata"
        _REAL["valid"] = [(root / name).read_bytes() for name, o in sorted(outcomes.items()) if o["valid"]]
        _REAL["failing"] = [(root / name).read_bytes() for name, o in sorted(outcomes.items()) if not o["valid"]]
    return _REAL


def real_upload(
    index: int, seed: int, motion_samples: int, per_day: int, shared: Path, failing_every: int = 100
) -> tuple[str, dict[str, bytes], dict[str, str]]:
    """An upload shaped like the real MTB Spelling upload, validated by the real
    schemas: its taskData.json is one of the real task-data documents (1 in ``failing_every``
    one that fails its schema), motion.json has ``motion_samples`` samples."""
    templates = _real_templates(shared)
    rng = random.Random(seed * 1_000_033 + index)
    kind = rng.random()
    reexport = index > 10 and kind < 0.02
    original = rng.randrange(0, index) if reexport else index
    record_id = f"real-{seed}-{original:07d}"
    date = FIRST_DAY + timedelta(days=original // per_day)
    pool = (
        templates["failing"] if failing_every and original % failing_every == failing_every - 1 else templates["valid"]
    )
    task = json.loads(pool[original % len(pool)])
    if isinstance(task, dict) and "taskRunUUID" in task:
        task["taskRunUUID"] = f"{rng.getrandbits(128):032x}"
    motion = [
        {
            "stepPath": "MTB Spelling Form 1",
            "timestamp": 0,
            "timestampDate": f"{date.isoformat()}T13:02:48.724-07:00",
            "uptime": 557787.22,
        }
    ]
    for i in range(1, motion_samples):
        motion.append(
            {
                "uptime": 557787.22 + i * 0.01,
                "timestamp": round(i * 0.01, 6),
                "stepPath": "MTB Spelling Form 1",
                "sensorType": SENSORS[i % 2],
                "x": round(rng.gauss(0, 0.01), 9),
                "y": round(rng.gauss(0, 0.01), 9),
                "z": round(rng.gauss(-0.98, 0.01), 9),
            }
        )
    members = dict(templates["members"])
    members["taskData.json"] = _dumps(task)
    members["motion.json"] = _dumps(motion)
    metadata = {
        "recordid": record_id,
        "assessmentid": "spelling",
        "assessmentrevision": "5",
        "uploadedon": f"{date.isoformat()}T{original % 24:02d}:{original % 60:02d}:15.890Z",
        "clientinfo": "ClientInfo [appName=MobileToolboxApp, appVersion=73, deviceName=iPhone 7 Plus, osName=iPhone OS, osVersion=15.1, sdkName=BridgeClientKMM, sdkVersion=0]",
    }
    if reexport:
        metadata["exportedon"] = f"2026-01-{1 + index % 28:02d}T00:00:00.000Z"
    return f"{index:07d}-{record_id}{'-reexport' if reexport else ''}.zip", members, metadata


def _write_slice(
    out: str,
    start: int,
    stop: int,
    seed: int,
    motion_samples: int,
    steps: int,
    per_folder: int,
    per_day: int,
    flavor: str = "sample",
) -> tuple[int, int]:
    total = 0
    for index in range(start, stop):
        if flavor == "real":
            name, members, metadata = real_upload(index, seed, motion_samples, per_day, shared_data_dir())
        else:
            name, members, metadata = upload(index, seed, motion_samples, steps, per_day)
        folder = Path(out) / "archives" / f"{index // per_folder:04d}"
        folder.mkdir(parents=True, exist_ok=True)
        total += _zip_bytes(folder / name, members)
        (folder / f"{name}.metadata.json").write_text(json.dumps(metadata))
    return stop - start, total


def export(seed: int, rows: int, start_row: int, number: int) -> tuple[str, dict[str, bytes]]:
    """One recover-like export ZIP with ``rows`` data rows over three data types."""
    rng = random.Random(seed * 7919 + number)
    participants = [f"RX-{p:05d}" for p in range(max(1, rows // 200))]
    intraday, sleep, steps = [], [], []
    for i in range(start_row, start_row + rows):
        participant = participants[i % len(participants)]
        which = i % 10
        inserted = f"2024-01-{1 + number % 28:02d}T03:00:00Z"
        if which < 7:
            minute = i // len(participants)
            intraday.append(
                {
                    "ParticipantIdentifier": participant,
                    "Type": "activities-steps",
                    "DateTime": f"2024-01-01T{(minute // 60) % 24:02d}:{minute % 60:02d}:{(minute // 1440) % 60:02d}",
                    "Value": str(rng.randrange(0, 200)),
                    "InsertedDate": inserted,
                }
            )
        elif which < 8:
            sleep.append(
                {
                    "ParticipantIdentifier": participant,
                    "LogId": f"{participant}-sleep-{i}",
                    "StartDate": "2024-01-01T22:00:00",
                    "Duration": str(28_800_000 + rng.randrange(1000)),
                    "InsertedDate": inserted,
                    "SleepLogDetails": [
                        {
                            "Type": "stage",
                            "StartDate": f"2024-01-01T22:{m % 60:02d}:00",
                            "Value": ("wake", "light", "deep")[m % 3],
                        }
                        for m in range(rng.randrange(1, 8))
                    ],
                }
            )
        else:
            steps.append(
                {
                    "ParticipantIdentifier": participant,
                    "HealthKitSampleKey": f"hk-{i}",
                    "Type": "Steps",
                    "Value": str(rng.randrange(0, 5000)),
                    "StartDate": "2024-01-02T08:00:00Z",
                    "InsertedDate": inserted,
                }
            )
    ndjson = lambda items: b"".join(_dumps(r) + b"\n" for r in items)
    manifest = (
        "ExportStartDate,ExportEndDate,ExportConfiguration\n"
        "2024-01-01T00:00:00+00:00,2024-01-05T00:00:00+00:00,BenchCohort\n"
    )
    members = {
        "Manifest.csv": manifest.encode(),
        "FitbitIntradayCombined_20240101-20240105.json": ndjson(intraday),
        "FitbitSleepLogs_20240101-20240105.json": ndjson(sleep),
        "HealthKitV2Samples_Steps_20240101-20240105.json": ndjson(steps),
        "HealthKitV2Samples_Weight_20240101-20240105.json": b"",
    }
    return f"export-{number:05d}-2024-01-05T03--00--00Z_BENCH.zip", members


def generate(
    out: Path,
    *,
    records: int,
    export_rows: int = 0,
    seed: int = 42,
    motion: int = 25,
    steps: int = 5,
    per_day: int = 100,
    per_export: int = 50_000,
    jobs: int | None = None,
    flavor: str = "sample",
) -> dict:
    out.mkdir(parents=True, exist_ok=True)
    jobs = jobs or os.cpu_count() or 1
    per_folder = 1000
    chunk = max(1, -(-records // (jobs * 4)))
    slices = [(start, min(records, start + chunk)) for start in range(0, records, chunk)]
    archive_bytes = 0
    with ProcessPoolExecutor(jobs) as pool:
        futures = [
            pool.submit(_write_slice, str(out), a, b, seed, motion, steps, per_folder, per_day, flavor)
            for a, b in slices
        ]
        for future in futures:
            archive_bytes += future.result()[1]
    export_bytes = 0
    if export_rows:
        folder = out / "exports"
        folder.mkdir(parents=True, exist_ok=True)
        for number, start in enumerate(range(0, export_rows, per_export)):
            name, members = export(seed, min(per_export, export_rows - start), start, number)
            export_bytes += _zip_bytes(folder / name, members)
            (folder / f"{name}.metadata.json").write_text(json.dumps({"cohort": "adults_v1"}))
    info = {
        "records": records,
        "export_rows": export_rows,
        "seed": seed,
        "motion": motion,
        "steps": steps,
        "per_day": per_day,
        "flavor": flavor,
        "archive_bytes": archive_bytes,
        "export_bytes": export_bytes,
    }
    (out / "generated.json").write_text(json.dumps(info, indent=2))
    return info


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, required=True, help="upload archives (records) to write")
    parser.add_argument(
        "--export-rows", type=int, default=0, help="rows of recover-like exports to write (default none)"
    )
    parser.add_argument("--motion", type=int, default=25, help="motion samples per archive (default 25)")
    parser.add_argument("--steps", type=int, default=5, help="taskData steps per archive (default 5)")
    parser.add_argument(
        "--per-day", type=int, default=100, help="uploads per day: 100k records span ~2.7 years (default 100)"
    )
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument(
        "--flavor",
        choices=["sample", "real"],
        default="sample",
        help="sample: the bundled samples' schemas (default); real: uploads shaped like the real MTB Spelling upload, "
        "with real task-data documents, for the real schemas (needs ../shared/data)",
    )
    parser.add_argument("--out", required=True)
    args = parser.parse_args(argv)
    info = generate(
        Path(args.out),
        records=args.records,
        export_rows=args.export_rows,
        seed=args.seed,
        motion=args.motion,
        steps=args.steps,
        per_day=args.per_day,
        flavor=args.flavor,
    )
    json.dump(info, sys.stdout, indent=2)
    print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
