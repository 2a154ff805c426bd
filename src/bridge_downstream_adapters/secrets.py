"""The Synapse auth token: from an SSM parameter (AWS) or the environment
variable ``BRIDGE_DOWNSTREAM_SYNAPSE_AUTH_TOKEN`` (local). Never from a file.

The token travels as a :class:`SecretToken`, whose ``str``/``repr`` are a
redaction marker, so a stray log line or exception message cannot print it;
only :meth:`SecretToken.reveal` gives the value, and only the Synapse login
calls it.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator, Mapping

TOKEN_ENV_VAR = "BRIDGE_DOWNSTREAM_SYNAPSE_AUTH_TOKEN"


class SecretError(RuntimeError):
    """The token cannot be obtained; the message never contains a secret."""


class SecretToken:
    __slots__ = ("_value", "source")

    def __init__(self, value: str, source: str):
        value = (value or "").strip()
        if not value:
            raise SecretError(f"the Synapse auth token from {source} is empty")
        self._value = value
        self.source = source

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return f"SecretToken(<redacted>, source={self.source!r})"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:  # pragma: no cover - convenience
        return isinstance(other, SecretToken) and other._value == self._value

    def __hash__(self) -> int:  # pragma: no cover
        return hash(self._value)

    def __reduce__(self):  # never pickled into a Spark task or a cache
        raise TypeError("SecretToken cannot be pickled")


@contextlib.contextmanager
def _quiet_wire_logs() -> Iterator[None]:
    """botocore logs whole response bodies at DEBUG -- the decrypted
    parameter included. Keep its wire loggers above DEBUG for the call."""
    names = ("botocore", "botocore.parsers", "botocore.endpoint", "urllib3", "moto")
    saved = {name: logging.getLogger(name).level for name in names}
    try:
        for name in names:
            logging.getLogger(name).setLevel(logging.WARNING)
        yield
    finally:
        for name, level in saved.items():
            logging.getLogger(name).setLevel(level)


def token_from_ssm(parameter_name: str, ssm_client=None) -> SecretToken:
    """Read a SecureString (or String) parameter, decrypted."""
    import boto3
    from botocore.exceptions import BotoCoreError, ClientError

    client = ssm_client or boto3.client("ssm")
    try:
        with _quiet_wire_logs():
            response = client.get_parameter(Name=parameter_name, WithDecryption=True)
    except ClientError as error:
        code = error.response.get("Error", {}).get("Code", "?")
        if code == "ParameterNotFound":
            raise SecretError(f"SSM parameter {parameter_name!r} does not exist") from None
        if code in ("AccessDeniedException", "AccessDenied"):
            raise SecretError(
                f"not allowed to read SSM parameter {parameter_name!r}: the role needs "
                "ssm:GetParameter on it (and kms:Decrypt on its key)"
            ) from None
        raise SecretError(f"cannot read SSM parameter {parameter_name!r}: {code}") from None
    except BotoCoreError as error:
        raise SecretError(f"cannot read SSM parameter {parameter_name!r}: {type(error).__name__}") from None
    return SecretToken(response["Parameter"]["Value"], source=f"ssm:{parameter_name}")


def token_from_env(environ: Mapping[str, str] | None = None) -> SecretToken:
    environ = os.environ if environ is None else environ
    value = environ.get(TOKEN_ENV_VAR)
    if not value:
        raise SecretError(
            f"no Synapse auth token: set the environment variable {TOKEN_ENV_VAR} "
            "(locally) or pass --ssm-parameter-name (in AWS)"
        )
    return SecretToken(value, source=f"env:{TOKEN_ENV_VAR}")


def synapse_auth_token(
    ssm_parameter_name: str | None = None, *, environ: Mapping[str, str] | None = None, ssm_client=None
) -> SecretToken:
    """SSM when a parameter name is given, else the environment variable."""
    if ssm_parameter_name:
        return token_from_ssm(ssm_parameter_name, ssm_client=ssm_client)
    return token_from_env(environ)
