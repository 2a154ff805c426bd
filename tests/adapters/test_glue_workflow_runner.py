"""The local Glue workflow runner: trigger order, predicates, arguments, run
properties (local and through moto's Glue API), runners and the CLI."""

from __future__ import annotations

import json
import sys

import boto3
import pytest
from moto import mock_aws

from bridge_downstream_adapters import glue_workflow as gw

TEMPLATE = """
Parameters:
  Namespace: {Type: String}
  Bucket: {Type: String, Default: the-bucket}
Conditions:
  Never: !Equals [a, b]
Resources:
  A: {Type: AWS::Glue::Job, Properties: {Name: !Sub "${Namespace}-a", Role: r,
      Command: {Name: glueetl, ScriptLocation: !Sub "s3://${Bucket}/BridgeDownstream/x/glue/jobs/job_a.py"},
      DefaultArguments: {"--root": !Sub "s3://${Bucket}/${Namespace}", "--mode": one}}}
  B: {Type: AWS::Glue::Job, Properties: {Name: !Sub "${Namespace}-b", Role: r,
      Command: {Name: glueetl, ScriptLocation: "s3://x/job_b.py"}}}
  C: {Type: AWS::Glue::Job, Properties: {Name: !Sub "${Namespace}-c", Role: r,
      Command: {Name: glueetl, ScriptLocation: "s3://x/job_c.py"}}}
  D: {Type: AWS::Glue::Job, Properties: {Name: !Sub "${Namespace}-d", Role: r,
      Command: {Name: glueetl, ScriptLocation: "s3://x/job_c.py"}}}
  W: {Type: AWS::Glue::Workflow, Properties: {Name: !Sub "${Namespace}-wf", DefaultRunProperties: {k: default}}}
  Start: {Type: AWS::Glue::Trigger, Properties: {Name: start, Type: ON_DEMAND, WorkflowName: !Ref W,
          Actions: [{JobName: !Ref A}, {JobName: !Ref B, Arguments: {"--extra": "1"}}]}}
  AfterBoth: {Type: AWS::Glue::Trigger, Properties: {Name: after-both, Type: CONDITIONAL, WorkflowName: !Ref W,
          Predicate: {Logical: AND, Conditions: [{JobName: !Ref A, State: SUCCEEDED, LogicalOperator: EQUALS},
                                                 {JobName: !Ref B, State: SUCCEEDED, LogicalOperator: EQUALS}]},
          Actions: [{JobName: !Ref C}]}}
  OnFailure: {Type: AWS::Glue::Trigger, Properties: {Name: on-failure, Type: CONDITIONAL, WorkflowName: !Ref W,
          Predicate: {Logical: ANY, Conditions: [{JobName: !Ref A, State: FAILED, LogicalOperator: EQUALS},
                                                 {JobName: !Ref B, State: FAILED, LogicalOperator: EQUALS}]},
          Actions: [{JobName: !Ref D}]}}
  Disabled: {Type: AWS::Glue::Trigger, Condition: Never, Properties: {Name: disabled, Type: CONDITIONAL,
          WorkflowName: !Ref W, Predicate: {Conditions: [{JobName: !Ref A, State: SUCCEEDED}]},
          Actions: [{JobName: !Ref D}]}}
"""


@pytest.fixture
def workflow():
    return gw.workflow_from_template(TEMPLATE, "ns-wf", {"Namespace": "ns"})


def test_template_workflow_is_resolved(workflow):
    assert {t.name for t in workflow.triggers} == {"start", "after-both", "on-failure"}
    a = workflow.jobs["ns-a"]
    assert a.script_name == "job_a"
    assert a.default_arguments == {"--root": "s3://the-bucket/ns", "--mode": "one"}
    assert workflow.default_run_properties == {"k": "default"}
    with pytest.raises(ValueError, match="Namespace"):
        gw.workflows_from_template(TEMPLATE, {})


def test_trigger_order_arguments_and_local_properties(workflow):
    calls = []

    def runner(invocation):
        calls.append((invocation.job.name, dict(invocation.arguments), dict(invocation.run_properties)))
        invocation.run_properties[invocation.job.name] = "done"

    result = gw.run_workflow(workflow, runner, run_properties={"messages": "[]"})
    assert [c[0] for c in calls] == ["ns-a", "ns-b", "ns-c"]
    assert result.succeeded and result.fired_triggers == ["start", "after-both"]
    args = calls[1][1]
    assert args["--extra"] == "1" and args["--WORKFLOW_NAME"] == "ns-wf" and args["--JOB_NAME"] == "ns-b"
    assert args["--WORKFLOW_RUN_ID"] == result.run_id
    assert calls[0][2] == {"k": "default", "messages": "[]"}
    assert calls[2][2]["ns-a"] == "done"  # a later job sees an earlier job's properties
    assert result.run_properties["ns-c"] == "done"


def test_failure_fires_any_trigger_and_blocks_and_trigger(workflow):
    def runner(invocation):
        if invocation.job.name == "ns-b":
            raise RuntimeError("boom")

    result = gw.run_workflow(workflow, runner)
    assert result.states() == {"ns-a": "SUCCEEDED", "ns-b": "FAILED", "ns-d": "SUCCEEDED"}
    assert not result.succeeded
    assert "boom" in result.job_runs[1].error and "FAILED" in result.summary()


