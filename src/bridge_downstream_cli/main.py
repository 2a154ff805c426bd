"""``bridge-downstream``: the local command line.

It wires the core to local folders; the same core runs in the Glue jobs and
Lambdas. Subcommands print a readable summary and write machine-readable
reports beside the outputs.
"""

from __future__ import annotations

import argparse
import os
import sys

from bridge_downstream.config import ProfileError, RegistryError
from bridge_downstream_cli.backfill_commands import add_backfill_commands
from bridge_downstream_cli.catalog_commands import add_catalog_commands
from bridge_downstream_cli.cli_context import (
    add_common_options,
    apply_config_defaults,
    config_file_of,
    configure_logging,
    load_config_file,
)
from bridge_downstream_cli.compare_commands import add_compare_commands
from bridge_downstream_cli.errors import UsageError
from bridge_downstream_cli.exit_codes import ExitCode
from bridge_downstream_cli.export_commands import add_export_commands
from bridge_downstream_cli.invalid_commands import add_invalid_commands
from bridge_downstream_cli.ledger_commands import add_ledger_commands
from bridge_downstream_cli.locate_commands import add_locate_commands
from bridge_downstream_cli.path_commands import add_path_commands
from bridge_downstream_cli.pipeline_commands import add_pipeline_commands
from bridge_downstream_cli.quality_commands import add_quality_commands
from bridge_downstream_cli.status_commands import add_status_commands


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="bridge-downstream", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"%(prog)s {package_version()}")
    commands = parser.add_subparsers(dest="command", required=True)
    add_pipeline_commands(commands)
    add_export_commands(commands)
    workflow = commands.add_parser(
        "workflow",
        help="rehearse a deployed Glue workflow locally: run its jobs in trigger order on local Spark",
        add_help=False,
    )
    workflow.add_argument(
        "workflow_args", nargs=argparse.REMAINDER, help="run|show --workflow NAME ... (see `workflow --help`)"
    )
    add_invalid_commands(commands)
    add_catalog_commands(commands)
    add_ledger_commands(commands)
    add_compare_commands(commands)
    add_quality_commands(commands)
    add_status_commands(commands)
    add_locate_commands(commands)
    add_path_commands(commands)
    add_backfill_commands(commands)
    add_common_options(parser)  # last: every command above gets them
    return parser


def package_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("bridge-downstream")
    except PackageNotFoundError:  # run from a source tree that was never installed
        return "unknown"


def main(argv: list[str] | None = None) -> int:
    """Run one command; its exit code (:class:`ExitCode`). An ordinary
    mistake is one line on stderr, never a traceback."""
    argv = sys.argv[1:] if argv is None else list(argv)
    try:
        return _run(argv)
    except BrokenPipeError:
        # The reader left (`... | head`): stop quietly, and keep Python from failing to flush stdout at exit.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return int(ExitCode.OK)
    except KeyboardInterrupt:
        print("bridge-downstream: interrupted", file=sys.stderr)
        return 130
    except Exception as error:
        message = ordinary_error_message(error)
        if message is None:
            raise
        print(f"bridge-downstream: error: {message}", file=sys.stderr)
        return int(ExitCode.USAGE)


def _run(argv: list[str]) -> int:
    if argv[:1] == ["workflow"]:
        # The workflow runner has its own options (and --help); hand them over whole.
        from bridge_downstream_adapters.glue_workflow import main as workflow_main

        return workflow_main(argv[1:])
    parser = build_parser()
    config_file = config_file_of(parser, argv)
    if config_file is not None:
        apply_config_defaults(parser, load_config_file(config_file))
    args = parser.parse_args(argv)
    configure_logging(args)
    return args.handler(args)


def ordinary_error_message(error: BaseException) -> str | None:
    """One line saying what is wrong and what to do, for the mistakes anyone
    makes (None: a bug, whose traceback is wanted)."""
    if isinstance(error, UsageError | RegistryError | ProfileError | ValueError):
        return str(error)
    if isinstance(error, FileNotFoundError | NotADirectoryError | IsADirectoryError | PermissionError):
        where = error.filename or ""
        return f"{where}: {error.strerror or error}" if where else str(error)
    name = type(error).__name__  # botocore's errors, without importing botocore
    if name == "NoRegionError":
        return "no AWS region: set AWS_REGION (or AWS_DEFAULT_REGION), or a region in your AWS profile"
    if name in ("NoCredentialsError", "PartialCredentialsError"):
        return "no AWS credentials: set AWS_PROFILE, or the AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY variables"
    if name == "EndpointConnectionError":
        return f"AWS is not reachable: {error}"
    return None


if __name__ == "__main__":
    sys.exit(main())
