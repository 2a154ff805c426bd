"""What every ``bridge-downstream`` command shares, whoever wrote it: the
project config file, the options every command takes (``--config``,
``-v``/``-q``, ``--log-format``), logging, and names given by a person
(dataset ids and table names, with the close matches when one is unknown).

A command added in a module of its own gets all of it by being registered on
the parser :func:`bridge_downstream_cli.main.build_parser` builds: the common
options are added to every subcommand there, and the config file's defaults
apply to any option whose destination it names.
"""

from __future__ import annotations

import argparse
import difflib
import json
import logging
import sys
from collections.abc import Iterable, Iterator, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import ClassVar

from bridge_downstream.relationalize.naming import root_table_name
from bridge_downstream_cli.errors import UsageError

CONFIG_FILE_NAME = "bridge-downstream.yaml"

# The config file's keys: the options they default, and whether a relative path is the file's folder's.
CONFIG_KEYS: dict[str, bool] = {
    "registry": True,
    "output": True,
    "profile": False,
    "engine": False,
    "workers": False,
    "max_invalid": False,
    "retention": False,
    "app_id": False,
    "max_rows": False,
}
_PATH_LIKE_PROFILE_SUFFIXES = (".yaml", ".yml")

LOG_FORMATS = ("text", "json")
_ROOT_LOGGER = "bridge_downstream"


# ------------------------------------------------------------------ config file


def command_parser(parser: argparse.ArgumentParser, argv: list[str]) -> argparse.ArgumentParser:
    """The (sub)parser of the command ``argv`` names: its leading words, as far as they name commands."""
    for word in argv:
        if word.startswith("-"):
            continue
        choices = next(
            (a.choices for a in parser._actions if isinstance(a, argparse._SubParsersAction)),
            None,
        )
        if not choices or word not in choices:
            break
        parser = choices[word]
    return parser


def config_file_of(parser: argparse.ArgumentParser, argv: list[str], working_folder: Path | None = None) -> Path | None:
    """The config file a command line uses: ``--config FILE``, else
    ``bridge-downstream.yaml`` in the working folder when there is one."""
    finder = argparse.ArgumentParser(add_help=False)
    finder.add_argument("--config")
    known, _ = finder.parse_known_args(argv)
    if (
        known.config
        and getattr(command_parser(parser, argv)._option_string_actions.get("--config"), "dest", None)
        != "project_config"
    ):
        known.config = None  # the command's own --config (a delivery's), not the project's
    if known.config:
        path = Path(known.config)
        if not path.is_file():
            raise UsageError(f"--config {known.config}: no such file")
        return path
    default = (working_folder or Path.cwd()) / CONFIG_FILE_NAME
    return default if default.is_file() else None


def load_config_file(path: Path) -> dict[str, object]:
    """The defaults a config file gives, keyed by option destination, its
    relative paths made the file's folder's (a config file means the same
    from wherever it is used)."""
    import yaml

    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as error:
        raise UsageError(f"{path}: not YAML ({str(error).splitlines()[0]})") from None
    if not isinstance(raw, dict):
        raise UsageError(f"{path}: expected a mapping of option: value, not {type(raw).__name__}")
    defaults: dict[str, object] = {}
    for key, value in raw.items():
        dest = str(key).replace("-", "_")
        if dest not in CONFIG_KEYS:
            raise UsageError(f"{path}: unknown key {key!r}{close_matches_hint(str(key), CONFIG_KEYS)}")
        if CONFIG_KEYS[dest] or (dest == "profile" and str(value).endswith(_PATH_LIKE_PROFILE_SUFFIXES)):
            value = str((path.parent / str(value)).resolve()) if not str(value).startswith("s3://") else value
        defaults[dest] = value
    return defaults


def subparsers_of(parser: argparse.ArgumentParser) -> Iterator[argparse.ArgumentParser]:
    """Every parser below ``parser``, at any depth."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in dict.fromkeys(action.choices.values()):  # aliases name one parser twice
                yield sub
                yield from subparsers_of(sub)


def apply_config_defaults(parser: argparse.ArgumentParser, defaults: Mapping[str, object]) -> None:
    """The config file's values become the defaults of the options they name,
    on every command that has them; a flag given still wins, and an option the
    file gives is no longer required."""
    for sub in [parser, *subparsers_of(parser)]:
        for action in sub._actions:
            if action.dest in defaults and action.option_strings:
                value = defaults[action.dest]
                takes_a_value = action.nargs != 0  # a flag (store_true) takes the file's value as it is
                # argparse converts a text default with the option's type, as it converts a flag's text
                action.default = str(value) if takes_a_value and not isinstance(value, str) else value
                action.required = False


def add_common_options(parser: argparse.ArgumentParser) -> None:
    """``--config``, ``-v``/``-q`` and ``--log-format`` on ``parser`` and on
    every subcommand, so they may be given before or after the command's name."""
    for index, sub in enumerate([parser, *subparsers_of(parser)]):
        # Below the top, SUPPRESS: a subcommand that is not given a flag leaves the top's value alone.
        default = None if index == 0 else argparse.SUPPRESS
        group = sub.add_argument_group("common options")
        if "--config" not in sub._option_string_actions:  # `export deliver --config` is its delivery's
            group.add_argument(
                "--config",
                dest="project_config",
                metavar="FILE",
                default=default,
                help=f"defaults for the options (default: ./{CONFIG_FILE_NAME} when present)",
            )
        group.add_argument(
            "-v", "--verbose", action="count", default=0 if index == 0 else default, help="more detail (-vv: debug)"
        )
        group.add_argument(
            "-q", "--quiet", action="count", default=0 if index == 0 else default, help="errors only, no progress bars"
        )
        group.add_argument(
            "--log-format",
            choices=LOG_FORMATS,
            default="text" if index == 0 else default,
            help="text, or json: one ECS-style object a line",
        )


