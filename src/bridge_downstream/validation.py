"""Validating archive files against their JSON Schemas.

A record is invalid when any of its files fails. At most
``MAX_ERRORS_PER_FILE`` messages are kept per file. Errors that a known
client release is accepted to make are dropped according to the registry's
pipeline rules -- configuration, not code.
"""

from __future__ import annotations

import posixpath
import weakref
from collections.abc import Callable, Mapping
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


def _error_text(error) -> str:
    location = "/".join(str(p) for p in error.absolute_path)
    return f"{error.message} (at /{location})" if location else error.message


_FAST_VALIDATORS: weakref.WeakKeyDictionary[SchemaRegistry, dict[str, Callable[[Any], bool] | None]] = weakref.WeakKeyDictionary()
_FAST_REGISTRIES: weakref.WeakKeyDictionary[SchemaRegistry, Any] = weakref.WeakKeyDictionary()


def _compile_fast(registry: SchemaRegistry, schema_id: str) -> Callable[[Any], bool] | None:
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
        compiled = draft_class(
            registry.schemas[schema_id],
            registry=_FAST_REGISTRIES[registry],
            retriever=retrieve,
            validate_formats=False,  # jsonschema checks no formats either (no format checker)
        )
        return compiled.is_valid
    except Exception:  # noqa: BLE001 - any compile failure: fall back to jsonschema
        return None


def fast_validator(registry: SchemaRegistry, schema_url: str) -> Callable[[Any], bool] | None:
    """``document -> True`` when the document is valid for certain (see
    :func:`validate_document`); None when the schema has no fast validator."""
    cache = _FAST_VALIDATORS.setdefault(registry, {})
    schema_id = registry.schema_id_for(schema_url)
    if schema_id is None:
        return None
    if schema_id not in cache:
        cache[schema_id] = _compile_fast(registry, schema_id)
    return cache[schema_id]


def compile_validators(registry: SchemaRegistry) -> int:
    """Compile the fast validator of every schema the registry maps files to,
    now: worker processes forked afterwards share them instead of each
    compiling its own. Returns how many compiled."""
    return sum(1 for url in sorted(registry.schema_mapping) if fast_validator(registry, url) is not None)


def validate_document(registry: SchemaRegistry, schema_url: str, document) -> list[str]:
    """Up to MAX_ERRORS_PER_FILE messages, most relevant first.

    Fast path: a compiled validator (jsonschema-rs) accepts the document ->
    valid. Otherwise jsonschema validates and writes the messages, so
    messages -- and the accepted deviations matched against them -- are
    exactly jsonschema's whatever the fast path says.
    """
    fast = fast_validator(registry, schema_url)
    if fast is not None and fast(document):
        return []
    return validate_document_slow(registry, schema_url, document)


def validate_document_slow(registry: SchemaRegistry, schema_url: str, document) -> list[str]:
    """jsonschema only (the reference for messages and for the fast path's parity)."""
    validator = registry.validator(schema_url)
    messages: list[str] = []
    try:
        for error in validator.iter_errors(document):
            messages.append(_error_text(error))
            if len(messages) >= MAX_ERRORS_PER_FILE:
                break
    except Unresolvable as error:
        messages.append(f"schema {schema_url} refers to {error.ref!r}, which is not in the registry")
    return messages


def _rule_applies(when: Mapping[str, str], *, app_id: str, client_info: str, assessment_id: str) -> bool:
    if "appId" in when and when["appId"] != app_id:
        return False
    if "assessmentId" in when and when["assessmentId"] != assessment_id:
        return False
    if "clientInfoContains" in when and when["clientInfoContains"] not in (client_info or ""):
        return False
    return True


def drop_accepted_deviations(
    errors: dict[str, list[str]],
    rules: tuple[dict, ...],
    *,
    app_id: str,
    client_info: str,
    assessment_id: str,
    file_aliases: Mapping[str, str] | None = None,
) -> dict[str, list[str]]:
    """The errors that remain once accepted deviations are removed.

    A rule names a file by its archive-map name (an aliased file matches
    under both names) and matches error messages by prefix, so the location
    suffix ``(at /...)`` does not have to be spelled in configuration.
    """
    remaining: dict[str, list[str]] = {}
    for file_name, messages in errors.items():
        base = posixpath.basename(file_name)
        names = {file_name, base, (file_aliases or {}).get(base, base), "*"}
        accepted: list[str] = []
        for rule in rules:
            if rule.get("file") in names and _rule_applies(
                rule.get("when", {}), app_id=app_id, client_info=client_info, assessment_id=assessment_id
            ):
                accepted.extend(rule.get("messages", []))
        kept = [m for m in messages if not any(m == a or m.startswith(a + " (at ") for a in accepted)]
        if kept:
            remaining[file_name] = kept
    return remaining
