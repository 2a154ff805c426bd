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
import logging
import os
import sys
import time
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

from bridge_downstream.common import layout
from bridge_downstream.common.storage import LocalStorage, local_entry
from bridge_downstream.common.text import printable
from bridge_downstream.config import (
    DEFAULT_RETENTION,
    PipelineRules,
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
    forget_ingested,
    new_run_id,
    read_run_records,
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
from bridge_downstream.relationalize.naming import root_table_name
from bridge_downstream_cli.cli_context import (
    CONFIG_FILE_NAME,
    close_matches_hint,
    event_logger,
    resolve_dataset_ids,
    show_progress,
)
from bridge_downstream_cli.errors import UsageError
from bridge_downstream_cli.exit_codes import ExitCode, InvalidTolerance, ingest_exit_code
from bridge_downstream_cli.html_report import grouped_reasons, write_run_report_page
from bridge_downstream_cli.input_metadata import input_storage, parse_metadata_options
from bridge_downstream_cli.output_root import RootRecord, check_profile, record_root
from bridge_downstream_cli.quality_commands import (
    add_expectations_argument,
    print_quality_findings,
    quality_exit_code,
    quality_findings,
    with_quality_check,
    with_study_expectations,
)

ARCHIVE_SUFFIXES = (".zip",)


DEFAULT_PROFILE = "mtb"
SCHEMALESS_PROFILE_KINDS = ("ndjson-export",)  # their datasets have no schema: no registry needed


def run_config(args: argparse.Namespace) -> RunConfig:
    """The run's configuration from a command's options (and the output
    root's record of its profile and registry): loaded here, once. Records
    the root's profile and registry at first use; ``args.registry_changed_from``
    is the registry version this one replaced, if any."""
    output = Path(args.output)
    record = RootRecord.read(output)
    given_profile = getattr(args, "profile", None)
    profile = load_profile(given_profile or (record.profile if record else DEFAULT_PROFILE))
    if given_profile is not None:
        check_profile(output, given_profile, profile.name)
    registry_location = getattr(args, "registry", None) or (record.registry if record else None)
    if registry_location is not None:
        registry = SchemaRegistry.load(registry_location)
    elif profile.kind in SCHEMALESS_PROFILE_KINDS:
        registry = SCHEMALESS_REGISTRY
    else:
        raise UsageError(
            f"the {profile.name!r} profile needs a schema registry: give --registry DIR "
            f"(see `bridge-downstream registry build`) or `registry:` in {CONFIG_FILE_NAME}"
        )
    output.mkdir(parents=True, exist_ok=True)
    args.registry_changed_from = record_root(
        output,
        given_profile or (record.profile if record else DEFAULT_PROFILE),
        profile.name,
        str(Path(registry_location).resolve()) if registry_location else None,
        registry.version if registry_location else None,
    )
    return RunConfig(
        registry=registry,
        profile=with_study_expectations(
            _with_nested(profile, getattr(args, "nested", False)), getattr(args, "expectations", None)
        ),
        output=LocalStorage(args.output),
        engine=getattr(args, "engine", DEFAULT_LOCAL_ENGINE),
        workers=getattr(args, "workers", None),
        app_id=getattr(args, "app_id", None),
        retention=getattr(args, "retention", DEFAULT_RETENTION),
    )


# What a profile whose datasets have no schema is given for a registry.
SCHEMALESS_REGISTRY = SchemaRegistry(
    version="none",
    archive_map={},
    schemas={},
    aliases={},
    schema_mapping={},
    dataset_mapping={},
    rules=PipelineRules(),
)


def _with_nested(profile: Profile, nested: bool) -> Profile:
    """``--nested``: every dataset published gets its nested table, whatever the profile says."""
    return dataclasses.replace(profile, nested=True) if nested else profile


def discover_archives(paths: list[str], run_metadata: Mapping[str, str] | None = None) -> Sequence[ArchiveInput]:
    """Archives named directly, or found (recursively) in named folders. An
    entry that is no regular file (a FIFO, a dangling or looping link), named
    or found, is an input refused with its reason: it is reported as skipped
    and the others are ingested. ``run_metadata``: every archive's metadata,
    under what its own says."""
    listings: list[Sequence[ArchiveInput]] = []
    for raw in paths:
        path = Path(os.path.abspath(raw))  # not resolved: a link is judged as a listing judges it
        if path.is_dir():
            listings.append(ArchiveListing.of_storage(input_storage(path, run_metadata), ARCHIVE_SUFFIXES))
            continue
        storage = input_storage(path.parent, run_metadata)
        entry = local_entry(storage, path.name)
        if entry is None:
            raise UsageError(f"input {raw} does not exist")
        listings.append([ArchiveInput.of_entry(storage, entry)])
    if len(listings) == 1:
        return listings[0]  # one folder: the spooled listing, whatever its size
    return [inp for listing in listings for inp in listing]


def _with_progress_bar(items: Sequence[str], enabled: bool, unit: str) -> Iterable[str]:
    if not enabled:
        return items
    from tqdm import tqdm

    return tqdm(items, unit=unit, file=sys.stderr, dynamic_ncols=True)


def _progress_bar(total: int, enabled: bool):
    if not enabled or total < 20:
        return None, lambda: None
    from tqdm import tqdm

    bar = tqdm(total=total, unit="archive", file=sys.stderr, dynamic_ncols=True)
    return bar.update, bar.close


# More archives of one outcome than this are summed up by reason in the summary.
ARCHIVES_LISTED_ONE_BY_ONE = 5


def print_ingest_summary(report: dict, output: Path) -> None:
    archives = report["archives"]
    print(
        f"ingest {report['run_id']}: {archives['total']} archives -- "
        f"{archives['processed']} processed, {archives['invalid']} invalid, {archives['skipped']} skipped"
    )
    for dataset_id, counts in report["datasets"].items():
        print(f"  {dataset_id:<40} {counts['records']:>7} records {counts['rows']:>9} rows")
    for status in ("invalid", "skipped"):
        if len(report[status]) <= ARCHIVES_LISTED_ONE_BY_ONE:
            for entry in report[status]:  # a source or a reason could hold a terminal escape
                print(f"  {status:<8} {printable(entry['source'])}: {printable(entry['reason'])}")
            continue
        for group, count in grouped_reasons(report[status]):  # a backfill's 1,000 invalid archives: a few lines
            print(f"  {status:<8} {count:>7} archives: {printable(group)}")
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
    write_run_report_page(config.output, report)
    return report


def publish_stage(
    config: RunConfig, datasets: Sequence[str], run_id: str | None = None, progress: bool = False, full: bool = False
) -> dict:
    """Publish ``datasets`` of the config's output on its engine; a summary of the tables.
    ``full``: rebuild every table, not only the partitions with new rows."""
    storage = config.output
    assert isinstance(storage, LocalStorage), "the local commands publish into a local folder"
    catalog = DuckDBCatalog(storage)
    run_id = run_id or new_run_id()
    spark_factory = once(local_spark_session)  # started only for --engine spark
    tables: dict[str, dict] = {}
    published = {}
    record_counts: list[dict] = []
    findings: dict[str, dict[str, dict]] = {name: {} for name in TABLE_FINDINGS}
    increments: dict[str, dict] = {}  # how each version was made: incremental, or full and why
    for dataset_id in _with_progress_bar(datasets, progress, "dataset"):
        started = time.monotonic()
        result = with_quality_check(config.profile, publish_dataset_with)(
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
            full=full,
        )
        log_dataset_published(config.engine, result.manifest, run_id, time.monotonic() - started)
        published[dataset_id] = result.manifest.version
        increments[dataset_id] = result.manifest.increment
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
        "increments": increments,
        "catalog": str(catalog.path),
    }


