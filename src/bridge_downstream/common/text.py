"""Text from uploads, metadata and file names, as the pipeline shows and judges it.

One rule for every stage: a name or an id holds no control character, and
every such text that reaches a reason, a log or a terminal is shown escaped.
"""

from __future__ import annotations

import re

# C0, DEL and C1 (U+009B is a terminal's CSI): none belongs in a name or an id.
_CONTROL_CHARACTER = re.compile("[\x00-\x1f\x7f-\x9f]")


def printable(text: str) -> str:
    """``text`` as a reason shows it: control and other unprintable characters
    escaped as Python's ``repr`` escapes them, so no name from an archive
    puts a raw terminal escape or a forged line into a log or a terminal."""
    return text if text.isprintable() else repr(text)[1:-1]


def control_character_problem(text: str) -> str | None:
    """``holds the control character U+001B`` for text that holds one, else None."""
    control = _CONTROL_CHARACTER.search(text)
    return f"holds the control character U+{ord(control[0]):04X}" if control else None
