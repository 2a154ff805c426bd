"""``bridge-downstream catalog rebuild``: the local DuckDB catalog's views, built again.

After a copy or a move of an output folder (its views name the files of the
place they were built in, and refuse to be read elsewhere), or after the
folder's versions were changed by hand. Each subcommand sets ``handler``,
``args -> exit code``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from bridge_downstream.common import layout
from bridge_downstream.common.storage import LocalStorage
from bridge_downstream.publish import DuckDBCatalog
from bridge_downstream_cli.errors import UsageError


def command_catalog_rebuild(args: argparse.Namespace) -> int:
    output = Path(args.output)
    if not (output / layout.PUBLISHED_PREFIX).is_dir():
        raise UsageError(f"{output} holds no published datasets: run `bridge-downstream run` or `publish` first")
    catalog = DuckDBCatalog(LocalStorage(output))
    views = catalog.rebuild()
    print(f"{catalog.path}: {views} views of the current published versions")
    return 0


def add_catalog_commands(commands) -> None:
    """Register ``catalog rebuild``."""
    catalog = commands.add_parser("catalog", help="the local DuckDB catalog (catalog.duckdb) of an output folder")
    subcommands = catalog.add_subparsers(dest="catalog_command", metavar="{rebuild}", required=True)
    rebuild = subcommands.add_parser(
        "rebuild",
        help="rebuild the views of every dataset's current version (after copying or moving the output folder)",
    )
    rebuild.add_argument("--output", default=".", help="pipeline root folder (default: the current folder)")
    rebuild.set_defaults(handler=command_catalog_rebuild)
