"""A small IAM policy evaluator for the statement forms our templates use, so
the deployment tests can ask "may this role do this action on this resource?".

No maintained PyPI evaluator fits offline and without AWS credentials (the
policy simulator is an AWS API), so this one covers exactly what the rendered
templates write, and refuses anything else rather than guess:

* ``Effect`` Allow/Deny, an explicit Deny wins, no match is a deny;
* ``Action``/``Resource`` strings or lists with ``*``/``?`` wildcards (actions
  case-insensitive, resources case-sensitive, ``*`` crossing ``/`` and ``:``);
* ``Condition`` operators StringEquals, StringLike, ArnEquals, ArnLike, Bool
  (a list of values matches any; a key missing from the request context fails
  the condition, as IAM does for these operators).

CloudFormation intrinsics are resolved first (:func:`resolve`): Ref, Fn::Sub,
Fn::GetAtt (``.Arn`` to a given ARN), Fn::If and AWS::NoValue.
"""

from __future__ import annotations

import fnmatch
import re
from dataclasses import dataclass, field
from typing import Any

NO_VALUE = object()
OPERATORS = {"StringEquals", "StringLike", "ArnEquals", "ArnLike", "Bool"}


@dataclass
class Template:
    """What the intrinsics of one rendered template resolve to."""

    refs: dict[str, str]  # parameters, pseudo parameters and logical ids (Ref)
    conditions: dict[str, bool] = field(default_factory=dict)

    def sub(self, text: str, local: dict[str, str] | None = None) -> str:
        names = {**self.refs, **(local or {})}

        def replace(match: re.Match) -> str:
            name = match.group(1)
            if name not in names:
                raise KeyError(f"unresolved ${{{name}}} in {text!r}")
            return names[name]

        return re.sub(r"\$\{([A-Za-z0-9:._]+)\}", replace, text)


def resolve(value: Any, template: Template) -> Any:
    if isinstance(value, list):
        resolved = [resolve(v, template) for v in value]
        return [v for v in resolved if v is not NO_VALUE]
    if not isinstance(value, dict):
        return value
    if len(value) == 1:
        ((key, arg),) = value.items()
        if key == "Ref":
            return NO_VALUE if arg == "AWS::NoValue" else template.refs[arg]
        if key == "Fn::Sub":
            if isinstance(arg, list):
                text, local = arg
                return template.sub(text, {k: resolve(v, template) for k, v in local.items()})
            return template.sub(arg)
        if key == "Fn::GetAtt":
            logical, attribute = arg if isinstance(arg, list) else arg.split(".", 1)
            return template.refs[f"{logical}.{attribute}"]
        if key == "Fn::If":
            condition, if_true, if_false = arg
            return resolve(if_true if template.conditions[condition] else if_false, template)
        if key.startswith("Fn::"):
            raise NotImplementedError(key)
    resolved = {k: resolve(v, template) for k, v in value.items()}
    return {k: v for k, v in resolved.items() if v is not NO_VALUE}


def _as_list(value: Any) -> list:
    return value if isinstance(value, list) else [value]


def _wildcard(pattern: str, value: str, case_sensitive: bool = True) -> bool:
    if not case_sensitive:
        pattern, value = pattern.lower(), value.lower()
    return fnmatch.fnmatchcase(value, pattern)


def _condition_holds(condition: dict, context: dict[str, str]) -> bool:
    for operator, pairs in condition.items():
        if operator not in OPERATORS:
            raise NotImplementedError(f"condition operator {operator}")
        for key, expected in pairs.items():
            if key not in context:
                return False
            actual = str(context[key])
            values = [str(v) for v in _as_list(expected)]
            if operator in ("StringEquals", "ArnEquals"):
                ok = actual in values
            elif operator == "Bool":
                ok = actual.lower() in [v.lower() for v in values]
            else:
                ok = any(_wildcard(v, actual) for v in values)
            if not ok:
                return False
    return True


def _matches(statement: dict, action: str, resource: str, context: dict[str, str]) -> bool:
    if "NotAction" in statement or "NotResource" in statement:
        raise NotImplementedError("NotAction/NotResource")
    if not any(_wildcard(a, action, case_sensitive=False) for a in _as_list(statement["Action"])):
        return False
    if not any(_wildcard(r, resource) for r in _as_list(statement.get("Resource", "*"))):
        return False
    return _condition_holds(statement.get("Condition", {}), context)


def allowed(statements: list[dict], action: str, resource: str, context: dict[str, str] | None = None) -> bool:
    """Whether these identity-policy statements allow ``action`` on ``resource``."""
    context = context or {}
    matching = [s for s in statements if _matches(s, action, resource, context)]
    if any(s["Effect"] == "Deny" for s in matching):
        return False
    return any(s["Effect"] == "Allow" for s in matching)


def trusts(statements: list[dict], principal: dict, action: str, context: dict[str, str]) -> bool:
    """Whether a role's trust policy lets ``principal`` (e.g. {"Federated": arn}) ``action``."""
    for statement in statements:
        if statement["Effect"] != "Allow" or action not in _as_list(statement["Action"]):
            continue
        stated = statement["Principal"]
        named = all(value in _as_list(stated.get(kind, [])) for kind, value in principal.items())
        if named and _condition_holds(statement.get("Condition", {}), context):
            return True
    return False