def test_runner_may_return_a_state(workflow):
    result = gw.run_workflow(workflow, lambda inv: "TIMEOUT" if inv.job.name == "ns-a" else None)
    assert result.states()["ns-a"] == "TIMEOUT" and "ns-c" not in result.states()


def test_argv_is_glue_style(workflow):
    invocation = gw.JobInvocation(workflow.jobs["ns-a"], "ns-wf", "wr_1", "jr_1", {"--x": "1", "y": "2"}, {})
    assert invocation.argv == ["job_a.py", "--x", "1", "--y", "2"]


def test_glue_api_runs_and_pending(workflow):
    with mock_aws():
        glue = boto3.client("glue", region_name="us-east-1")
        glue.create_workflow(Name="ns-wf")
        for job in workflow.jobs.values():
            glue.create_job(
                Name=job.name,
                Role="r",
                Command={"Name": "glueetl", "ScriptLocation": job.script_location},
                DefaultArguments=dict(job.default_arguments),
            )
        for trigger in workflow.triggers:
            spec = {
                "Name": trigger.name,
                "WorkflowName": "ns-wf",
                "Type": trigger.type,
                "Actions": [
                    {"JobName": a.job_name, **({"Arguments": dict(a.arguments)} if a.arguments else {})}
                    for a in trigger.actions
                ],
            }
            if trigger.conditions:
                spec["Predicate"] = {
                    "Logical": trigger.logical,
                    "Conditions": [
                        {"JobName": c.job_name, "State": c.state, "LogicalOperator": "EQUALS"}
                        for c in trigger.conditions
                    ],
                }
            glue.create_trigger(**spec)
        from_api = gw.workflow_from_glue("ns-wf", glue)
        assert {t.name for t in from_api.triggers} == {"start", "after-both", "on-failure"}
        assert from_api.jobs["ns-a"].default_arguments["--root"] == "s3://the-bucket/ns"

        run_id = glue.start_workflow_run(Name="ns-wf", RunProperties={"messages": '["m"]'})["RunId"]
        assert gw.pending_runs(glue, "ns-wf") == [run_id]
        seen = []

        def runner(invocation):
            props = invocation.glue_client.get_workflow_run_properties(Name="ns-wf", RunId=invocation.run_id)
            seen.append(props["RunProperties"]["messages"])
            invocation.glue_client.put_workflow_run_properties(
                Name="ns-wf", RunId=invocation.run_id, RunProperties={"from": invocation.job.name}
            )

        (result,) = gw.run_pending(from_api, runner, glue)
        assert result.run_id == run_id and result.succeeded and seen == ['["m"]'] * 3
        assert result.run_properties["from"] == "ns-c"
        assert gw.pending_runs(glue, "ns-wf") == []


def test_script_main_and_subprocess_runners(tmp_path, workflow):
    for name in ("job_a", "job_b", "job_c"):
        (tmp_path / f"{name}.py").write_text(
            "import json, pathlib, sys\n"
            "def main(argv=None, **kwargs):\n"
            "    argv = sys.argv if argv is None else argv\n"
            f"    pathlib.Path({str(tmp_path)!r}, '{name}.out').write_text(json.dumps([argv, sorted(kwargs)]))\n"
            "if __name__ == '__main__':\n    main()\n"
        )
    result = gw.run_workflow(workflow, gw.script_main_runner(tmp_path, spark="SPARK"))
    assert result.succeeded
    argv, kwargs = json.loads((tmp_path / "job_a.out").read_text())
    assert argv[0] == "job_a.py" and "--root" in argv and kwargs == ["spark"]
    (tmp_path / "job_a.out").unlink()
    result = gw.run_workflow(workflow, gw.subprocess_runner(tmp_path, python=sys.executable))
    assert result.succeeded and json.loads((tmp_path / "job_a.out").read_text())[0][0].endswith("job_a.py")
    missing = gw.run_workflow(workflow, gw.mapping_runner({}))
    assert missing.states()["ns-a"] == "FAILED"


def test_cli_show_and_run_from_template(tmp_path, capsys):
    path = tmp_path / "t.yaml"
    path.write_text(TEMPLATE)
    for name in ("job_a", "job_b", "job_c"):
        (tmp_path / f"{name}.py").write_text("def main(argv=None, **kw):\n    return None\n")
    assert gw.main(["show", "--workflow", "ns-wf", "--template", str(path), "--parameter", "Namespace=ns"]) == 0
    assert "[CONDITIONAL] when ns-a SUCCEEDED AND ns-b SUCCEEDED" in capsys.readouterr().out
    code = gw.main(
        [
            "run",
            "--workflow",
            "ns-wf",
            "--template",
            str(path),
            "--parameter",
            "Namespace=ns",
            "--scripts-dir",
            str(tmp_path),
            "--property",
            "messages=[]",
        ]
    )
    assert code == 0 and "SUCCEEDED" in capsys.readouterr().out
