"""The pipeline's commands on local folders: ``registry build``, ``ingest``,
``publish``, ``run`` (ingest, then publish), ``rollback`` and ``query``.

Each command resolves its options once into a :class:`RunConfig` (the
registry and the profile loaded once, the output folder opened once) and
hands it to the stages. Commands print a readable summary and write
machine-readable reports beside the outputs.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from bridge_downstream.common import layout
from bridge_downstream.common.storage import LocalStorage, local_entry
from bridge_downstream.common.text import printable
from bridge_downstream.config import (
    DEFAULT_RETENTION,
    Profile,
    RegistrySources,
    RunConfig,
    SchemaRegistry,
    build_registry,
    load_profile,
)
from bridge_downstream.ingest import (
    ArchiveInput,
    ArchiveListing,
    StorageInvalidSink,
    new_run_id,
    run_ingest,
)
from bridge_downstream.publish import (
    DuckDBCatalog,
    json_datasets,
    local_spark_session,
    once,
    publish_dataset_with,
)
from bridge_downstream.publish.engines import DEFAULT_LOCAL_ENGINE, ENGINE_ENVIRONMENT, ENGINES
from bridge_downstream_cli.errors import UsageError

ARCHIVE_SUFFIXES = (".zip",)


def run_config(args: argparse.Namespace) -> RunConfig:
    """The run's configuration from a command's options: loaded here, once."""
    Path(args.output).mkdir(parents=True, exist_ok=True)
    return RunConfig(
        registry=SchemaRegistry.load(args.registry),
        profile=_with_nested(load_profile(args.profile), getattr(args, "nested", False)),
        output=LocalStorage(args.output),
        engine=getattr(args, "engine", DEFAULT_LOCAL_ENGINE),
        workers=getattr(args, "workers", None),
        app_id=getattr(args, "app_id", None),
        retention=getattr(args, "retention", DEFAULT_RETENTION),
    )


def _with_nested(profile: Profile, nested: bool) -> Profile:
    """``--nested``: every dataset published gets its nested table, whatever the profile says."""
    return dataclasses.replace(profile, nested=True) if nested else profile


def discover_archives(paths: list[str]) -> Sequence[ArchiveInput]:
    """Archives named directly, or found (recursively) in named folders. An
    entry that is no regular file (a FIFO, a dangling or looping link), named
    or found, is an input refused with its reason: it is reported as skipped
    and the others are ingested."""
    listings: list[Sequence[ArchiveInput]] = []
    for raw in paths:
        path = Path(os.path.abspath(raw))  # not resolved: a link is judged as a listing judges it
        if path.is_dir():
            listings.append(ArchiveListing.of_storage(LocalStorage(path), ARCHIVE_SUFFIXES))
            continue
        storage = LocalStorage(path.parent)
        entry = local_entry(storage, path.name)
        if entry is None:
            raise UsageError(f"input {raw} does not exist")
        listings.append([ArchiveInput.of_entry(storage, entry)])
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
    for status in ("invalid", "skipped"):
        for entry in report[status]:  # a source or a reason could hold a terminal escape
            print(f"  {status:<8} {printable(entry['source'])}: {printable(entry['reason'])}")
    not_listed = {status: count for status, count in report.get("not_listed", {}).items() if count}
    if not_listed:
        more = ", ".join(f"{count} more {status}" for status, count in not_listed.items())
        print(f"  ... {more}: every archive is in {output / report['records']}")
    print(f"datasets: {output / layout.JSON_PREFIX}   report: {output / 'run-report.json'}")


def ingest_stage(config: RunConfig, inputs: Sequence[ArchiveInput], show_progress: bool) -> dict:
    """Ingest ``inputs`` under the config's output; the report is also written
    to ``run-report.json`` there."""
    update, close = _progress_bar(len(inputs), show_progress)
    try:
        report = run_ingest(
            inputs,
            registry=config.registry,
            profile=config.profile,
            output=config.output,
            sink=StorageInvalidSink(config.output),
            workers=config.workers,
            app_id=config.app_id,
            limits=config.limits,
            progress=(lambda n: update(n)) if update else None,
        )
    finally:
        close()
    config.output.write_bytes("run-report.json", json.dumps(report, indent=2).encode())
    return report


def publish_stage(config: RunConfig, datasets: Sequence[str], run_id: str | None = None) -> dict:
    """Publish ``datasets`` of the config's output on its engine; a summary of the tables."""
    storage = config.output
    assert isinstance(storage, LocalStorage), "the local commands publish into a local folder"
    catalog = DuckDBCatalog(storage)
    run_id = run_id or new_run_id()
    spark_factory = once(local_spark_session)  # started only for --engine spark
    tables: dict[str, dict] = {}
    published = {}
    record_counts: list[dict] = []
    findings: dict[str, dict[str, dict]] = {name: {} for name in TABLE_FINDINGS}
    for dataset_id in datasets:
        result = publish_dataset_with(
            config.engine,
            spark_factory,
            dataset_id=dataset_id,
            registry=config.registry,
            profile=config.profile,
            work=storage,
            published=config.publish_root,
            run_id=run_id,
            catalog=catalog,
            retention=config.retention,
        )
        published[dataset_id] = result.manifest.version
        record_counts.extend(result.manifest.record_counts)
        for name, found in table_findings(result.manifest).items():
            if found:
                findings[name][dataset_id] = found
        for name, table in result.manifest.tables.items():
            tables[name] = {
                "dataset": dataset_id,
                "rows": table.rows,
                "parquet": storage.uri(table.location(result.manifest.version, "parquet")),
                # the nested table has no CSVs (docs/publish.md, "Nested tables")
                "csv": storage.uri(table.location(result.manifest.version, "csv")) if table.files_of("csv") else None,
            }
    return {
        "run_id": run_id,
        "published": published,
        "tables": tables,
        **findings,
        "record_counts": record_counts,
        "catalog": str(catalog.path),
    }


