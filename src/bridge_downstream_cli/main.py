"""``bridge-downstream``: the local command line.

It wires the core to local folders; the same core runs in the Glue jobs and
Lambdas. Subcommands print a readable summary and write machine-readable
reports beside the outputs.
"""

from __future__ import annotations

import argparse
import logging
import sys

from bridge_downstream.config import ProfileError, RegistryError
from bridge_downstream_cli.catalog_commands import add_catalog_commands
from bridge_downstream_cli.errors import UsageError
from bridge_downstream_cli.export_commands import add_export_commands
from bridge_downstream_cli.invalid_commands import add_invalid_commands
from bridge_downstream_cli.pipeline_commands import add_pipeline_commands


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="bridge-downstream", description=__doc__.splitlines()[0])
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress details")
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
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["workflow"]:
        # The workflow runner has its own options (and --help); hand them over whole.
        from bridge_downstream_adapters.glue_workflow import main as workflow_main

        return workflow_main(argv[1:])
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s"
    )
    try:
        return args.handler(args)
    except (UsageError, RegistryError, ProfileError, ValueError) as error:
        print(f"bridge-downstream: error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
