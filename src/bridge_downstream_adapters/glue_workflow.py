"""A local Glue workflow runner: run a workflow's jobs in trigger order.

Glue runs a workflow by firing its start trigger (ON_DEMAND, SCHEDULED or
EVENT; ``StartWorkflowRun`` fires it whatever its type), running the trigger's
jobs, then firing every CONDITIONAL trigger whose predicate the finished jobs
satisfy, until nothing more fires. This module does the same on one machine:

* the workflow -- its triggers and the jobs they start, with each job's script
  location and DefaultArguments -- is read from the Glue API
  (:func:`workflow_from_glue`, e.g. moto after :mod:`.cfn_harness`) or from a
  rendered CloudFormation template (:func:`workflow_from_template`, no API);
* each job is handed to a *job runner*, a callable you provide, with the
  arguments Glue would pass: the job's DefaultArguments, overridden by the
  trigger action's Arguments, plus ``--JOB_NAME``, ``--JOB_RUN_ID``,
  ``--WORKFLOW_NAME`` and ``--WORKFLOW_RUN_ID``;
* run properties live in the Glue API when a client is given (the job scripts
  call ``get_workflow_run_properties`` / ``put_workflow_run_properties`` as on
  Glue), else in a local dict passed to each job.

Job runners provided: :func:`script_main_runner` (imports
``<scripts_dir>/<script>.py`` and calls its ``main(argv, **kwargs)`` in this
process, so a local Spark session can be passed in), :func:`subprocess_runner`
(``python <script> --k v ...``) and :func:`mapping_runner` (script name ->
callable). A runner raises (or returns ``"FAILED"``) for a failed job.

Command line (``python -m bridge_downstream_adapters.glue_workflow``)::

    run --workflow NAME [--template FILE --parameter K=V ...] [--property K=V ...]
        [--run-id ID | --pending] [--scripts-dir src/glue/jobs]
    show --workflow NAME [--template FILE --parameter K=V ...]
"""

from __future__ import annotations

import argparse
import importlib.machinery
import importlib.util
import logging
import subprocess
import sys
import time
import traceback
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any, cast

log = logging.getLogger("glue_workflow")

START_TRIGGER_TYPES = ("ON_DEMAND", "SCHEDULED", "EVENT")
JOB_STATES = ("SUCCEEDED", "FAILED", "STOPPED", "TIMEOUT", "ERROR")
RUNNER_STATUS_PROPERTY = "local_runner_status"


# ------------------------------------------------------------------ model


@dataclass(frozen=True)
class JobDefinition:
    name: str
    script_location: str
    default_arguments: Mapping[str, str] = field(default_factory=dict)
    glue_version: str | None = None
    worker_type: str | None = None
    number_of_workers: int | None = None

    @property
    def script_name(self) -> str:
        """``s3://.../glue/jobs/s3_to_json.py`` -> ``s3_to_json``."""
        return self.script_location.rsplit("/", 1)[-1].removesuffix(".py")


@dataclass(frozen=True)
class Condition:
    job_name: str
    state: str = "SUCCEEDED"
    logical_operator: str = "EQUALS"


@dataclass(frozen=True)
class Action:
    job_name: str
    arguments: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class TriggerDefinition:
    name: str
    type: str
    actions: tuple[Action, ...]
    conditions: tuple[Condition, ...] = ()
    logical: str = "AND"
    schedule: str | None = None

    @property
    def is_start(self) -> bool:
        return self.type in START_TRIGGER_TYPES

    def satisfied(self, states: Mapping[str, str]) -> bool:
        results = [states.get(c.job_name) == c.state for c in self.conditions]
        if not results:
            return False
        return all(results) if self.logical == "AND" else any(results)


@dataclass
class WorkflowDefinition:
    name: str
    triggers: list[TriggerDefinition]
    jobs: dict[str, JobDefinition]
    default_run_properties: dict[str, str] = field(default_factory=dict)

    @property
    def start_triggers(self) -> list[TriggerDefinition]:
        return [t for t in self.triggers if t.is_start]

    def describe(self) -> str:
        lines = [f"workflow {self.name}"]
        for trigger in self.triggers:
            when = trigger.schedule or ""
            if trigger.conditions:
                joined = f" {trigger.logical} ".join(f"{c.job_name} {c.state}" for c in trigger.conditions)
                when = f"when {joined}"
            lines.append(f"  trigger {trigger.name} [{trigger.type}] {when}".rstrip())
            for action in trigger.actions:
                job = self.jobs[action.job_name]
                lines.append(f"    -> {job.name} ({job.script_name}, {job.worker_type} x{job.number_of_workers})")
        return "\n".join(lines)


