"""Glue job arguments, parsed the way ``awsglue.utils.getResolvedOptions``
parses them (``--name value`` or ``--name=value``; hyphens in names become
underscores), so the job scripts run on Glue and on plain local PySpark
alike without importing awsglue."""

from __future__ import annotations

from collections.abc import Iterable, Sequence


class MissingJobArgument(Exception):
    pass


def resolve_options(
    argv: Sequence[str], required: Iterable[str], optional: dict[str, str | None] | None = None
) -> dict[str, str | None]:
    values: dict[str, str] = {}
    items = list(argv[1:]) if argv and not str(argv[0]).startswith("--") else list(argv)
    index = 0
    while index < len(items):
        item = items[index]
        if item.startswith("--"):
            name, sep, value = item[2:].partition("=")
            if not sep:
                if index + 1 < len(items) and not items[index + 1].startswith("--"):
                    value = items[index + 1]
                    index += 1
                else:
                    value = ""
            values[name.replace("-", "_")] = value
        index += 1
    resolved: dict[str, str | None] = {}
    missing = []
    for name in required:
        key = name.replace("-", "_")
        if key not in values:
            missing.append(f"--{name}")
        else:
            resolved[key] = values[key]
    if missing:
        raise MissingJobArgument(f"missing job arguments: {', '.join(missing)}")
    for name, default in (optional or {}).items():
        key = name.replace("-", "_")
        resolved[key] = values.get(key, default)
    return resolved