# What a publish says of its tables, per dataset, in the summary and the run report.
TABLE_FINDINGS = ("undeclared_keys", "renamed_columns", "rescued_values", "quality_failures")


def table_findings(manifest) -> dict[str, dict]:
    """Keys the schema does not declare (path -> rows holding it); columns
    renamed because another has their name, case aside (table -> column ->
    the key it holds); values that did not fit their columns (path -> rows)."""
    plan = manifest.plan or {}
    return {
        "undeclared_keys": plan.get("undeclared_keys") or {},
        "renamed_columns": plan.get("renamed_columns") or {},
        "rescued_values": manifest.rescued_values,
        "quality_failures": quality_findings(manifest),
    }


def print_publish_summary(summary: dict) -> None:
    print(f"published {len(summary['published'])} datasets, {len(summary['tables'])} tables:")
    for name, table in summary["tables"].items():
        print(f"  {name:<48} {table['rows']:>9} rows  {table['parquet']}")
    for dataset_id, increment in summary.get("increments", {}).items():
        if increment.get("mode") == "full" and increment.get("reason") not in (
            "the first version",
            "requested (--full)",
        ):
            print(f"  {dataset_id}: rebuilt in full: {increment['reason']}")
    for dataset_id, keys in summary["undeclared_keys"].items():
        print(f"  {dataset_id}: {len(keys)} keys its schema does not declare, published as columns (see the report)")
    for dataset_id, tables in summary["renamed_columns"].items():
        renamed = sum(len(columns) for columns in tables.values())
        print(f"  {dataset_id}: {renamed} columns renamed, their names taken by another column (see the report)")
    for dataset_id, paths in summary["rescued_values"].items():
        rows = sum(paths.values())
        print(f"  {dataset_id}: {rows} values did not fit their columns, kept in _rescued_data (see the report)")
    print_quality_findings(summary["quality_failures"])
    if summary["tables"]:  # a hint to query nothing would fail
        output = Path(summary["catalog"]).parent
        print(f'query them: pipenv run bridge-downstream query --output {output} "SELECT * FROM <table> LIMIT 10"')