def _trigger_from_api(trigger: Mapping[str, Any]) -> TriggerDefinition:
    predicate = trigger.get("Predicate") or {}
    conditions = []
    for condition in predicate.get("Conditions", []):
        if "JobName" not in condition:
            raise ValueError(f"trigger {trigger['Name']}: crawler conditions are not supported by the local runner")
        conditions.append(
            Condition(
                condition["JobName"], condition.get("State", "SUCCEEDED"), condition.get("LogicalOperator", "EQUALS")
            )
        )
    actions = []
    for action in trigger.get("Actions", []):
        if "JobName" not in action:
            raise ValueError(f"trigger {trigger['Name']}: only job actions are supported by the local runner")
        actions.append(Action(action["JobName"], dict(action.get("Arguments") or {})))
    return TriggerDefinition(
        name=trigger["Name"],
        type=trigger["Type"],
        actions=tuple(actions),
        conditions=tuple(conditions),
        logical=predicate.get("Logical", "AND"),
        schedule=trigger.get("Schedule"),
    )


def _job_from_api(job: Mapping[str, Any]) -> JobDefinition:
    return JobDefinition(
        name=job["Name"],
        script_location=job["Command"]["ScriptLocation"],
        default_arguments={k: str(v) for k, v in (job.get("DefaultArguments") or {}).items()},
        glue_version=job.get("GlueVersion"),
        worker_type=job.get("WorkerType"),
        number_of_workers=job.get("NumberOfWorkers"),
    )


def workflow_from_glue(name: str, glue_client) -> WorkflowDefinition:
    """Read a workflow, its triggers and their jobs from the Glue API."""
    workflow = glue_client.get_workflow(Name=name)["Workflow"]
    triggers = []
    token = None
    while True:
        page = glue_client.get_triggers(**({"NextToken": token} if token else {}))
        triggers += [t for t in page["Triggers"] if t.get("WorkflowName") == name]
        token = page.get("NextToken")
        if not token:
            break
    definitions = [_trigger_from_api(t) for t in triggers]
    jobs = {}
    for trigger in definitions:
        for action in trigger.actions:
            if action.job_name not in jobs:
                jobs[action.job_name] = _job_from_api(glue_client.get_job(JobName=action.job_name)["Job"])
    return WorkflowDefinition(name, definitions, jobs, dict(workflow.get("DefaultRunProperties") or {}))


def workflows_from_template(
    template: Any,
    parameters: Mapping[str, str] | None = None,
    *,
    stack_name: str = "local",
    region: str = "us-east-1",
    account_id: str = "123456789012",
) -> dict[str, WorkflowDefinition]:
    """Every workflow of a rendered template (JSON/YAML text or dict), by name.

    ``parameters`` are the stack parameters (bucket names, namespace, ...);
    a parameter without a value and without a default is an error.
    """
    from bridge_downstream_adapters.cfn_harness import StackContext, load_template

    template = load_template(template)
    context = StackContext(
        template=template,
        parameters=dict(parameters or {}),
        stack_name=stack_name,
        region=region,
        account_id=account_id,
    )
    missing = [p for p in (template.get("Parameters") or {}) if p not in context.parameters]
    if missing:
        raise ValueError(f"template parameters without a value: {', '.join(missing)}")
    resources = template.get("Resources") or {}

    def props(resource):
        return context.resolve(resource.get("Properties") or {})

    jobs = {}
    for resource in resources.values():
        if resource["Type"] == "AWS::Glue::Job" and context.resource_enabled(resource):
            p = props(resource)
            p.setdefault("Command", {})
            jobs[p["Name"]] = _job_from_api(p)
    workflows = {}
    triggers: dict[str, list] = {}
    for resource in resources.values():
        if not context.resource_enabled(resource):
            continue
        if resource["Type"] == "AWS::Glue::Workflow":
            p = props(resource)
            workflows[p["Name"]] = p
        elif resource["Type"] == "AWS::Glue::Trigger":
            p = props(resource)
            triggers.setdefault(p.get("WorkflowName"), []).append(p)
    out = {}
    for name, p in workflows.items():
        definitions = [_trigger_from_api(t) for t in triggers.get(name, [])]
        used = {a.job_name for t in definitions for a in t.actions}
        unknown = used - set(jobs)
        if unknown:
            raise ValueError(f"workflow {name}: jobs not in the template: {sorted(unknown)}")
        out[name] = WorkflowDefinition(
            name, definitions, {j: jobs[j] for j in used}, dict(p.get("DefaultRunProperties") or {})
        )
    return out


