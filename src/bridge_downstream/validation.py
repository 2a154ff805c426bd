"""Validating archive files against their JSON Schemas.

A record is invalid when any of its files fails. At most
``MAX_ERRORS_PER_FILE`` messages are kept per file. Errors that a known
client release is accepted to make are dropped according to the registry's
pipeline rules -- configuration, not code.
"""

from __future__ import annotations

import posixpath
import re
import weakref
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

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


_FORMAT_LOCALS = re.compile(r'("(?:[^"\\]|\\.)*")\.format\(\*\*locals\(\)\)')
_ENTRY = re.compile(r"^def (\w+)\(data", re.MULTILINE)
_FAST_VALIDATORS: weakref.WeakKeyDictionary[SchemaRegistry, dict[str, Callable | None]] = weakref.WeakKeyDictionary()


def _compile_fast(registry: SchemaRegistry, schema_id: str) -> Callable | None:
    """A compiled (fastjsonschema) validator whose $refs resolve in the registry
    only, or None when the schema cannot be compiled (jsonschema alone is used)."""
    try:
        import fastjsonschema
    except ImportError:  # pragma: no cover - an optional speed-up
        return None

    def retrieve(uri: str):
        schema = registry.schema(uri.split("#", 1)[0])
        if schema is None:
            raise LookupError(f"{uri} is not in the registry")
        return schema

    try:
        code = fastjsonschema.compile_to_code(
            registry.schemas[schema_id],
            handlers={"http": retrieve, "https": retrieve},
            use_default=False,  # never fill defaults into the document
            use_formats=False,  # jsonschema checks no formats either (no format checker)
            detailed_exceptions=False,
        )
        # Only "valid or not" is used, never the fast path's messages: drop the
        # per-error str.format(**locals()) that dominates rejected oneOf branches.
        code = _FORMAT_LOCALS.sub(r"\1", code)
        entry = _ENTRY.search(code)
        if entry is None:
            return None
        namespace: dict = {}
        exec(compile(code, f"<fastjsonschema {schema_id}>", "exec"), namespace)  # noqa: S102 - code generated from our own registry
        return namespace[entry.group(1)]
    except Exception:  # noqa: BLE001 - any compile failure: fall back to jsonschema
        return None


def fast_validator(registry: SchemaRegistry, schema_url: str) -> Callable | None:
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

    Fast path: a compiled validator accepts the document -> valid. Anything
    else (it rejects, or cannot decide) -> jsonschema validates and writes the
    messages, so messages are exactly jsonschema's whatever the fast path says.
    """
    fast = fast_validator(registry, schema_url)
    if fast is not None:
        try:
            fast(document)
            return []
        except Exception:  # noqa: BLE001,S110 - rejected or undecided: jsonschema decides
            pass
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