def ingest_command_stage(args, config: RunConfig) -> dict:
    """The ingest of ``ingest`` and ``run``: ``--reingest`` first forgets the
    inputs' ledger entries; each archive's outcome is logged (``-v``)."""
    inputs = discover_archives(args.inputs, parse_metadata_options(args.metadata))
    if args.reingest:
        sources = {inp.source for inp in inputs}
        forgotten = forget_ingested(config.output, lambda entry: entry.get("source") in sources)
        event_logger("ingest").warning("--reingest: %d archives removed from the ledger", len(forgotten))
    report = ingest_stage(config, inputs, show_progress(args))
    log_archive_outcomes(config.output, report)
    print_ingest_summary(report, Path(args.output))
    print_reingest_hint(report, args)
    return report


def log_dataset_published(engine: str, manifest, run_id: str, seconds: float) -> None:
    """One event per published dataset (``-v``): engine, full or incremental and why, rows per table, seconds."""
    log = event_logger("publish")
    if not log.isEnabledFor(logging.INFO):
        return
    increment = manifest.increment or {}
    if increment.get("mode") == "incremental":
        how = f"incremental on {increment.get('previous_version')}"
    else:
        how = f"full ({increment.get('reason') or 'no reason recorded'})"
    outcome = "blocked" if manifest.blocked_by_quality else "published"
    rows = ", ".join(f"{name} {table.rows}" for name, table in sorted(manifest.tables.items()))
    log.info(
        "%s %s version %s on %s, %s, %.2f s: %s",
        outcome,
        manifest.dataset_id,
        manifest.version,
        engine,
        how,
        seconds,
        rows,
        extra={"action": "publish", "run_id": run_id, "dataset": manifest.dataset_id, "outcome": outcome},
    )


def log_archive_outcomes(storage, report: dict) -> None:
    """One event per archive, with its run, outcome and reason (``-v``; ``--log-format json`` for machines)."""
    log = event_logger("ingest")
    if not log.isEnabledFor(logging.INFO):
        return
    for record in read_run_records(storage, report["run_id"]):
        reason = record.get("reason")
        log.info(
            "%s %s%s",
            record["status"],
            printable(record["source"]),
            f": {printable(reason)}" if reason else "",
            extra={
                "action": "ingest",
                "run_id": report["run_id"],
                "archive": record["source"],
                "record_id": record.get("recordid"),
                "outcome": record["status"],
                "reason": reason,
            },
        )


ALREADY_INGESTED = "already ingested"  # how the skip reason of an archive in the ledger starts


def print_reingest_hint(report: dict, args) -> None:
    again = sum(1 for entry in report["skipped"] if str(entry["reason"]).startswith(ALREADY_INGESTED))
    if not again:
        return
    changed = getattr(args, "registry_changed_from", None)
    since = f"; the registry changed since ({changed} -> {report['registry_version']})" if changed else ""
    print(
        f"  {again} archives were ingested before{since}: add --reingest to ingest them again, "
        "or `bridge-downstream ledger forget RECORD_ID|ARCHIVE...`"
    )