def workflow_from_template(
    template: Any, name: str, parameters: Mapping[str, str] | None = None, **kwargs
) -> WorkflowDefinition:
    workflows = workflows_from_template(template, parameters, **kwargs)
    if name not in workflows:
        raise KeyError(f"no workflow {name!r} in the template (has {sorted(workflows)})")
    return workflows[name]


# ------------------------------------------------------------------ running


@dataclass
class JobInvocation:
    """What a job runner receives for one job run."""

    job: JobDefinition
    workflow_name: str
    run_id: str
    job_run_id: str
    arguments: dict[str, str]  # "--key" -> value, as Glue passes them
    run_properties: dict[str, str]  # a snapshot (the live ones are in the Glue API, when there is one)
    glue_client: Any = None

    @property
    def argv(self) -> list[str]:
        """``sys.argv`` as Glue builds it: script name, then ``--key value`` pairs."""
        argv = [self.job.script_name + ".py"]
        for key, value in self.arguments.items():
            argv += [key if key.startswith("--") else f"--{key}", str(value)]
        return argv


JobRunner = Callable[[JobInvocation], Any]


@dataclass
class JobRun:
    job_name: str
    trigger_name: str
    job_run_id: str
    state: str
    seconds: float
    error: str | None = None


@dataclass
class WorkflowRunResult:
    workflow_name: str
    run_id: str
    job_runs: list[JobRun]
    run_properties: dict[str, str]
    fired_triggers: list[str]

    @property
    def succeeded(self) -> bool:
        return bool(self.job_runs) and all(r.state == "SUCCEEDED" for r in self.job_runs)

    def states(self) -> dict[str, str]:
        return {r.job_name: r.state for r in self.job_runs}

    def summary(self) -> str:
        lines = [f"{self.workflow_name} run {self.run_id}: {'SUCCEEDED' if self.succeeded else 'FAILED'}"]
        for r in self.job_runs:
            lines.append(
                f"  {r.job_name}: {r.state} in {r.seconds:.1f}s (trigger {r.trigger_name})"
                + (f"\n    {r.error.strip().splitlines()[-1]}" if r.error else "")
            )
        return "\n".join(lines)


def _read_properties(glue_client, workflow: str, run_id: str, local: dict[str, str]) -> dict[str, str]:
    if glue_client is None:
        return dict(local)
    return dict(glue_client.get_workflow_run_properties(Name=workflow, RunId=run_id)["RunProperties"])


