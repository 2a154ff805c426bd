"""Validating archive files against their JSON Schemas.

A record is invalid when any of its files fails. Errors that a known
client release is accepted to make are passed over according to the
registry's pipeline rules -- configuration, not code. Of the other errors, at
most ``MAX_ERRORS_PER_FILE`` messages are kept per file; accepted ones never
count towards that cap, so they cannot hide an error that is not accepted.
"""

from __future__ import annotations

import posixpath
import weakref
from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from referencing.exceptions import Unresolvable

from .registry import SchemaRegistry

MAX_ERRORS_PER_FILE = 10


@dataclass
class ValidationResult:
    assessment_id: str
    assessment_revision: int | str
    app_id: str
    record_id: str | None
    errors: dict[str, list[str]] = field(default_factory=dict)

    @property
    def valid(self) -> bool:
        return not self.errors

    def to_json(self) -> dict:
        # Field names as the original pipeline's invalid queue messages had them.
        return {
            "assessmentId": self.assessment_id,
            "assessmentRevision": self.assessment_revision,
            "appId": self.app_id,
            "recordId": self.record_id,
            "errors": self.errors,
        }


def _error_text(message: str, path) -> str:
    location = "/".join(str(p) for p in path)
    return f"{message} (at /{location})" if location else message


_FAST_VALIDATORS: weakref.WeakKeyDictionary[SchemaRegistry, dict[str, Any]] = weakref.WeakKeyDictionary()
_FAST_REGISTRIES: weakref.WeakKeyDictionary[SchemaRegistry, Any] = weakref.WeakKeyDictionary()


def _compile_fast(registry: SchemaRegistry, schema_id: str):
    """A compiled validator (jsonschema-rs) whose $refs resolve in the registry
    only -- never over the network -- for the draft jsonschema chose, or None
    when the schema cannot be compiled (jsonschema alone decides then)."""
    try:
        import jsonschema_rs
    except ImportError:  # pragma: no cover - a declared dependency; without it every file takes the slow path
        return None

    # Every schema by $id and by alias. The retriever holds this, not the
    # registry: the compiled validators are cached per registry (weakly), and
    # must not keep it alive.
    known = dict(registry.schemas)
    known.update((alias, registry.schemas[target]) for alias, target in registry.aliases.items() if target in registry.schemas)

    def retrieve(uri: str):
        schema = known.get(uri.split("#", 1)[0])
        if schema is None:
            raise LookupError(f"{uri} is not in the registry")
        return schema

    try:
        if registry not in _FAST_REGISTRIES:
            _FAST_REGISTRIES[registry] = jsonschema_rs.Registry(list(registry.schemas.items()), retriever=retrieve)
        # The same draft as jsonschema's (registry.validator), whatever $schema says.
        draft_class = getattr(jsonschema_rs, type(registry.validator(schema_id)).__name__)
        return draft_class(
            registry.schemas[schema_id],
            registry=_FAST_REGISTRIES[registry],
            retriever=retrieve,
            validate_formats=False,  # jsonschema checks no formats either (no format checker)
        )
    except Exception:  # noqa: BLE001 - any compile failure: fall back to jsonschema
        return None


def _compiled(registry: SchemaRegistry, schema_url: str):
    cache = _FAST_VALIDATORS.setdefault(registry, {})
    schema_id = registry.schema_id_for(schema_url)
    if schema_id is None:
        return None
    if schema_id not in cache:
        cache[schema_id] = _compile_fast(registry, schema_id)
    return cache[schema_id]


def fast_validator(registry: SchemaRegistry, schema_url: str) -> Callable[[Any], bool] | None:
    """``document -> True`` when the document is valid for certain (see
    :func:`validate_document`); None when the schema has no fast validator."""
    compiled = _compiled(registry, schema_url)
    return None if compiled is None else compiled.is_valid


def compile_validators(registry: SchemaRegistry) -> int:
    """Compile the fast validator of every schema the registry maps files to,
    now: worker processes forked afterwards share them instead of each
    compiling its own. Returns how many compiled."""
    return sum(1 for url in sorted(registry.schema_mapping) if fast_validator(registry, url) is not None)


def validate_document(
    registry: SchemaRegistry, schema_url: str, document, accepted: Callable[[], Collection[str]] = tuple
) -> list[str]:
    """Up to MAX_ERRORS_PER_FILE messages of the document's errors that are
    not accepted deviations, most relevant first; [] when it is valid.
    ``accepted``: the accepted deviations' messages for this file
    (:func:`accepted_messages`), asked for only when the document is not
    plainly valid.

    Messages -- and the accepted deviations matched against them -- are
    always jsonschema's. Fast path: a compiled validator (jsonschema-rs)
    accepts the document -> valid. When it does not, and deviations are
    accepted, the document is valid if jsonschema's message for each error
    jsonschema-rs reports is accepted (:func:`_only_accepted_errors`);
    otherwise jsonschema validates the whole document.
    """
    compiled = _compiled(registry, schema_url)
    if compiled is not None and compiled.is_valid(document):
        return []
    acceptable = accepted()
    if compiled is not None and acceptable and _only_accepted_errors(registry, schema_url, compiled, document, acceptable):
        return []
    return validate_document_slow(registry, schema_url, document, acceptable)


