"""`make deploy-check`: the deployment checked statically, offline.

Renders every stack of both stack groups (the default namespace and a branch
namespace, as sceptre would launch them), then runs cfn-lint (no error),
checkov with the committed .checkov.yaml (no failed check) and zizmor on the
GitHub workflows (no high finding). Exits non-zero, saying which, on failure.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from deploy_fixtures import ROOT, STACK_GROUPS, cfn_lint, lint_findings, render_group

CHECKS_BIN = ROOT / "deploy" / "checks" / ".venv" / "bin"
BRANCH_NAMESPACE = "br-static-check-0000000"


def render_all(out: Path) -> list[Path]:
    templates: list[Path] = []
    for group in STACK_GROUPS:
        for namespace in (None, BRANCH_NAMESPACE):
            rendered = render_group(group, out / f"{group}-{namespace or 'default'}", namespace)
            templates += rendered.values()
    return templates


def checkov_failures(template_dirs: list[Path]) -> list[str]:
    command = [str(CHECKS_BIN / "checkov"), "--config-file", str(ROOT / ".checkov.yaml"), "-o", "json"]
    for directory in template_dirs:
        command += ["-d", str(directory)]
    result = subprocess.run(command, capture_output=True, text=True, check=False, cwd=ROOT)
    reports = []
    decoder, text, index = json.JSONDecoder(), result.stdout, 0
    while index < len(text):  # one JSON document per scanned directory
        if text[index].isspace():
            index += 1
            continue
        document, index = decoder.raw_decode(text, index)
        reports += document if isinstance(document, list) else [document]
    if result.returncode not in (0, 1) or not reports:
        raise RuntimeError(f"checkov failed ({result.returncode}): {result.stderr[-2000:]}")
    return [
        f"{failed['check_id']} {failed['resource']} ({failed['file_path']})"
        for report in reports
        for failed in report.get("results", {}).get("failed_checks", [])
    ]


def zizmor_high_findings() -> list[str]:
    result = subprocess.run(
        [str(CHECKS_BIN / "zizmor"), "--offline", "--format", "json", str(ROOT / ".github" / "workflows")],
        capture_output=True,
        text=True,
        check=False,
    )
    findings = json.loads(result.stdout or "[]")
    return [
        f"{finding['ident']}: {finding['desc']}"
        for finding in findings
        if finding["determinations"]["severity"] == "High"
    ]


def main() -> int:
    started = time.monotonic()
    problems: list[str] = []
    with tempfile.TemporaryDirectory() as tmp:
        templates = render_all(Path(tmp))
        problems += [f"cfn-lint: {line}" for line in lint_findings(cfn_lint(templates), "E")]
        problems += [f"checkov: {line}" for line in checkov_failures(sorted({p.parent.parent for p in templates}))]
    problems += [f"zizmor: {line}" for line in zizmor_high_findings()]
    for problem in problems:
        print(problem, file=sys.stderr)
    print(
        f"deploy-check: {len(templates)} rendered templates, {len(problems)} problems, "
        f"{time.monotonic() - started:.0f} s"
    )
    return 1 if problems else 0


if __name__ == "__main__":
    raise SystemExit(main())