def run_workflow(
    workflow: WorkflowDefinition,
    job_runner: JobRunner,
    *,
    glue_client=None,
    run_id: str | None = None,
    run_properties: Mapping[str, str] | None = None,
    mark_completed: bool = True,
) -> WorkflowRunResult:
    """Run one workflow run: start triggers, then conditional triggers, to the end.

    With ``glue_client`` the run lives in the Glue API: ``run_id`` names an
    existing run (e.g. started by the sqs_to_glue Lambda), else a run is started
    with ``run_properties``; jobs read and update its properties through the
    API. Without it, the run id is local and ``run_properties`` is the dict the
    jobs see (and may change, via ``invocation.run_properties``).
    Jobs run one at a time, in trigger order; each job runs at most once.
    """
    local_properties = {**workflow.default_run_properties, **dict(run_properties or {})}
    if glue_client is not None and run_id is None:
        run_id = glue_client.start_workflow_run(Name=workflow.name, RunProperties=local_properties)["RunId"]
    elif glue_client is not None and run_properties:
        glue_client.put_workflow_run_properties(Name=workflow.name, RunId=run_id, RunProperties=dict(run_properties))
    run_id = run_id or f"wr_local_{uuid.uuid4().hex}"

    states: dict[str, str] = {}
    job_runs: list[JobRun] = []
    fired: list[str] = []
    queue: list[tuple[str, Action]] = []

    def fire(trigger: TriggerDefinition) -> None:
        fired.append(trigger.name)
        for action in trigger.actions:
            if action.job_name not in states and all(a.job_name != action.job_name for _, a in queue):
                queue.append((trigger.name, action))

    for trigger in workflow.start_triggers:
        fire(trigger)
    if not queue:
        raise ValueError(f"workflow {workflow.name} has no start trigger with job actions")

    while queue:
        trigger_name, action = queue.pop(0)
        job = workflow.jobs[action.job_name]
        job_run_id = f"jr_local_{uuid.uuid4().hex[:24]}"
        arguments = {
            **job.default_arguments,
            **action.arguments,
            "--JOB_NAME": job.name,
            "--JOB_RUN_ID": job_run_id,
            "--WORKFLOW_NAME": workflow.name,
            "--WORKFLOW_RUN_ID": run_id,
        }
        properties = _read_properties(glue_client, workflow.name, run_id, local_properties)
        invocation = JobInvocation(job, workflow.name, run_id, job_run_id, arguments, properties, glue_client)
        log.info("%s: running %s (%s)", workflow.name, job.name, job.script_name)
        started = time.monotonic()
        error = None
        try:
            outcome = job_runner(invocation)
            state = outcome if isinstance(outcome, str) and outcome in JOB_STATES else "SUCCEEDED"
        except Exception:  # noqa: BLE001 -- a failed job is a state, as on Glue
            state, error = "FAILED", traceback.format_exc()
            log.error("%s: %s failed:\n%s", workflow.name, job.name, error)
        if glue_client is None:
            local_properties = invocation.run_properties
        states[job.name] = state
        job_runs.append(JobRun(job.name, trigger_name, job_run_id, state, time.monotonic() - started, error))
        for trigger in workflow.triggers:
            if not trigger.is_start and trigger.name not in fired and trigger.satisfied(states):
                fire(trigger)

    final = _read_properties(glue_client, workflow.name, run_id, local_properties)
    if glue_client is not None and mark_completed:
        status = "SUCCEEDED" if all(s == "SUCCEEDED" for s in states.values()) else "FAILED"
        glue_client.put_workflow_run_properties(
            Name=workflow.name, RunId=run_id, RunProperties={RUNNER_STATUS_PROPERTY: status}
        )
    return WorkflowRunResult(workflow.name, run_id, job_runs, final, fired)


def pending_runs(glue_client, workflow_name: str) -> list[str]:
    """Runs of a workflow the local runner has not run yet (oldest first)."""
    runs = glue_client.get_workflow_runs(Name=workflow_name)["Runs"]
    pending = [
        r
        for r in runs
        if r.get("Status") == "RUNNING" and RUNNER_STATUS_PROPERTY not in (r.get("WorkflowRunProperties") or {})
    ]
    return [r["WorkflowRunId"] for r in sorted(pending, key=lambda r: r["StartedOn"])]


def run_pending(workflow: WorkflowDefinition, job_runner: JobRunner, glue_client) -> list[WorkflowRunResult]:
    """Run every pending run of the workflow (e.g. those the Lambda started)."""
    return [
        run_workflow(workflow, job_runner, glue_client=glue_client, run_id=run_id)
        for run_id in pending_runs(glue_client, workflow.name)
    ]


# ------------------------------------------------------------------ job runners


def mapping_runner(jobs: Mapping[str, Callable[[list[str]], Any]]) -> JobRunner:
    """Call ``jobs[script name](argv)``; e.g. ``{"s3_to_json": partial(main, spark=spark)}``."""

    def run(invocation: JobInvocation):
        if invocation.job.script_name not in jobs:
            raise KeyError(f"no local implementation for job script {invocation.job.script_name!r}")
        return jobs[invocation.job.script_name](invocation.argv)

    return run