# What a publish says of its tables, per dataset, in the summary and the run report.
TABLE_FINDINGS = ("undeclared_keys", "renamed_columns", "rescued_values")


def table_findings(manifest) -> dict[str, dict]:
    """Keys the schema does not declare (path -> rows holding it); columns
    renamed because another has their name, case aside (table -> column ->
    the key it holds); values that did not fit their columns (path -> rows)."""
    plan = manifest.plan or {}
    return {
        "undeclared_keys": plan.get("undeclared_keys") or {},
        "renamed_columns": plan.get("renamed_columns") or {},
        "rescued_values": manifest.rescued_values,
    }


def print_publish_summary(summary: dict) -> None:
    print(f"published {len(summary['published'])} datasets, {len(summary['tables'])} tables:")
    for name, table in summary["tables"].items():
        print(f"  {name:<48} {table['rows']:>9} rows")
    for dataset_id, keys in summary["undeclared_keys"].items():
        print(f"  {dataset_id}: {len(keys)} keys its schema does not declare, published as columns (see the report)")
    for dataset_id, tables in summary["renamed_columns"].items():
        renamed = sum(len(columns) for columns in tables.values())
        print(f"  {dataset_id}: {renamed} columns renamed, their names taken by another column (see the report)")
    for dataset_id, paths in summary["rescued_values"].items():
        rows = sum(paths.values())
        print(f"  {dataset_id}: {rows} values did not fit their columns, kept in _rescued_data (see the report)")
    output = Path(summary["catalog"]).parent
    print(f'query them: pipenv run bridge-downstream query --output {output} "SELECT * FROM <table> LIMIT 10"')


def _show_progress(args) -> bool:
    return not args.no_progress and sys.stderr.isatty()


def command_ingest(args) -> int:
    config = run_config(args)
    report = ingest_stage(config, discover_archives(args.inputs), _show_progress(args))
    print_ingest_summary(report, Path(args.output))
    return 0


def command_publish(args) -> int:
    config = run_config(args)
    summary = publish_stage(config, args.datasets or json_datasets(config.output))
    print_publish_summary(summary)
    return 0


def command_run(args) -> int:
    config = run_config(args)
    report = ingest_stage(config, discover_archives(args.inputs), _show_progress(args))
    print_ingest_summary(report, Path(args.output))
    summary = publish_stage(config, sorted(report["datasets"]))
    report["tables"] = summary["tables"]
    report["published"] = summary["published"]
    for name in TABLE_FINDINGS:
        report[name] = summary[name]
    report["record_counts"] = summary["record_counts"]
    config.output.write_bytes("run-report.json", json.dumps(report, indent=2).encode())
    print_publish_summary(summary)
    return 0