def ingest_exit(report: dict, tolerance: InvalidTolerance) -> int:
    """The run's exit code, said in one line on stderr when it is not 0."""
    code = ingest_exit_code(report["archives"], tolerance)
    archives = report["archives"]
    if code == ExitCode.INVALID:
        print(
            f"bridge-downstream: {archives['invalid']} of {archives['total']} archives invalid, "
            f"beyond --max-invalid {tolerance} (exit {int(code)})",
            file=sys.stderr,
        )
    elif code == ExitCode.NOTHING:
        found = "no archive was found" if not archives["total"] else "no archive could be processed"
        print(f"bridge-downstream: {found} (exit {int(code)})", file=sys.stderr)
    return int(code)


def command_ingest(args) -> int:
    tolerance = InvalidTolerance.parse(args.max_invalid)
    config = run_config(args)
    report = ingest_command_stage(args, config)
    return ingest_exit(report, tolerance)


def command_publish(args) -> int:
    config = run_config(args)
    available = json_datasets(config.output)
    datasets = resolve_dataset_ids(args.datasets, available) if args.datasets else available
    if not datasets:
        print(
            f"bridge-downstream: {args.output} holds no ingested dataset: run `bridge-downstream ingest` first",
            file=sys.stderr,
        )
        return int(ExitCode.NOTHING)
    summary = publish_stage(config, datasets, progress=show_progress(args), full=args.full)
    print_publish_summary(summary)
    return int(quality_exit_code(summary["quality_failures"]))


def command_run(args) -> int:
    tolerance = InvalidTolerance.parse(args.max_invalid)
    config = run_config(args)
    report = ingest_command_stage(args, config)
    if not report["datasets"]:
        print("nothing new to publish")
        return ingest_exit(report, tolerance)
    summary = publish_stage(config, sorted(report["datasets"]), progress=show_progress(args), full=args.full)
    report["tables"] = summary["tables"]
    report["increments"] = summary["increments"]
    report["published"] = summary["published"]
    for name in TABLE_FINDINGS:
        report[name] = summary[name]
    report["record_counts"] = summary["record_counts"]
    config.output.write_bytes("run-report.json", json.dumps(report, indent=2).encode())
    write_run_report_page(config.output, report)
    print_publish_summary(summary)
    # said last: the line a reader of the output sees
    return ingest_exit(report, tolerance) or int(quality_exit_code(summary["quality_failures"]))


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
    started = time.monotonic()
    sql = args.sql or "SHOW TABLES"
    with duckdb.connect(str(path), read_only=True) as connection:
        try:
            relation = connection.sql(sql)
        except duckdb.CatalogException as error:
            raise UsageError(_unknown_table_message(connection, str(error))) from None
        except duckdb.Error as error:
            raise UsageError(f"the query failed: {str(error).splitlines()[0]}") from None
        if relation is None:  # a statement without rows (SET, PRAGMA ...)
            log_query(sql, None, started)
            return int(ExitCode.OK)
        query_format = args.format or QUERY_FORMAT_BY_SUFFIX.get(Path(args.out or "").suffix, "table")
        if query_format == "table" and not args.out:
            relation.show(max_width=200, max_rows=args.max_rows or DEFAULT_TABLE_ROWS)
            log_query(sql, relation, started)
            return int(ExitCode.OK)
        if query_format == "table":
            text = str(relation.limit(args.max_rows or DEFAULT_TABLE_ROWS))
            log_query(sql, relation, started)
        else:
            columns = relation.columns
            rows = relation.fetchmany(args.max_rows) if args.max_rows else relation.fetchall()
            text = _formatted_rows(query_format, columns, rows)
            log_query(sql, len(rows), started)
    if args.out:
        Path(args.out).write_text(text)
        print(f"{args.out}: {query_format}", file=sys.stderr)
    else:
        sys.stdout.write(text)
    return int(ExitCode.OK)


def log_query(sql: str, returned, started: float) -> None:
    """The query, the rows it returned and its seconds (``-v``). ``returned``: a
    count, a relation (counted only when logging: that runs the query again), or
    None for a statement without rows."""
    log = event_logger("query")
    if not log.isEnabledFor(logging.INFO):
        return
    rows = returned.shape[0] if hasattr(returned, "shape") else returned
    log.info(
        "query returned %s rows in %.2f s: %s",
        "no" if rows is None else rows,
        time.monotonic() - started,
        sql,
        extra={"action": "query", "outcome": "success"},
    )