# --------------------------------------------------------------------- logging


class EcsJsonFormatter(logging.Formatter):
    """One JSON object a line, with Elastic Common Schema field names (as
    recover's jobs logged): a log shipper indexes them without a parser."""

    # LogRecord attributes set through ``extra=`` -> their ECS names
    EVENT_FIELDS: ClassVar[dict[str, str]] = {
        "run_id": "labels.run_id",
        "archive": "file.path",
        "record_id": "labels.record_id",
        "outcome": "event.outcome",
        "reason": "event.reason",
        "dataset": "labels.dataset",
        "action": "event.action",
    }

    def format(self, record: logging.LogRecord) -> str:
        document: dict[str, object] = {
            "@timestamp": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "log.level": record.levelname.lower(),
            "log.logger": record.name,
            "message": record.getMessage(),
            "ecs.version": "8.11.0",
        }
        for attribute, field_name in self.EVENT_FIELDS.items():
            value = getattr(record, attribute, None)
            if value is not None:
                document[field_name] = value
        if record.exc_info:
            document["error.message"] = str(record.exc_info[1])
        return json.dumps(document, default=str)


def verbosity(args: argparse.Namespace) -> int:
    """-1 with -q, 0 by default, 1 with -v, 2 with -vv."""
    return (getattr(args, "verbose", 0) or 0) - (getattr(args, "quiet", 0) or 0)


def configure_logging(args: argparse.Namespace) -> None:
    level = {-1: logging.ERROR, 0: logging.WARNING, 1: logging.INFO}.get(
        max(-1, min(verbosity(args), 2)), logging.DEBUG
    )
    handler = logging.StreamHandler(sys.stderr)
    if getattr(args, "log_format", "text") == "json":
        handler.setFormatter(EcsJsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    for old in list(root.handlers):
        if getattr(old, "_bridge_downstream", False):
            root.removeHandler(old)
    handler._bridge_downstream = True  # type: ignore[attr-defined]  # ours to replace on the next call
    root.addHandler(handler)
    root.setLevel(level)


def event_logger(name: str) -> logging.Logger:
    """A logger under the project's root logger (``bridge_downstream.cli.<name>``)."""
    return logging.getLogger(f"{_ROOT_LOGGER}.cli.{name}")


def show_progress(args: argparse.Namespace) -> bool:
    """Progress bars only on a terminal, and not with ``-q`` or ``--no-progress``."""
    return not getattr(args, "no_progress", False) and verbosity(args) >= 0 and sys.stderr.isatty()


# ----------------------------------------------------------------------- names


def close_matches_hint(name: str, known: Iterable[str]) -> str:
    """``"; did you mean X or Y?"``, case aside, or nothing."""
    by_folded: dict[str, str] = {}
    for candidate in known:
        by_folded.setdefault(candidate.casefold(), candidate)
    matches = difflib.get_close_matches(name.casefold(), list(by_folded), n=3, cutoff=0.6)
    return f"; did you mean {' or '.join(by_folded[m] for m in matches)}?" if matches else ""


def resolve_dataset_ids(given: Iterable[str], dataset_ids: Iterable[str]) -> list[str]:
    """The dataset ids meant by ``given``: each a dataset id or a table name
    (its root table, or any child table of it), case aside. An unknown name is
    a :class:`UsageError` naming the close matches."""
    ids = sorted(dataset_ids)
    by_folded = {dataset_id.casefold(): dataset_id for dataset_id in ids}
    by_table = {root_table_name(dataset_id): dataset_id for dataset_id in ids}
    chosen: list[str] = []
    for name in given:
        folded = name.casefold()
        dataset_id = by_folded.get(folded) or by_table.get(folded)
        if dataset_id is None:
            # A child table (dataset_taskdata_v1_steps) belongs to the dataset with the longest root-table prefix.
            owners = [table for table in by_table if folded.startswith(table + "_")]
            dataset_id = by_table[max(owners, key=len)] if owners else None
        if dataset_id is None:
            known = ", ".join(ids) if len(ids) <= 8 else f"{len(ids)} datasets"
            raise UsageError(
                f"no dataset {name!r}{close_matches_hint(name, [*ids, *by_table])} (known: {known or 'none'})"
            )
        if dataset_id not in chosen:
            chosen.append(dataset_id)
    return chosen
