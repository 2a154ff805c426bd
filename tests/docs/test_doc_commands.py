"""Docs that cannot go stale: every shell command README.md and docs/*.md
show (```sh blocks, and inline `pipenv run bridge-downstream ...`) runs here
against the bundled samples, in a temporary copy of the demo's folders, and
must succeed. A synopsis (``run ARCHIVES... [--nested]``) cannot run: its
command and every option it names must be in that command's ``--help``.
The few commands that cannot run here are in SKIPPED, each with its reason."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from bridge_downstream_cli.main import main
from project_paths import PROJECT_ROOT
from support import build_sample_registry

DOCS = [PROJECT_ROOT / "README.md", *sorted((PROJECT_ROOT / "docs").glob("*.md"))]
SHELL_FENCES = ("sh", "bash", "shell")
CLI = "bridge-downstream"

# Commands shown that do not run here: the start of the command -> why.
SKIPPED = {
    "make demo": "installs from the locks and rebuilds demo-output/: the workspace below is what it makes",
    "make test": "runs this suite",
    f"{CLI} registry build --sources registry-sources/mtb.yaml": (
        "needs the real data in ../shared/data (tests/config/test_registry_sources.py builds it)"
    ),
}
# A placeholder in a shown command -> what it stands for in the workspace.
PLACEHOLDERS = {"/shared/study-out": "study-out"}
SYNOPSIS = re.compile(r"\.\.\.|\[--|\b[A-Z][A-Z_]{2,}\b|\w\|\w")


def shown_commands(path: Path) -> list[tuple[int, str]]:
    """(line number, command) for each command the file shows."""
    found: list[tuple[int, str]] = []
    lines = path.read_text().splitlines()
    index = 0
    while index < len(lines):
        fence = lines[index].strip()
        if fence.startswith("```") and fence[3:].strip() in SHELL_FENCES:
            index += 1
            command, start = "", index
            while index < len(lines) and not lines[index].strip().startswith("```"):
                line = lines[index]
                command = f"{command}\n{line}" if command else line
                start = start if command != line else index
                if not line.rstrip().endswith("\\") and command.count('"') % 2 == 0:
                    if command.strip() and not command.lstrip().startswith("#"):
                        found.append((start + 1, command))
                    command = ""
                index += 1
        else:
            found.extend((index + 1, m.group(1)) for m in re.finditer(r"`(pipenv run bridge-downstream[^`]*)`", fence))
        index += 1
    return found


def _without_comment(command: str) -> str:
    return re.sub(r"\s+#[^\n\"']*$", "", command.strip(), flags=re.MULTILINE)


def _normalized(command: str) -> str:
    return _without_comment(command).replace("pipenv run ", "")


def _case(path: Path, line: int, command: str):
    text = _normalized(command)
    reason = next((why for start, why in SKIPPED.items() if text.startswith(start)), None)
    marks = [pytest.mark.skip(reason=reason)] if reason else []
    return pytest.param(text, id=f"{path.name}:{line}", marks=marks)


CASES = [_case(path, line, command) for path in DOCS for line, command in shown_commands(path)]


@pytest.fixture(scope="module")
def workspace(tmp_path_factory) -> Path:
    """What `make demo` leaves, and the folders the docs' examples name (registry/, out/)."""
    root = tmp_path_factory.mktemp("docs")
    for name in ("samples", "registry-sources"):
        (root / name).symlink_to(PROJECT_ROOT / name)
    build_sample_registry(root / "demo-output" / "registry")
    shutil.copytree(root / "demo-output" / "registry", root / "registry")
    runs = [
        ("samples/archives", "demo-output/mtb", "mtb"),
        ("samples/exports", "demo-output/recover", "recover"),
        ("samples/archives", "out", "mtb"),
    ]
    cwd = os.getcwd()
    os.chdir(root)
    try:
        for source, output, profile in runs:
            argv = ["run", source, "--registry", "registry", "--output", output, "--profile", profile]
            assert main([*argv, "--no-progress", "--max-invalid", "100%"]) == 0
    finally:
        os.chdir(cwd)
    return root


def _help(words: list[str]) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "bridge_downstream_cli", *words, "--help"], check=False, capture_output=True, text=True
    )
    assert done.returncode == 0, f"`{CLI} {' '.join(words)}` is no command: {done.stderr.strip()}"
    return done.stdout


def check_synopsis(command: str) -> None:
    words = command.split()
    assert words[0] == CLI, f"a synopsis of another program: {command}"
    path: list[str] = []
    for word in words[1:]:
        if not re.fullmatch(r"[a-z][a-z-]*", word) or path and "{" not in _help(path):
            break
        path.append(word)
    helptext = _help(path)
    for option in re.findall(r"(?<![\w-])(--[a-z][a-z-]*)", command):
        assert option in helptext, f"`{CLI} {' '.join(path)}` has no option {option}"


@pytest.mark.parametrize("command", CASES)
def test_a_shown_command_works(command, workspace):
    if SYNOPSIS.search(command.replace("<run id>", "")) and command.startswith(CLI):
        check_synopsis(command)
        return
    for shown, meant in PLACEHOLDERS.items():
        command = command.replace(shown, meant)
    if "<run id>" in command:
        run_id = next((workspace / "demo-output" / "mtb" / "commits").glob("*.json")).stem
        command = command.replace("<run id>", run_id)
    program = command.split()[0]
    if shutil.which(program) is None and program != CLI:
        pytest.skip(f"{program} is not installed here")
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    done = subprocess.run(
        ["bash", "-c", command], check=False, cwd=workspace, env=env, capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, f"{command}\nexit {done.returncode}\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}"
    assert "Traceback" not in done.stderr


def test_every_doc_shows_commands_the_test_finds():
    assert len(CASES) >= 15  # a broken extractor must not pass by finding nothing


def test_the_readme_lists_every_command_there_is():
    """The README's command list and ``bridge-downstream --help`` name the same commands."""
    import argparse

    from bridge_downstream_cli.main import build_parser

    (commands,) = [a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction)]
    readme = (PROJECT_ROOT / "README.md").read_text()
    section = readme.split("## The local command", 1)[1].split("\n## ", 1)[0]
    listed = set(re.findall(r"pipenv run bridge-downstream ([a-z]+)", section))
    assert listed == set(commands.choices)
