"""Reading uploads where Bridge writes them: Bridge's raw bucket, through a
Synapse STS read-only token for the record's ``raw_folder_id``.

Bridge (Exporter 3) stores each upload in an STS-enabled Synapse folder
backed by its own bucket. The job role has no grant on that bucket: Synapse
hands out short-lived read-only credentials scoped to the folder
(``GET /entity/{id}/sts?permission=read_only``, through ``synapseclient``'s
``get_sts_storage_token``, as the original job did). :class:`StsTokenCache`
keeps one token per folder and fetches a new one ``margin`` before the
token's ``expiration``; :class:`RawFolderStorage` is an :class:`S3Storage`
whose client always carries the folder's current token, so a long task never
reads with expired credentials.

The Synapse login happens on first use, once per process (Spark executors
each log in with the token read from SSM; the token itself never travels in
a task), and only when a message names a raw folder.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from importlib.util import find_spec

import boto3

from bridge_downstream_adapters.s3 import S3Storage

log = logging.getLogger(__name__)

RENEWAL_MARGIN = timedelta(minutes=5)

# synapseclient's own token cache renews by the real clock with its own
# margin (1 hour by default); asking for a remaining life no token has makes
# every call a fetch, so the renewal rule lives in StsTokenCache only.
_ALWAYS_FETCH = timedelta.max


@dataclass(frozen=True)
class StsToken:
    access_key_id: str
    secret_access_key: str
    session_token: str
    expiration: datetime

    @classmethod
    def from_synapse(cls, response: dict) -> StsToken:
        """From the JSON of Synapse's STS call (camel-case keys, ISO ``expiration``)."""
        expiration = datetime.fromisoformat(response["expiration"])
        if expiration.tzinfo is None:  # Synapse writes UTC instants
            expiration = expiration.replace(tzinfo=UTC)
        return cls(response["accessKeyId"], response["secretAccessKey"], response["sessionToken"], expiration)

    def __repr__(self) -> str:  # credentials stay out of logs and tracebacks
        return f"StsToken(<redacted>, expiration={self.expiration.isoformat()})"


class StsTokenCache:
    """One STS read-only token (and an S3 client built from it) per Synapse
    folder, fetched on first use and again once ``clock()`` reaches the
    token's expiration minus ``margin``. Thread-safe (read-ahead threads
    share it)."""

    def __init__(
        self,
        fetch: Callable[[str], dict],
        *,
        margin: timedelta = RENEWAL_MARGIN,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        endpoint_url: str | None = None,
    ):
        self._fetch = fetch
        self.margin = margin
        self._clock = clock
        self.endpoint_url = endpoint_url
        self._lock = threading.Lock()
        self._tokens: dict[str, StsToken] = {}
        self._clients: dict[str, object] = {}
        self._pid = os.getpid()

    def _current(self, folder_id: str) -> StsToken:
        if self._pid != os.getpid():  # a forked process makes its own clients
            self._tokens.clear()
            self._clients.clear()
            self._pid = os.getpid()
        token = self._tokens.get(folder_id)
        if token is None or self._clock() >= token.expiration - self.margin:
            token = StsToken.from_synapse(self._fetch(folder_id))
            log.info("STS read-only token for %s, valid until %s", folder_id, token.expiration.isoformat())
            self._tokens[folder_id] = token
            self._clients.pop(folder_id, None)
        return token

    def token(self, folder_id: str) -> StsToken:
        with self._lock:
            return self._current(folder_id)

    def client(self, folder_id: str):
        """An S3 client reading with the folder's current token."""
        with self._lock:
            token = self._current(folder_id)
            client = self._clients.get(folder_id)
            if client is None:
                client = self._clients[folder_id] = boto3.client(
                    "s3",
                    endpoint_url=self.endpoint_url,
                    aws_access_key_id=token.access_key_id,
                    aws_secret_access_key=token.secret_access_key,
                    aws_session_token=token.session_token,
                )
            return client


class RawFolderStorage(S3Storage):
    """Objects of a bucket read through a Synapse folder's STS token."""

    def __init__(self, bucket: str, folder_id: str, tokens: StsTokenCache):
        super().__init__(bucket, endpoint_url=tokens.endpoint_url)
        self.folder_id = folder_id
        self._tokens = tokens

    @property
    def client(self):
        return self._tokens.client(self.folder_id)


def require_synapse_client() -> None:
    """Fail before any upload is read when synapseclient is missing: without
    this, every upload of a raw folder would end invalid with the ImportError."""
    if find_spec("synapseclient") is None:
        raise RuntimeError(
            "reading uploads from Bridge's raw bucket needs synapseclient: "
            "add synapseclient~=4.14 to the job's --additional-python-modules"
        )


def synapse_sts_fetch(syn) -> Callable[[str], dict]:
    """Synapse's STS call for a logged-in ``synapseclient.Synapse``."""

    def fetch(folder_id: str) -> dict:
        return syn.get_sts_storage_token(folder_id, "read_only", output_format="json", min_remaining_life=_ALWAYS_FETCH)

    return fetch


class _LazySynapseFetch:
    """Logs in on the first fetch; a failed login fails every later fetch at
    once instead of retrying the login per archive."""

    def __init__(self, ssm_parameter_name: str, synapse_endpoint: str | None, endpoint_url: str | None):
        self.ssm_parameter_name = ssm_parameter_name
        self.synapse_endpoint = synapse_endpoint
        self.endpoint_url = endpoint_url
        self._fetch: Callable[[str], dict] | None = None
        self._login_error: Exception | None = None

    def __call__(self, folder_id: str) -> dict:
        if self._fetch is None:
            if self._login_error is not None:
                raise self._login_error
            try:
                self._fetch = synapse_sts_fetch(self._login())
            except Exception as error:
                self._login_error = error
                raise
        return self._fetch(folder_id)

    def _login(self):
        from bridge_downstream_adapters.secrets import token_from_ssm
        from bridge_downstream_adapters.synapse import connect

        ssm = boto3.client("ssm", endpoint_url=self.endpoint_url)
        return connect(token_from_ssm(self.ssm_parameter_name, ssm_client=ssm), endpoint=self.synapse_endpoint)


_PROCESS_CACHES: dict[tuple[str, str | None, str | None], StsTokenCache] = {}
_PROCESS_CACHES_LOCK = threading.Lock()


def process_token_cache(
    ssm_parameter_name: str, synapse_endpoint: str | None = None, endpoint_url: str | None = None
) -> StsTokenCache:
    """This process's token cache for one Synapse login: one login and one
    token per folder for all the tasks an executor runs."""
    key = (ssm_parameter_name, synapse_endpoint, endpoint_url)
    with _PROCESS_CACHES_LOCK:
        cache = _PROCESS_CACHES.get(key)
        if cache is None:
            fetch = _LazySynapseFetch(ssm_parameter_name, synapse_endpoint, endpoint_url)
            cache = _PROCESS_CACHES[key] = StsTokenCache(fetch, endpoint_url=endpoint_url)
        return cache
