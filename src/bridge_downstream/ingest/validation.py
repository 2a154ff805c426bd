"""Validating archive files against their JSON Schemas.

A record is invalid when any of its files fails. Errors that a known
client release is accepted to make are passed over according to the
registry's pipeline rules -- configuration, not code. Of the other errors, at
most ``MAX_ERRORS_PER_FILE`` messages are kept per file; accepted ones never
count towards that cap, so they cannot hide an error that is not accepted.

The record's metadata is checked here too (:func:`metadata_problem`): the
fields the pipeline reads must have their form, and every field the publish
stage orders versions by must be an instant.
"""

from __future__ import annotations

import functools
import posixpath
import re
import weakref
from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urldefrag, urljoin

from referencing.exceptions import Unresolvable

from bridge_downstream.common.instants import instant_micros
from bridge_downstream.common.text import control_character_problem, printable
from bridge_downstream.config.profiles import Profile
from bridge_downstream.config.registry import SchemaRegistry

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
        # Field names and types as the original pipeline's invalid queue
        # messages had them: the revision an integer. A revision that is not
        # one (the reason such a record is invalid) is kept as it came.
        revision = self.assessment_revision
        if isinstance(revision, str) and _REVISION.fullmatch(revision):
            revision = int(revision)
        return {
            "assessmentId": self.assessment_id,
            "assessmentRevision": revision,
            "appId": self.app_id,
            "recordId": self.record_id,
            "errors": self.errors,
        }


def _error_text(message: str, path) -> str:
    location = "/".join(str(p) for p in path)
    return f"{message} (at /{location})" if location else message


_FAST_VALIDATORS: weakref.WeakKeyDictionary[SchemaRegistry, dict[str, Any]] = weakref.WeakKeyDictionary()
# Per registry: jsonschema-rs's registry of its schemas, by the requirements waived in them.
_FAST_REGISTRIES: weakref.WeakKeyDictionary[SchemaRegistry, dict[frozenset[str], Any]] = weakref.WeakKeyDictionary()


