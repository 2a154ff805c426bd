"""The ingest stage's JSON codec: rows are the lines of the merged dicts, byte
for byte, an element's key that a shared field also names (or that starts
with the escape) escaped."""

from __future__ import annotations

import random

import orjson
import pytest

from bridge_downstream.common import jsoncodec


def _reference(element, shared: dict, index: int) -> bytes:
    added = {*shared, "sourceindex"}
    own = (
        {("\x00" + key if key in added or key.startswith("\x00") else key): value for key, value in element.items()}
        if isinstance(element, dict)
        else {"value": element}
    )
    return orjson.dumps({**own, **shared, "sourceindex": index}, option=orjson.OPT_APPEND_NEWLINE)


def _element(rng: random.Random):
    names = ["x", "y", "stepPath", "recordid", "sourceindex", "sourcefile", "é", 'quote"d', "value", "\x00x"]
    kind = rng.random()
    if kind < 0.1:
        return rng.choice([3, "text", None, [1, {"a": 2}], 2.5, True, {}])
    element = {}
    for name in rng.sample(names, rng.randint(1, 4)):
        element[name] = rng.choice([1, -2.5, "ü\n", None, [1, 2], {"nested": {"deep": [True]}}, 10**19])
    return element


@pytest.mark.parametrize(
    "shared",
    [
        {"assessmentid": "dccs", "year": 2024, "recordid": "r-1", "sourcefile": "motion.json"},
        {"cohort": "adults", "sourcefile": "HealthKitV2Samples_Steps_20230112.json"},
        {},
    ],
)
def test_rows_are_the_merged_dicts_lines(shared):
    # Elements that share no name with the shared fields take the spliced
    # way; the others (a name in common, "sourceindex" itself, an empty
    # object, a value that is not an object) the merged dict's.
    rng = random.Random(20261124)
    rows = jsoncodec.Rows(shared)
    elements = [_element(rng) for _ in range(500)]
    expected = [_reference(element, shared, index) for index, element in enumerate(elements, 7)]
    assert [rows.line(element, index) for index, element in enumerate(elements, 7)] == expected
    assert rows.block(elements, 7) == b"".join(expected)
    assert rows.block([]) == b""
    # A name in common keeps the element's value under its escaped key, and the row the shared value.
    if "recordid" in shared:
        assert orjson.loads(rows.line({"recordid": "mine", "x": 1}, 0)) == {
            "\x00recordid": "mine",
            "x": 1,
            **shared,
            "sourceindex": 0,
        }
        assert list(orjson.loads(rows.line({"recordid": "mine", "x": 1}, 0)))[:2] == ["\x00recordid", "x"]
