"""Check a published output's Parquet file sizes against the file layout's target
(docs/benchmarks.md, "Incremental publish"; issue 22: "no published Parquet file
is smaller than the target size unless its partition holds less data than that").

For each current version's table and partition: a file below the target is
allowed only as the partition's only file (the partition then holds less than
the target). Prints files, the median size, partitions, the partitions of one
small file, and every partition that breaks the rule; exits 1 when one does.

    pipenv run python bench/file_sizes.py /tmp/bridge-bench/incremental/out-100000-arrow --engine arrow
"""

from __future__ import annotations

import argparse
import statistics
import sys
from collections import defaultdict
from pathlib import Path


def check(root: Path, target_bytes: int) -> dict:
    from bridge_downstream.common.storage import LocalStorage
    from bridge_downstream.publish import current_version, published_datasets, read_manifest

    storage = LocalStorage(root)
    sizes: list[int] = []
    partitions: dict[tuple[str, str, str], list[int]] = defaultdict(list)
    for dataset_id in published_datasets(storage):
        version = current_version(storage, dataset_id)
        assert version is not None
        for table in read_manifest(storage, dataset_id, version).tables.values():
            for file in table.files_of("parquet"):
                sizes.append(file.size)
                folder = table.relative_key(file).rsplit("/", 1)[0] if "/" in table.relative_key(file) else ""
                partitions[dataset_id, table.name, folder].append(file.size)
    broken = {where: files for where, files in partitions.items() if len(files) > 1 and min(files) < target_bytes}
    return {
        "files": len(sizes),
        "median_bytes": statistics.median(sizes) if sizes else 0,
        "partitions": len(partitions),
        "partitions_of_one_small_file": sum(1 for f in partitions.values() if len(f) == 1 and f[0] < target_bytes),
        "broken": broken,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("output", type=Path, help="an output root (its published/ versions are read)")
    parser.add_argument("--engine", default="arrow", choices=("arrow", "spark"), help="whose file layout to check")
    args = parser.parse_args()

    from bridge_downstream.publish.file_layout import layout_for

    target = layout_for(args.engine).target_file_bytes
    result = check(args.output, target)
    print(
        f"{result['files']} Parquet files, median {result['median_bytes'] / 1024:.1f} KiB, "
        f"{result['partitions']} partitions ({result['partitions_of_one_small_file']} hold one file below the "
        f"{target / 2**20:.0f} MiB target); partitions with a file below the target beside others: "
        f"{len(result['broken'])}"
    )
    for (dataset_id, table, folder), files in sorted(result["broken"].items()):
        print(f"  {dataset_id} {table} {folder}: {sorted(files)}")
    sys.exit(1 if result["broken"] else 0)


if __name__ == "__main__":
    main()