def command_rollback(args) -> int:
    from bridge_downstream.publish.catalog import DuckDBCatalog
    from bridge_downstream.publish.versions import rollback

    storage = LocalStorage(args.output)
    manifest = rollback(storage, args.dataset, args.to_version, catalog=DuckDBCatalog(storage))
    print(f"{args.dataset}: version {manifest.version} is current again")
    return 0


def command_query(args) -> int:
    import duckdb

    path = Path(args.output) / layout.LOCAL_CATALOG_NAME
    if not path.is_file():
        raise UsageError(f"{path} does not exist: run `bridge-downstream run` or `publish` first")
    if DuckDBCatalog(LocalStorage(args.output)).rebuild_if_moved():
        print(f"{path}: the output was copied or moved, its views are rebuilt", file=sys.stderr)
    with duckdb.connect(str(path), read_only=True) as connection:
        connection.sql(args.sql or "SHOW TABLES").show(max_width=200, max_rows=args.max_rows)
    return 0


# The options that name one source each; a sources file names them all.
SOURCE_OPTIONS = ("archive_map", "schemas", "schema_mapping", "dataset_mapping", "alias", "pipeline_rules")
REQUIRED_SOURCE_OPTIONS = ("archive_map", "schemas", "schema_mapping", "dataset_mapping")


def _option(name: str) -> str:
    return "--" + name.replace("_", "-")


def command_registry_build(args) -> int:
    if args.sources:
        given = [_option(name) for name in SOURCE_OPTIONS if getattr(args, name)]
        if given:
            raise UsageError(f"--sources names every source: drop {', '.join(given)}")
        base_roots = [item for item in args.root or [] if "=" not in item]
        if len(base_roots) > 1:
            raise UsageError(f"one --root DIR, not {len(base_roots)} (a root of its own: --root NAME=DIR)")
        named_roots = dict(item.split("=", 1) for item in args.root or [] if "=" in item)
        sources = RegistrySources.load(args.sources, root=base_roots[0] if base_roots else None, roots=named_roots)
        index = sources.build(args.out, version=args.version)
    else:
        missing = [_option(name) for name in REQUIRED_SOURCE_OPTIONS if not getattr(args, name)]
        if missing:
            raise UsageError(f"give --sources FILE, or each source: missing {', '.join(missing)}")
        if args.root:
            raise UsageError("--root locates the paths of a --sources file")
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
    print(
        f"registry {index['version']}: {len(index['schemas'])} schemas, {len(index['aliases'])} aliases -> {args.out}"
    )
    for url in index["unresolved_archive_map_urls"]:
        print(f"  warning: the archive map names {url}, which no schema file provides")
    return 0


def add_engine_argument(parser, default: str | None = None) -> None:
    """``--engine arrow|spark`` for the local commands (default: arrow, or
    ``$BRIDGE_DOWNSTREAM_ENGINE``)."""
    parser.add_argument(
        "--engine",
        choices=ENGINES,
        default=default or os.environ.get(ENGINE_ENVIRONMENT) or DEFAULT_LOCAL_ENGINE,
        help="relationalize/publish engine: arrow (no JVM, single machine) or spark (as on Glue); default arrow",
    )


def add_pipeline_commands(commands) -> None:
    """Register the pipeline's commands on the command line's subparsers."""
    registry = commands.add_parser("registry", help="schema registry artifacts").add_subparsers(
        dest="registry_command", required=True
    )
    build = registry.add_parser(
        "build",
        help="assemble a registry directory from a sources file (registry-sources/mtb.yaml), "
        "or from an archive map, schemas and mappings",
    )
    build.add_argument("--sources", metavar="FILE", help="YAML naming every source and the pipeline rules")
    build.add_argument(
        "--root",
        action="append",
        metavar="DIR|NAME=DIR",
        help="with --sources: the folder holding its roots, or where one root is (repeatable)",
    )
    build.add_argument("--archive-map")
    build.add_argument("--schemas", action="append", metavar="DIR", help="a folder of JSON Schemas (repeatable)")
    build.add_argument("--schema-mapping", help="JSON: schema $id or URL -> dataset id")
    build.add_argument("--dataset-mapping", help="JSON: legacy assessment/revision/file -> dataset id")
    build.add_argument(
        "--alias", action="append", metavar="URL=FILE", help="a schema published at URL whose $id differs (repeatable)"
    )
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
        sub.add_argument(
            "--nested",
            action="store_true",
            help="also publish each dataset's nested table: objects and arrays as structs and lists",
        )

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