QUERY_FORMATS = ("table", "csv", "json")
QUERY_FORMAT_BY_SUFFIX = {".csv": "csv", ".json": "json"}
DEFAULT_TABLE_ROWS = 40  # a terminal's worth; csv and json give every row unless --max-rows


def _formatted_rows(query_format: str, columns: list[str], rows: list[tuple]) -> str:
    if query_format == "json":
        return json.dumps([dict(zip(columns, row, strict=True)) for row in rows], indent=2, default=str) + "\n"
    import csv
    import io

    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(columns)
    writer.writerows(rows)
    return buffer.getvalue()


def _unknown_table_message(connection, error: str) -> str:
    """What a query named that the catalog has not, and what it has that is close (a dataset id names its table)."""
    import re

    match = re.search(r"Table with name (\S+) does not exist", error)
    if not match:
        return f"the query failed: {error.splitlines()[0]}"
    name = match.group(1).strip('"')
    tables = [row[0] for row in connection.sql("SHOW TABLES").fetchall()]
    table = root_table_name(name)
    if table in tables:
        return f"no table {name!r}: the dataset {name}'s table is {table}"
    return f'no table {name!r}{close_matches_hint(name, tables)} (`query "SHOW TABLES"` lists them)'


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


def add_registry_and_profile_arguments(sub) -> None:
    sub.add_argument(
        "--registry",
        help="registry directory (see `registry build`); default: the one the output root recorded, "
        "none for a profile without schemas (recover)",
    )
    sub.add_argument(
        "--profile",
        help="built-in profile name (mtb, recover) or a profile YAML file; "
        f"default: the one the output root recorded, else {DEFAULT_PROFILE}",
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
        add_registry_and_profile_arguments(sub)
        sub.add_argument("--app-id", help="app id for records whose metadata names none")
        sub.add_argument("--workers", type=int, default=None, help="worker processes (default: one per core)")
        sub.add_argument("--no-progress", action="store_true", help="no progress bar")
        sub.add_argument(
            "--max-invalid",
            default="0",
            metavar="N|P%",
            help="invalid archives tolerated before the exit code is 1: a count or a percentage (default 0)",
        )
        sub.add_argument(
            "--metadata",
            action="append",
            metavar="KEY=VALUE",
            help="Bridge metadata for every archive, under what its own sidecar says (repeatable)",
        )
        sub.add_argument(
            "--reingest",
            action="store_true",
            help="ingest the inputs again even if the ledger holds them (after a registry or profile fix)",
        )

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
        add_expectations_argument(sub)
        sub.add_argument(
            "--full",
            action="store_true",
            help="rebuild every table in full, not only the partitions that received new rows (docs/publish.md)",
        )

    run = commands.add_parser("run", help="ingest, then relationalize and publish Parquet and CSV")
    add_ingest_arguments(run)
    add_publish_arguments(run)
    run.set_defaults(handler=command_run)

    publish = commands.add_parser("publish", help="relationalize and publish the NDJSON datasets of an output folder")
    publish.add_argument("--output", required=True, help="pipeline root folder")
    add_registry_and_profile_arguments(publish)
    publish.add_argument(
        "--datasets", nargs="*", help="dataset ids or table names, any case (default: every dataset under json/)"
    )
    add_publish_arguments(publish)
    publish.set_defaults(handler=command_publish)

    query = commands.add_parser("query", help="SQL over the published tables of an output folder (DuckDB)")
    query.add_argument("sql", nargs="?", help="a SQL statement (default: SHOW TABLES)")
    query.add_argument("--output", required=True, help="pipeline root folder")
    query.add_argument(
        "--max-rows",
        type=int,
        default=None,
        help=f"rows shown or written (default: {DEFAULT_TABLE_ROWS} for a table, every row for csv and json)",
    )
    query.add_argument(
        "--format", choices=QUERY_FORMATS, help="table (default), csv or json; with -o, the file's suffix decides"
    )
    query.add_argument("-o", "--out", metavar="FILE", help="write the rows to FILE instead of the terminal")
    query.set_defaults(handler=command_query)

    back = commands.add_parser("rollback", help="make a dataset's previous published version current again")
    back.add_argument("dataset")
    back.add_argument("--output", required=True, help="pipeline root folder")
    back.add_argument("--to-version", help="a specific version (default: the one before the current)")
    back.set_defaults(handler=command_rollback)