def validate_document_slow(registry: SchemaRegistry, schema_url: str, document, accepted: Collection[str] = ()) -> list[str]:
    """jsonschema only (the reference for messages and for the fast path's
    parity). Accepted deviations are passed over as they come, so a
    document whose first errors are all accepted is still read to its end."""
    validator = registry.validator(schema_url)
    messages: list[str] = []
    try:
        for error in validator.iter_errors(document):
            text = _error_text(error.message, error.absolute_path)
            if accepted and is_accepted(text, accepted):
                continue
            messages.append(text)
            if len(messages) >= MAX_ERRORS_PER_FILE:
                break
    except Unresolvable as error:
        messages.append(f"schema {schema_url} refers to {error.ref!r}, which is not in the registry")
    return messages


# Keywords whose errors jsonschema writes from the keyword's value and the
# instance alone: no subschema, no $ref, no format checker.
_LEAF_KEYWORDS = frozenset(
    {
        "required", "type", "enum", "const", "minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum",
        "multipleOf", "minLength", "maxLength", "pattern", "minItems", "maxItems", "uniqueItems",
        "minProperties", "maxProperties",
    }
)  # fmt: skip


_SUBSCHEMAS: weakref.WeakKeyDictionary[SchemaRegistry, dict[str, dict | None]] = weakref.WeakKeyDictionary()


def _subschema(registry: SchemaRegistry, location: str) -> dict | None:
    """The (sub)schema at an absolute location in the registry, None when
    there is none; looked up once per registry."""
    known = _SUBSCHEMAS.setdefault(registry, {})
    if location not in known:
        try:
            found = registry.resolver()(location)[0]
        except Exception:  # noqa: BLE001 - unresolvable here: let jsonschema decide
            found = None
        known[location] = found if isinstance(found, dict) else None
    return known[location]


def _only_accepted_errors(registry: SchemaRegistry, schema_url: str, compiled, document, accepted: Collection[str]) -> bool:
    """True when every error of the document is an accepted deviation.

    jsonschema-rs says where each error is (the instance, and the keyword's
    absolute location in the schema); jsonschema's own function for that
    keyword then writes its message there. That costs a few microseconds per
    error instead of jsonschema walking the whole document (an old client
    that leaves out a required field leaves it out of every sample of a
    motion file). Anything else -- an error of a keyword with subschemas, a
    location that does not resolve, a keyword jsonschema finds no error in --
    answers False, and jsonschema validates the whole document."""
    validator = registry.validator(schema_url)
    keyword_functions = type(validator).VALIDATORS
    for error in compiled.iter_errors(document):
        parent, _, keyword = (error.absolute_keyword_location or "").rpartition("/")
        function = keyword_functions.get(keyword) if keyword in _LEAF_KEYWORDS else None
        subschema = _subschema(registry, parent) if function is not None else None
        if subschema is None or keyword not in subschema:
            return False
        found = False
        for reference_error in function(validator, subschema[keyword], error.instance, subschema) or ():
            found = True
            if not is_accepted(_error_text(reference_error.message, error.instance_path), accepted):
                return False
        if not found:  # the two disagree: jsonschema decides
            return False
    return True


def _rule_applies(when: Mapping[str, str], *, app_id: str, client_info: str, assessment_id: str) -> bool:
    if "appId" in when and when["appId"] != app_id:
        return False
    if "assessmentId" in when and when["assessmentId"] != assessment_id:
        return False
    return "clientInfoContains" not in when or when["clientInfoContains"] in (client_info or "")


def accepted_messages(
    rules: Iterable[Mapping],
    file_name: str,
    *,
    app_id: str,
    client_info: str,
    assessment_id: str,
    file_aliases: Mapping[str, str] | None = None,
) -> tuple[str, ...]:
    """The messages of the accepted deviations that apply to this file of this
    record. A rule names a file by its archive-map name (an aliased file
    matches under both names, ``"*"`` matches any) and matches error messages
    by prefix (:func:`is_accepted`)."""
    base = posixpath.basename(file_name)
    names = {file_name, base, (file_aliases or {}).get(base, base), "*"}
    accepted: list[str] = []
    for rule in rules:
        if rule.get("file") in names and _rule_applies(rule.get("when", {}), app_id=app_id, client_info=client_info, assessment_id=assessment_id):
            accepted.extend(rule.get("messages", []))
    return tuple(accepted)


def is_accepted(message: str, accepted: Collection[str]) -> bool:
    """An error message is accepted when it is one of ``accepted``, followed or
    not by its location ``(at /...)`` -- configuration need not spell it."""
    return any(message == a or message.startswith(a + " (at ") for a in accepted)


def drop_accepted_deviations(
    errors: dict[str, list[str]],
    rules: Iterable[Mapping],
    *,
    app_id: str,
    client_info: str,
    assessment_id: str,
    file_aliases: Mapping[str, str] | None = None,
) -> dict[str, list[str]]:
    """The errors (file name -> every message) that remain once accepted deviations are removed."""
    remaining: dict[str, list[str]] = {}
    for file_name, messages in errors.items():
        accepted = accepted_messages(rules, file_name, app_id=app_id, client_info=client_info, assessment_id=assessment_id, file_aliases=file_aliases)
        kept = [m for m in messages if not is_accepted(m, accepted)]
        if kept:
            remaining[file_name] = kept
    return remaining
