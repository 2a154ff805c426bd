"""``bridge-downstream``: the local command line.

It wires the core to local folders; the same core runs in the Glue jobs and
Lambdas. Subcommands print a readable summary and write machine-readable
reports beside the outputs.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from . import layout
from .archive import ArchiveLimits
from .ingest import ArchiveInput, ArchiveListing, run_ingest
from .profiles import ProfileError, load_profile
from .publish_arrow import add_engine_argument
from .registry import RegistryError, SchemaRegistry, build_registry
from .sinks import StorageInvalidSink
from .storage import LocalStorage

log = logging.getLogger("bridge_downstream")

ARCHIVE_SUFFIXES = (".zip",)


class UsageError(Exception):
    pass


def discover_archives(paths: list[str]) -> Sequence[ArchiveInput]:
    """Archives named directly, or found (recursively) in named folders."""
    listings = []
    for raw in paths:
        path = Path(raw).resolve()
        if path.is_dir():
            listings.append(ArchiveListing.of_storage(LocalStorage(path), ARCHIVE_SUFFIXES))
        elif path.is_file():
            listings.append([ArchiveInput(LocalStorage(path.parent), path.name)])
        else:
            raise UsageError(f"input {raw} does not exist")
    if len(listings) == 1:
        return listings[0]  # one folder: the spooled listing, whatever its size
    return [inp for listing in listings for inp in listing]


def _progress_bar(total: int, enabled: bool):
    if not enabled or total < 20:
        return None, lambda: None
    from tqdm import tqdm

    bar = tqdm(total=total, unit="archive", file=sys.stderr, dynamic_ncols=True)
    return bar.update, bar.close


def print_ingest_summary(report: dict, output: Path) -> None:
    archives = report["archives"]
    print(
        f"ingest {report['run_id']}: {archives['total']} archives -- "
        f"{archives['processed']} processed, {archives['invalid']} invalid, {archives['skipped']} skipped"
    )
    for dataset_id, counts in report["datasets"].items():
        print(f"  {dataset_id:<40} {counts['records']:>7} records {counts['rows']:>9} rows")
    for entry in report["invalid"]:
        print(f"  invalid  {entry['source']}: {entry['reason']}")
    for entry in report["skipped"]:
        print(f"  skipped  {entry['source']}: {entry['reason']}")
    not_listed = {status: count for status, count in report.get("not_listed", {}).items() if count}
    if not_listed:
        more = ", ".join(f"{count} more {status}" for status, count in not_listed.items())
        print(f"  ... {more}: every archive is in {output / report['records']}")
    print(f"datasets: {output / layout.JSON_PREFIX}   report: {output / 'run-report.json'}")


def command_ingest(args) -> int:
    report = ingest_command(args)
    print_ingest_summary(report, Path(args.output))
    return 0


def ingest_command(args) -> dict:
    registry = SchemaRegistry.load(args.registry)
    profile = load_profile(args.profile)
    inputs = discover_archives(args.inputs)
    output = LocalStorage(args.output)
    Path(args.output).mkdir(parents=True, exist_ok=True)
    update, close = _progress_bar(len(inputs), not args.no_progress and sys.stderr.isatty())
    try:
        report = run_ingest(
            inputs,
            registry=registry,
            profile=profile,
            output=output,
            sink=StorageInvalidSink(output),
            workers=args.workers,
            app_id=args.app_id,
            limits=ArchiveLimits(),
            progress=(lambda n: update(n)) if update else None,
        )
    finally:
        close()
    (Path(args.output) / "run-report.json").write_text(json.dumps(report, indent=2))
    return report


def publish_command(args, datasets: list[str] | None = None) -> dict:
    from .catalog import DuckDBCatalog
    from .ingest import new_run_id
    from .publish import json_datasets
    from .publish_arrow import once, publish_dataset_with
    from .spark_session import local_spark_session

    registry = SchemaRegistry.load(args.registry)
    profile = load_profile(args.profile)
    storage = LocalStorage(args.output)
    chosen = datasets if datasets is not None else (args.datasets or json_datasets(storage))
    catalog = DuckDBCatalog(storage)
    run_id = getattr(args, "run_id", None) or new_run_id()
    spark_factory = once(local_spark_session)  # started only for --engine spark
    tables: dict[str, dict] = {}
    published = {}
    for dataset_id in chosen:
        result = publish_dataset_with(
            getattr(args, "engine", "arrow"),
            spark_factory,
            dataset_id=dataset_id,
            registry=registry,
            profile=profile,
            work=storage,
            published=storage,
            run_id=run_id,
            catalog=catalog,
            retention=args.retention,
        )
        published[dataset_id] = result.manifest.version
        for name, table in result.manifest.tables.items():
            tables[name] = {
                "dataset": dataset_id,
                "rows": table.rows,
                "parquet": storage.uri(table.location(result.manifest.version, "parquet")),
                "csv": storage.uri(table.location(result.manifest.version, "csv")),
            }
    return {"run_id": run_id, "published": published, "tables": tables, "catalog": str(catalog.path)}


def print_publish_summary(summary: dict) -> None:
    print(f"published {len(summary['published'])} datasets, {len(summary['tables'])} tables:")
    for name, table in summary["tables"].items():
        print(f"  {name:<48} {table['rows']:>9} rows")
    output = Path(summary["catalog"]).parent
    print(f'query them: pipenv run bridge-downstream query --output {output} "SELECT * FROM <table> LIMIT 10"')


def command_publish(args) -> int:
    summary = publish_command(args)
    print_publish_summary(summary)
    return 0


def command_run(args) -> int:
    report = ingest_command(args)
    print_ingest_summary(report, Path(args.output))
    summary = publish_command(args, datasets=sorted(report["datasets"]) or [])
    report["tables"] = {name: {k: v for k, v in t.items()} for name, t in summary["tables"].items()}
    report["published"] = summary["published"]
    (Path(args.output) / "run-report.json").write_text(json.dumps(report, indent=2))
    print_publish_summary(summary)
    return 0


def command_rollback(args) -> int:
    from .catalog import DuckDBCatalog
    from .publish import rollback

    storage = LocalStorage(args.output)
    manifest = rollback(storage, args.dataset, args.to_version, catalog=DuckDBCatalog(storage))
    print(f"{args.dataset}: version {manifest.version} is current again")
    return 0


def command_query(args) -> int:
    import duckdb

    path = Path(args.output) / layout.LOCAL_CATALOG_NAME
    if not path.is_file():
        raise UsageError(f"{path} does not exist: run `bridge-downstream run` or `publish` first")
    with duckdb.connect(str(path), read_only=True) as connection:
        connection.sql(args.sql or "SHOW TABLES").show(max_width=200, max_rows=args.max_rows)
    return 0


def command_registry_build(args) -> int:
    aliases = {}
    for item in args.alias or []:
        url, sep, file_path = item.rpartition("=")
        if not sep or not url:
            raise UsageError(f"--alias takes URL=FILE, not {item!r}")
        aliases[url] = file_path
    index = build_registry(
        archive_map=args.archive_map,
        schema_dirs=args.schemas,
        schema_mapping=args.schema_mapping,
        dataset_mapping=args.dataset_mapping,
        aliases=aliases,
        pipeline_rules=args.pipeline_rules,
        out=args.out,
        version=args.version,
    )
    print(f"registry {index['version']}: {len(index['schemas'])} schemas, {len(index['aliases'])} aliases -> {args.out}")
    for url in index["unresolved_archive_map_urls"]:
        print(f"  warning: the archive map names {url}, which no schema file provides")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="bridge-downstream", description=__doc__.splitlines()[0])
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress details")
    commands = parser.add_subparsers(dest="command", required=True)

    registry = commands.add_parser("registry", help="schema registry artifacts").add_subparsers(dest="registry_command", required=True)
    build = registry.add_parser("build", help="assemble a registry directory from an archive map, schemas and mappings")
    build.add_argument("--archive-map", required=True)
    build.add_argument("--schemas", action="append", required=True, metavar="DIR", help="a folder of JSON Schemas (repeatable)")
    build.add_argument("--schema-mapping", required=True, help="JSON: schema $id or URL -> dataset id")
    build.add_argument("--dataset-mapping", required=True, help="JSON: legacy assessment/revision/file -> dataset id")
    build.add_argument("--alias", action="append", metavar="URL=FILE", help="a schema published at URL whose $id differs (repeatable)")
    build.add_argument("--pipeline-rules", help="JSON: accepted client deviations and file-name aliases")
    build.add_argument("--version", help="registry version (default: a digest of its content)")
    build.add_argument("--out", required=True)
    build.set_defaults(handler=command_registry_build)

    def add_ingest_arguments(sub):
        sub.add_argument("inputs", nargs="+", metavar="INPUT", help="archives, or folders of them")
        sub.add_argument("--output", required=True, help="pipeline root folder (mirrors the S3 layout)")
        sub.add_argument("--registry", required=True, help="registry directory (see `registry build`)")
        sub.add_argument("--profile", default="mtb", help="built-in profile name (mtb, recover) or a profile YAML file")
        sub.add_argument("--app-id", help="app id for records whose metadata names none")
        sub.add_argument("--workers", type=int, default=None, help="worker processes (default: one per core)")
        sub.add_argument("--no-progress", action="store_true", help="no progress bar")

    ingest = commands.add_parser("ingest", help="archives -> validated NDJSON datasets")
    add_ingest_arguments(ingest)
    ingest.set_defaults(handler=command_ingest)

    def add_publish_arguments(sub):
        sub.add_argument("--retention", type=int, default=3, help="complete versions kept per dataset (default 3)")
        add_engine_argument(sub)

    run = commands.add_parser("run", help="ingest, then relationalize and publish Parquet and CSV")
    add_ingest_arguments(run)
    add_publish_arguments(run)
    run.set_defaults(handler=command_run)

    publish = commands.add_parser("publish", help="relationalize and publish the NDJSON datasets of an output folder")
    publish.add_argument("--output", required=True, help="pipeline root folder")
    publish.add_argument("--registry", required=True)
    publish.add_argument("--profile", default="mtb")
    publish.add_argument("--datasets", nargs="*", help="dataset ids (default: every dataset under json/)")
    add_publish_arguments(publish)
    publish.set_defaults(handler=command_publish)

    query = commands.add_parser("query", help="SQL over the published tables of an output folder (DuckDB)")
    query.add_argument("sql", nargs="?", help="a SQL statement (default: SHOW TABLES)")
    query.add_argument("--output", required=True, help="pipeline root folder")
    query.add_argument("--max-rows", type=int, default=40)
    query.set_defaults(handler=command_query)

    back = commands.add_parser("rollback", help="make a dataset's previous published version current again")
    back.add_argument("dataset")
    back.add_argument("--output", required=True, help="pipeline root folder")
    back.add_argument("--to-version", help="a specific version (default: the one before the current)")
    back.set_defaults(handler=command_rollback)

    from bridge_downstream_adapters.cli_exports import add_export_commands

    add_export_commands(commands)

    workflow = commands.add_parser(
        "workflow",
        help="rehearse a deployed Glue workflow locally: run its jobs in trigger order on local Spark",
        add_help=False,
    )
    workflow.add_argument("workflow_args", nargs=argparse.REMAINDER, help="run|show --workflow NAME ... (see `workflow --help`)")

    from bridge_downstream_adapters.cli_invalid import add_invalid_commands

    add_invalid_commands(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["workflow"]:
        # The workflow runner has its own options (and --help); hand them over whole.
        from bridge_downstream_adapters.glue_workflow import main as workflow_main

        return workflow_main(argv[1:])
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        return args.handler(args)
    except (UsageError, RegistryError, ProfileError, ValueError) as error:
        print(f"bridge-downstream: error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