def _compile_fast(registry: SchemaRegistry, schema_id: str, waived: frozenset[str] = frozenset()):
    """A compiled validator (jsonschema-rs) whose $refs resolve in the registry
    only -- never over the network -- for the draft jsonschema chose, or None
    when the schema cannot be compiled (jsonschema alone decides then).
    ``waived``: property names left out of every ``required`` of every schema
    (:func:`_valid_but_for_accepted_requirements`)."""
    try:
        import jsonschema_rs
    except ImportError:  # pragma: no cover - a declared dependency; without it every file takes the slow path
        return None

    schemas = (
        registry.schemas
        if not waived
        else {key: _without_requirements(schema, waived) for key, schema in registry.schemas.items()}
    )
    # Every schema by $id and by alias. The retriever holds this, not the
    # registry: the compiled validators are cached per registry (weakly), and
    # must not keep it alive.
    known = dict(schemas)
    known.update((alias, schemas[target]) for alias, target in registry.aliases.items() if target in schemas)

    def retrieve(uri: str):
        schema = known.get(uri.split("#", 1)[0])
        if schema is None:
            raise LookupError(f"{uri} is not in the registry")
        return schema

    try:
        compiled_registries = _FAST_REGISTRIES.setdefault(registry, {})
        if waived not in compiled_registries:
            compiled_registries[waived] = jsonschema_rs.Registry(list(schemas.items()), retriever=retrieve)
        # The same draft as jsonschema's (registry.validator), whatever $schema says.
        draft_class = getattr(jsonschema_rs, type(registry.validator(schema_id)).__name__)
        return draft_class(
            schemas[schema_id],
            registry=compiled_registries[waived],
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
    always jsonschema's; jsonschema-rs (compiled) only finds out quickly
    what jsonschema would say:

    * the compiled validator accepts the document -> valid;
    * the only errors are accepted missing properties, and the compiled
      validator of the schema without those requirements accepts it -> valid
      (:func:`_valid_but_for_accepted_requirements`);
    * jsonschema's message for each error jsonschema-rs reports, when all
      of them are accepted or one alone is not (:func:`_messages_of_compiled_errors`);
    * otherwise jsonschema validates the whole document.
    """
    compiled = _compiled(registry, schema_url)
    if compiled is None:
        return validate_document_slow(registry, schema_url, document, accepted())
    if compiled.is_valid(document):
        return []
    acceptable = accepted()
    if acceptable and _valid_but_for_accepted_requirements(registry, schema_url, document, acceptable):
        return []
    messages = _messages_of_compiled_errors(registry, schema_url, compiled, document, acceptable)
    if messages is not None:
        return messages
    return validate_document_slow(registry, schema_url, document, acceptable)


def validate_document_slow(
    registry: SchemaRegistry, schema_url: str, document, accepted: Collection[str] = ()
) -> list[str]:
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


def _messages_of_compiled_errors(
    registry: SchemaRegistry, schema_url: str, compiled, document, accepted: Collection[str]
) -> list[str] | None:
    """jsonschema's messages for the errors jsonschema-rs finds, when that
    is certain to be what jsonschema would say: [] when every error is an
    accepted deviation, [message] when exactly one is not; None otherwise
    (jsonschema then validates the whole document).

    jsonschema-rs says where each error is (the instance, and the keyword's
    absolute location in the schema); jsonschema's own function for that
    keyword then writes its message there. That costs a few microseconds per
    error instead of jsonschema walking the whole document (an old client
    that leaves out a required field leaves it out of every sample of a
    motion file; an invalid record is mostly one wrong value). Two errors
    that are not accepted could be listed in another order than jsonschema
    lists them, so they are jsonschema's to list. Anything else -- an error
    of a keyword with subschemas, a location that does not resolve, a
    keyword jsonschema finds no error in -- is jsonschema's to decide too."""
    validator = registry.validator(schema_url)
    keyword_functions = type(validator).VALIDATORS
    unaccepted: list[str] = []
    for error in compiled.iter_errors(document):
        parent, _, keyword = (error.absolute_keyword_location or "").rpartition("/")
        function = keyword_functions.get(keyword) if keyword in _LEAF_KEYWORDS else None
        if function is None:
            return None
        subschema = _subschema(registry, parent)
        if subschema is None or keyword not in subschema:
            return None
        found = 0
        for reference_error in function(validator, subschema[keyword], error.instance, subschema) or ():
            found += 1
            text = _error_text(reference_error.message, error.instance_path)
            if not is_accepted(text, accepted):
                unaccepted.append(text)
        # The two disagree, or one error of jsonschema-rs stands for several of jsonschema's.
        if not found or (found > 1 and unaccepted) or len(unaccepted) > 1:
            return None
    return unaccepted


# -- waiving accepted requirements ---------------------------------------------

# Keywords whose subschemas must all hold for theirs to, and whose subschemas'
# errors jsonschema reports as they are. A schema that evaluates only these
# and leaf keywords holds exactly when every leaf check holds.
_CONJUNCTIVE_APPLICATORS = frozenset(
    {
        "properties",
        "patternProperties",
        "additionalProperties",
        "items",
        "additionalItems",
        "prefixItems",
        "allOf",
        "$ref",
    }
)
_REQUIRED_MESSAGE = "{!r} is a required property"  # jsonschema's, for a name missing from an object


class _NotConjunctive(Exception):
    pass


def _subschemas(keyword: str, value) -> list:
    """The subschemas under one of the _CONJUNCTIVE_APPLICATORS but $ref."""
    if keyword in ("properties", "patternProperties"):
        return list(value.values()) if isinstance(value, dict) else []
    if keyword in ("items", "prefixItems", "allOf"):
        return list(value) if isinstance(value, list) else [value]
    return [value]


_REQUIRED_NAMES: weakref.WeakKeyDictionary[SchemaRegistry, dict[str, frozenset[str]]] = weakref.WeakKeyDictionary()


def _waivable_requirements(registry: SchemaRegistry, schema_id: str) -> frozenset[str]:
    """The names the schema's ``required`` keywords ask for, when leaving any
    of them out of every ``required`` keeps the rest of the schema as it is:
    everything the schema evaluates, following $refs, is a leaf keyword or
    one of the _CONJUNCTIVE_APPLICATORS. Then a document is valid for the
    schema without requirement X exactly when its only errors are X's
    missing properties. Empty otherwise (anyOf, not, if, ... anywhere)."""
    known = _REQUIRED_NAMES.setdefault(registry, {})
    if schema_id in known:
        return known[schema_id]
    evaluated = type(registry.validator(schema_id)).VALIDATORS
    resolve = registry.resolver()
    names: set[str] = set()
    seen: set[tuple[str, int]] = set()

    def walk(schema, base: str) -> None:
        if isinstance(schema, bool):
            return
        if not isinstance(schema, dict):
            raise _NotConjunctive
        if isinstance(schema.get("$id"), str) and not schema["$id"].startswith("#"):
            base = urldefrag(urljoin(base, schema["$id"]))[0]
        if (base, id(schema)) in seen:
            return
        seen.add((base, id(schema)))
        for keyword, value in schema.items():
            if keyword not in evaluated or keyword == "format":  # annotations; formats are not checked
                continue
            if keyword in _LEAF_KEYWORDS:
                if keyword == "required":
                    if not isinstance(value, list):
                        raise _NotConjunctive
                    names.update(name for name in value if isinstance(name, str))
            elif keyword == "$ref":
                try:
                    target, target_base = resolve(value, base)
                except Exception:  # noqa: BLE001 - unresolvable: jsonschema says so
                    raise _NotConjunctive from None
                walk(target, target_base)
            elif keyword in _CONJUNCTIVE_APPLICATORS:
                for subschema in _subschemas(keyword, value):
                    walk(subschema, base)
            else:
                raise _NotConjunctive

    try:
        walk(registry.schemas[schema_id], schema_id)
    except (_NotConjunctive, RecursionError):
        names.clear()
    known[schema_id] = frozenset(names)
    return known[schema_id]


def _without_requirements(schema, waived: frozenset[str]):
    """A copy of the schema with the ``waived`` names left out of every
    ``required`` under conjunctive applicators and definitions (elsewhere
    they stay: a stricter copy only sends more documents to jsonschema)."""
    if not isinstance(schema, dict):
        return schema
    copy = dict(schema)
    if isinstance(schema.get("required"), list):
        copy["required"] = [name for name in schema["required"] if name not in waived]
    for keyword in ("properties", "patternProperties", "definitions", "$defs"):
        if isinstance(schema.get(keyword), dict):
            copy[keyword] = {name: _without_requirements(sub, waived) for name, sub in schema[keyword].items()}
    for keyword in ("items", "prefixItems", "allOf", "additionalItems", "additionalProperties"):
        value = schema.get(keyword)
        if isinstance(value, list):
            copy[keyword] = [_without_requirements(sub, waived) for sub in value]
        elif isinstance(value, dict):
            copy[keyword] = _without_requirements(value, waived)
    return copy


_WAIVING_VALIDATORS: weakref.WeakKeyDictionary[SchemaRegistry, dict[tuple[str, tuple], Any]] = (
    weakref.WeakKeyDictionary()
)


def _valid_but_for_accepted_requirements(
    registry: SchemaRegistry, schema_url: str, document, accepted: Collection[str]
) -> bool:
    """True when the document's only errors are missing properties whose
    message is accepted (without a location: anywhere in the document). One
    call of a compiled validator of the schema without those requirements
    decides, where asking jsonschema for each error's message costs a few
    microseconds per sample of a motion file. False is no verdict: the
    other ways decide."""
    schema_id = registry.schema_id_for(schema_url)
    if schema_id is None:
        return False
    cache = _WAIVING_VALIDATORS.setdefault(registry, {})
    key = (schema_id, tuple(accepted))
    if key not in cache:
        waived = frozenset(
            name for name in _waivable_requirements(registry, schema_id) if _REQUIRED_MESSAGE.format(name) in accepted
        )
        cache[key] = _compile_fast(registry, schema_id, waived) if waived else None
    compiled = cache[key]
    return compiled is not None and compiled.is_valid(document)


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
        if rule.get("file") in names and _rule_applies(
            rule.get("when", {}), app_id=app_id, client_info=client_info, assessment_id=assessment_id
        ):
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
        accepted = accepted_messages(
            rules,
            file_name,
            app_id=app_id,
            client_info=client_info,
            assessment_id=assessment_id,
            file_aliases=file_aliases,
        )
        kept = [m for m in messages if not is_accepted(m, accepted)]
        if kept:
            remaining[file_name] = kept
    return remaining


# -- the record's metadata and its ordering fields ------------------------------

MAX_IDENTIFIER_LENGTH = 256  # a record or assessment id (Bridge's record ids have 24 characters)
_SHOWN_VALUE_LENGTH = 80
_REVISION = re.compile("[0-9]{1,18}")  # ASCII digits: int() would also take " 5", "+5", "5_0" and other scripts' digits
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


# An upload's uploadedon is checked, then read for its partition: parsed once.
@functools.lru_cache(maxsize=64)
def parse_instant(value: str) -> datetime:
    """The UTC datetime of an ISO 8601 instant, read by the grammar the publish
    stage orders by (:func:`~bridge_downstream.common.instants.instant_micros`:
    no zone is UTC, a date alone its midnight). ValueError, with the reason
    worded to follow the value, when it spells none, or one that leaves the
    calendar once converted to UTC (``0001-01-01T00:00:00+01:00``)."""
    micros = instant_micros(value)
    if micros is None:
        raise ValueError("is not an ISO 8601 timestamp")
    try:
        return _EPOCH + timedelta(microseconds=micros)
    except OverflowError:
        raise ValueError("is out of range once converted to UTC") from None


def is_instant(value: object) -> bool:
    return instant_micros(value) is not None


def ordering_fields(profile: Profile) -> tuple[str, ...]:
    """The fields the publish stage orders a record's versions by (the
    profile's dedup ``order_by``): each must be an instant where it is given."""
    return tuple(column for column, _ in profile.dedup.order_by)


def shown_value(value: str) -> str:
    """A metadata or data value as a reason shows it: escaped, in quotes, cut short."""
    cut = value[:_SHOWN_VALUE_LENGTH]
    return f"'{printable(cut)}'" + ("..." if len(value) > _SHOWN_VALUE_LENGTH else "")


def _identifier_problem(value: str) -> str | None:
    control = control_character_problem(value)
    if control:
        return control
    if len(value) > MAX_IDENTIFIER_LENGTH:
        return f"is longer than {MAX_IDENTIFIER_LENGTH} characters"
    return None


def _revision_problem(value: str) -> str | None:
    return None if _REVISION.fullmatch(value) else "is not an integer"


def _instant_problem(value: str) -> str | None:
    try:
        parse_instant(value)
    except ValueError as error:
        return str(error)
    return None


# The form of each metadata field the pipeline reads; the profile's ordering
# fields are instants too.
_METADATA_FORMS: dict[str, Callable[[str], str | None]] = {
    "recordid": _identifier_problem,
    "assessmentid": _identifier_problem,
    "assessmentrevision": _revision_problem,
    "uploadedon": _instant_problem,
}


@functools.cache
def _metadata_forms(order_by: tuple[tuple[str, bool], ...]) -> dict[str, Callable[[str], str | None]]:
    return {**_METADATA_FORMS, **dict.fromkeys((column for column, _ in order_by), _instant_problem)}


def metadata_problem(metadata: Mapping[str, str], profile: Profile) -> str | None:
    """Why the record's metadata cannot be ingested, or None: a field the
    profile requires is missing (absent, null or empty), or a field given is
    not of its form -- record and assessment ids text of at most
    MAX_IDENTIFIER_LENGTH characters without control characters, the
    revision an integer, ``uploadedon`` and every ordering field an instant."""
    missing = [name for name in profile.required_metadata if not metadata.get(name)]
    if missing:
        return f"Bridge metadata is incomplete: missing {', '.join(missing)}"
    for name, problem_of in _metadata_forms(profile.dedup.order_by).items():
        value = metadata.get(name)
        if value:
            problem = problem_of(value)
            if problem:
                return f"Bridge metadata {name} {shown_value(value)} {problem}"
    return None