def _load_script(path: Path) -> ModuleType:
    name = f"glue_job_{path.stem}"
    # A path ending in .py always gets a spec, with a SourceFileLoader.
    spec = cast(importlib.machinery.ModuleSpec, importlib.util.spec_from_file_location(name, path))
    loader = cast(importlib.machinery.SourceFileLoader, spec.loader)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    loader.exec_module(module)
    return module


def script_main_runner(scripts_dir: str | Path, **main_kwargs) -> JobRunner:
    """Import ``<scripts_dir>/<script>.py`` and call ``main(argv, **main_kwargs)``
    (the job scripts' entry point; pass ``spark=``, ``glue_client=``, ... to share
    a local Spark session and clients)."""
    scripts_dir = Path(scripts_dir)
    modules: dict[str, Any] = {}

    def run(invocation: JobInvocation):
        script = invocation.job.script_name
        if script not in modules:
            path = scripts_dir / f"{script}.py"
            if not path.exists():
                raise FileNotFoundError(
                    f"job script {path} not found (ScriptLocation {invocation.job.script_location})"
                )
            modules[script] = _load_script(path)
        kwargs = dict(main_kwargs)
        if "glue_client" not in kwargs and invocation.glue_client is not None:
            kwargs["glue_client"] = invocation.glue_client
        return modules[script].main(invocation.argv, **kwargs)

    return run


def subprocess_runner(
    scripts_dir: str | Path,
    python: str = sys.executable,
    env: Mapping[str, str] | None = None,
    timeout: float | None = None,
) -> JobRunner:
    """Run ``python <scripts_dir>/<script>.py --key value ...`` (the environment
    carries AWS_ENDPOINT_URL and credentials to reach the emulated services)."""
    import os

    scripts_dir = Path(scripts_dir)

    def run(invocation: JobInvocation):
        path = scripts_dir / f"{invocation.job.script_name}.py"
        result = subprocess.run(
            [python, str(path), *invocation.argv[1:]],
            env={**os.environ, **dict(env or {})},
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        if result.returncode != 0:
            raise RuntimeError(f"{path.name} exited {result.returncode}:\n{result.stderr[-4000:]}")

    return run


# ------------------------------------------------------------------ CLI


def _pairs(items: Sequence[str] | None) -> dict[str, str]:
    out = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep:
            raise SystemExit(f"expected KEY=VALUE, got {item!r}")
        out[key] = value
    return out


def _load(args, glue) -> WorkflowDefinition:
    if args.template:
        return workflow_from_template(Path(args.template).read_text(), args.workflow, _pairs(args.parameter))
    return workflow_from_glue(args.workflow, glue)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bridge-downstream workflow", description=__doc__.split("\n\n", 1)[0])
    sub = parser.add_subparsers(dest="command", required=True)
    for name in ("run", "show"):
        p = sub.add_parser(name)
        p.add_argument("--workflow", required=True, help="workflow name")
        p.add_argument("--template", help="rendered template (sceptre dump template) instead of the Glue API")
        p.add_argument("--parameter", action="append", help="template parameter KEY=VALUE")
        if name == "run":
            p.add_argument("--property", action="append", help="run property KEY=VALUE (e.g. messages='[...]')")
            p.add_argument("--run-id", help="an existing workflow run (Glue API)")
            p.add_argument("--pending", action="store_true", help="run every pending run (Glue API)")
            p.add_argument("--scripts-dir", default="src/glue/jobs", help="where the job scripts are")
            p.add_argument("--subprocess", action="store_true", help="run each script in its own Python process")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s %(message)s")

    glue = None
    if not args.template or (args.command == "run" and (args.run_id or args.pending)):
        import boto3

        glue = boto3.client("glue")
    workflow = _load(args, glue)
    if args.command == "show":
        print(workflow.describe())
        return 0
    runner = subprocess_runner(args.scripts_dir) if args.subprocess else script_main_runner(args.scripts_dir)
    if args.pending:
        results = run_pending(workflow, runner, glue)
    else:
        results = [
            run_workflow(workflow, runner, glue_client=glue, run_id=args.run_id, run_properties=_pairs(args.property))
        ]
    for result in results:
        print(result.summary())
    return 0 if all(r.succeeded for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
