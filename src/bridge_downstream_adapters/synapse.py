"""The Synapse export executor, on the real ``synapseclient`` (4.x).

The client does the authentication (bearer token), the HTTP transport, the
retries (429 and 5xx, exponential back-off) and the error decoding; this
module calls its documented REST helpers (``restGET``/``restPOST``/...) on
exactly the endpoints below, so the calls are predictable and the retry
policy is ours:

    GET    /repo/v1/version                           is Synapse up (no auth)
    GET    /repo/v1/userProfile                       login
    GET    /repo/v1/entity/{id}                       the export folder; an entity's etag
    POST   /repo/v1/entity/children                   list a folder (paged)
    POST   /repo/v1/entity/{id}/bundle2               entity + annotations + file handles, one call
    POST   /repo/v1/entity/bundle2/create             create a Folder or File with its annotations
    PUT    /repo/v1/entity/{id}/bundle2               re-point a File (new version) with its annotations
    GET    /repo/v1/entity/{id}/annotations2          read annotations (for their etag)
    PUT    /repo/v1/entity/{id}/annotations2          update annotations only
    DELETE /repo/v1/entity/{id}                       remove a File or Folder
    GET    /file/v1/entity/{id}/uploadDestination     the folder's storage location
    POST   /file/v1/externalFileHandle/s3             register an S3 object (no upload)

Creating and re-pointing a File carries its annotations in the same call, so
an interrupted export never leaves an entity without its
``exportedBy`` marker.

What the tree should look like is decided by the pure
:mod:`bridge_downstream.exports.synapse_plan`.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
import weakref
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, cast
from urllib.parse import quote

from bridge_downstream.exports import synapse_plan as sp
from bridge_downstream.publish.manifest import (
    PublishManifest,
    read_current_manifests,
    read_manifest,
)
from bridge_downstream_adapters.secrets import SecretToken

log = logging.getLogger(__name__)

PRODUCTION_ENDPOINT = "https://repo-prod.prod.sagebase.org"
FOLDER = "org.sagebionetworks.repo.model.Folder"
FILE_ENTITY = "org.sagebionetworks.repo.model.FileEntity"
S3_FILE_HANDLE = "org.sagebionetworks.repo.model.file.S3FileHandle"
EXTERNAL_S3_UPLOAD_DESTINATION = "org.sagebionetworks.repo.model.file.ExternalS3UploadDestination"
EXTERNAL_S3_STORAGE_LOCATION = "org.sagebionetworks.repo.model.project.ExternalS3StorageLocationSetting"
UPLOAD_DESTINATION_LIST = "org.sagebionetworks.repo.model.project.UploadDestinationListSetting"

CONTENT_TYPES = {"parquet": "application/vnd.apache.parquet", "csv": "text/csv"}


class SynapseExportError(RuntimeError):
    """A Synapse call failed; the message says which call, why, and what to do."""

    def __init__(self, message: str, status: int | None = None):
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class RetryPolicy:
    """Handed to synapseclient's ``with_retry``: retried on 429 and 5xx with
    ``wait * back_off**n`` seconds (jittered), at most ``max_wait`` apart.
    synapseclient does not read ``Retry-After``; ``wait`` governs."""

    retries: int = 8
    wait: float = 1.0
    back_off: float = 2.0
    max_wait: float = 30.0

    def as_dict(self) -> dict[str, Any]:
        return {"retries": self.retries, "wait": self.wait, "back_off": self.back_off, "max_wait": self.max_wait}


def endpoints_for(base_url: str | None) -> dict[str, str]:
    """synapseclient endpoints under one base URL (the production one by default)."""
    base = (base_url or PRODUCTION_ENDPOINT).rstrip("/")
    return {
        "repoEndpoint": f"{base}/repo/v1",
        "authEndpoint": f"{base}/auth/v1",
        "fileHandleEndpoint": f"{base}/file/v1",
        "portalEndpoint": base if base_url else "https://www.synapse.org/",
    }


def _status_hint(status: int, what: str) -> str:
    if status == 401:
        return (
            "Synapse rejected the auth token (expired, revoked or wrong): renew the personal access "
            "token and update the SSM parameter / BRIDGE_DOWNSTREAM_SYNAPSE_AUTH_TOKEN"
        )
    if status == 403:
        return (
            f"the token's Synapse user is not allowed to {what}: the token needs the 'view' and "
            "'modify' scopes and the user Edit & Delete access on the export folder (see docs/synapse.md)"
        )
    if status == 404:
        return f"not found while trying to {what}"
    if status == 429:
        return "Synapse kept rate-limiting (HTTP 429) after all retries; rerun later (the export is idempotent)"
    if status >= 500:
        return (
            f"Synapse server error (HTTP {status}) persisted after all retries; rerun later (the export is idempotent)"
        )
    return f"Synapse refused to {what} (HTTP {status})"


class SynapseApi:
    """The REST calls the export and the storage setup make, with our retry
    policy and errors translated into :class:`SynapseExportError`."""

    def __init__(self, syn, retry: RetryPolicy | None = None):
        self.syn = syn
        self.retry = retry or RetryPolicy()

    # -- plumbing
    def _call(self, method: str, uri: str, body: Any = None, *, file_endpoint: bool = False, what: str = "") -> Any:
        import requests
        from synapseclient.core.exceptions import SynapseError, SynapseHTTPError

        kwargs: dict[str, Any] = {"retryPolicy": self.retry.as_dict()}
        if file_endpoint:
            kwargs["endpoint"] = self.syn.fileHandleEndpoint
        fn = {
            "GET": self.syn.restGET,
            "POST": self.syn.restPOST,
            "PUT": self.syn.restPUT,
            "DELETE": self.syn.restDELETE,
        }[method]
        try:
            if method in ("POST", "PUT"):
                return fn(uri, body=json.dumps(body), **kwargs)
            return fn(uri, **kwargs)
        except SynapseHTTPError as error:
            status = getattr(getattr(error, "response", None), "status_code", None) or 0
            reason = _reason(error)
            raise SynapseExportError(
                f"{method} {uri} failed: HTTP {status}{': ' + reason if reason else ''} -- "
                f"{_status_hint(status, what or method + ' ' + uri)}",
                status=status,
            ) from None
        except requests.exceptions.RequestException as error:
            raise SynapseExportError(
                f"{method} {uri}: cannot reach Synapse at {self.syn.repoEndpoint} "
                f"({type(error).__name__}) after all retries"
            ) from None
        except SynapseError as error:
            raise SynapseExportError(f"{method} {uri} failed: {error}") from None

    def get(self, uri, **kw):
        return self._call("GET", uri, **kw)

    def post(self, uri, body, **kw):
        return self._call("POST", uri, body, **kw)

    def put(self, uri, body, **kw):
        return self._call("PUT", uri, body, **kw)

    def delete(self, uri, **kw):
        return self._call("DELETE", uri, **kw)

    # -- entities
    def entity(self, entity_id: str) -> dict:
        return self.get(f"/entity/{entity_id}", what=f"read {entity_id}")

    def delete_entity(self, entity_id: str) -> None:
        try:
            self.delete(f"/entity/{entity_id}", what=f"delete {entity_id}")
        except SynapseExportError as error:
            if error.status != 404:  # already gone: the goal is reached
                raise

    def children(self, parent_id: str, types: Iterable[str] = ("folder", "file")) -> list[dict]:
        out, token = [], None
        while True:
            body = {"parentId": parent_id, "includeTypes": list(types), "sortBy": "NAME", "sortDirection": "ASC"}
            if token:
                body["nextPageToken"] = token
            page = self.post("/entity/children", body, what=f"list {parent_id}")
            out.extend(page.get("page", []))
            token = page.get("nextPageToken")
            if not token:
                return out

    def annotations(self, entity_id: str) -> dict:
        return self.get(f"/entity/{entity_id}/annotations2", what=f"read annotations of {entity_id}")

    def set_annotations(self, entity_id: str, etag: str, annotations: dict[str, list]) -> dict:
        body = {"id": entity_id, "etag": etag, "annotations": sp.annotations_to_v2(annotations)}
        return self.put(f"/entity/{entity_id}/annotations2", body, what=f"annotate {entity_id}")

    def bundle(self, entity_id: str) -> dict:
        request = {"includeEntity": True, "includeAnnotations": True, "includeFileHandles": True}
        return self.post(f"/entity/{entity_id}/bundle2", request, what=f"read {entity_id}")

    def create_with_annotations(self, entity: dict, annotations: dict[str, list]) -> dict:
        body = {"entity": entity, "annotations": {"annotations": sp.annotations_to_v2(annotations)}}
        return self.post(
            "/entity/bundle2/create", body, what=f"create {entity.get('name')!r} in {entity.get('parentId')}"
        )["entity"]

    def update_with_annotations(self, entity: dict, annotations: dict[str, list]) -> dict:
        body = {
            "entity": entity,
            "annotations": {
                "id": entity["id"],
                "etag": entity["etag"],
                "annotations": sp.annotations_to_v2(annotations),
            },
        }
        return self.put(f"/entity/{entity['id']}/bundle2", body, what=f"update {entity['id']}")["entity"]

    # -- files and storage
    def upload_destination(self, parent_id: str) -> dict:
        return self.get(
            f"/entity/{parent_id}/uploadDestination",
            file_endpoint=True,
            what=f"read the upload destination of {parent_id}",
        )

    def create_external_s3_file_handle(
        self, *, bucket: str, key: str, size: int, md5: str, storage_location_id: int, content_type: str | None
    ) -> dict:
        body = {
            "concreteType": S3_FILE_HANDLE,
            "bucketName": bucket,
            "key": key,
            "fileName": key.rsplit("/", 1)[-1],
            "contentSize": int(size),
            "contentMd5": md5,
            "contentType": content_type or "application/octet-stream",
            "storageLocationId": int(storage_location_id),
        }
        return self.post(
            "/externalFileHandle/s3",
            body,
            file_endpoint=True,
            what=f"register s3://{bucket}/{key} as an external file handle",
        )

    def create_storage_location(self, body: dict) -> dict:
        return self.post("/storageLocation", body, what="create a storage location")

    def storage_location(self, location_id: int) -> dict:
        return self.get(f"/storageLocation/{int(location_id)}", what=f"read storage location {location_id}")

    def upload_project_setting(self, folder_id: str) -> dict | None:
        try:
            setting = self.get(f"/projectSettings/{folder_id}/type/upload", what=f"read the settings of {folder_id}")
        except SynapseExportError as error:
            if error.status == 404:
                return None
            raise
        return setting or None

    def create_project_setting(self, body: dict) -> dict:
        return self.post("/projectSettings", body, what=f"set the storage of {body.get('projectId')}")

    def update_project_setting(self, body: dict) -> None:
        self.put("/projectSettings", body, what=f"set the storage of {body.get('projectId')}")

    def sts_token(self, entity_id: str, permission: str = "read_only") -> dict:
        return self.get(
            f"/entity/{entity_id}/sts?permission={quote(permission)}", what=f"get STS credentials for {entity_id}"
        )


def _bundle_annotations(bundle: dict) -> dict:
    return sp.annotations_from_v2(((bundle.get("annotations") or {}).get("annotations")) or {})


def _reason(error: Exception) -> str:
    # Without a response (None) or with a non-JSON body, the except below answers.
    response: Any = getattr(error, "response", None)
    try:
        return str(response.json().get("reason", ""))[:500]
    except Exception:  # noqa: BLE001 - not JSON
        return (getattr(response, "text", "") or "")[:200]


def connect(
    token: SecretToken, *, endpoint: str | None = None, cache_dir: str | None = None, retry: RetryPolicy | None = None
):
    """A logged-in ``synapseclient.Synapse`` that never reads a config file,
    never checks for client updates and never leaks the token into logs.

    An unauthenticated ``GET /version`` first checks, under our retry policy,
    that Synapse answers (``login`` itself retries for up to ~30 minutes)."""
    os.environ.setdefault("OTEL_SDK_DISABLED", "true")
    import requests
    import synapseclient
    from synapseclient.core.exceptions import SynapseAuthenticationError, SynapseHTTPError

    owned_cache_dir: str | None = None
    if not cache_dir:
        owned_cache_dir = cache_dir = tempfile.mkdtemp(prefix="synapse-cache-")
    no_config = os.path.join(cache_dir, "no-synapse-config")  # absent on purpose: no file credentials
    syn = synapseclient.Synapse(
        **endpoints_for(endpoint),
        skip_checks=True,
        configPath=no_config,
        cache_root_dir=cache_dir,
        silent=True,
        debug=False,
        cache_client=False,
        user_agent="bridge-downstream/0.1.0",
        http_timeout_seconds=60,
    )
    if owned_cache_dir:
        # A Lambda's /tmp outlives the invocation: the client's cache goes with the client.
        weakref.finalize(syn, shutil.rmtree, owned_cache_dir, True)
    SynapseApi(syn, retry).get("/version", what="reach Synapse")
    try:
        syn.login(authToken=token.reveal(), silent=True)
    except SynapseHTTPError as error:
        status = getattr(getattr(error, "response", None), "status_code", 0)
        raise SynapseExportError(
            f"Synapse login failed: HTTP {status} -- {_status_hint(status, 'log in')}", status=status
        ) from None
    except SynapseAuthenticationError as error:
        raise SynapseExportError(
            f"Synapse login failed: {error} -- {_status_hint(401, 'log in')}", status=401
        ) from None
    except requests.exceptions.RequestException as error:
        raise SynapseExportError(
            f"cannot reach Synapse at {endpoint or PRODUCTION_ENDPOINT}: {type(error).__name__}"
        ) from None
    log.info("logged in to Synapse as %s (token from %s)", syn.credentials.username, token.source)
    return syn


# ------------------------------------------------------------ the export


@dataclass
class ExportResult:
    plan: sp.Plan
    applied: bool
    folder_ids: dict[str, str] = field(default_factory=dict)
    storage_location_id: int | None = None

    def summary(self) -> dict[str, Any]:
        return {
            "applied": self.applied,
            "storageLocationId": self.storage_location_id,
            **self.plan.counts(),
            "leftAlone": len(self.plan.left_alone),
        }


class SynapseExporter:
    """Mirror publish manifests into a Synapse folder tree."""

    def __init__(self, api: SynapseApi, root_folder_id: str, *, storage_location_id: int | None = None):
        self.api = api
        self.root_folder_id = root_folder_id
        self.storage_location_id = storage_location_id

    # -- reading the current tree
    def read_tree(self) -> sp.ExistingTree:
        root = self.api.entity(self.root_folder_id)
        if root.get("concreteType") not in (FOLDER, "org.sagebionetworks.repo.model.Project"):
            raise SynapseExportError(f"{self.root_folder_id} is a {root.get('concreteType')}, not a Folder or Project")
        tree = sp.ExistingTree(self.root_folder_id)
        for child in self.api.children(self.root_folder_id, ("folder",)):
            bundle = self.api.bundle(child["id"])
            folder = sp.ExistingFolder(child["id"], child["name"], _bundle_annotations(bundle))
            for item in self.api.children(child["id"], ("file",)):
                folder.files[item["name"]] = self._read_file(item["id"], item["name"])
            tree.folders[child["name"]] = folder
        return tree

    def _read_file(self, entity_id: str, name: str) -> sp.ExistingFile:
        bundle = self.api.bundle(entity_id)
        handle_id = str((bundle.get("entity") or {}).get("dataFileHandleId"))
        handle = next((h for h in bundle.get("fileHandles") or [] if str(h.get("id")) == handle_id), None)
        annotations = _bundle_annotations(bundle)
        if handle and handle.get("bucketName"):
            return sp.ExistingFile(
                entity_id,
                name,
                sp.ObjectLocation(handle["bucketName"], handle["key"]),
                handle.get("contentSize"),
                handle.get("contentMd5"),
                annotations,
            )
        return sp.ExistingFile(entity_id, name, None, None, None, annotations)

    # -- storage location
    def resolve_storage_location(self, desired: sp.DesiredTree) -> int | None:
        if self.storage_location_id is not None:
            return self.storage_location_id
        destination = self.api.upload_destination(self.root_folder_id)
        if destination.get("concreteType") != EXTERNAL_S3_UPLOAD_DESTINATION:
            raise SynapseExportError(
                f"folder {self.root_folder_id} does not store to an external S3 bucket "
                f"(its upload destination is {destination.get('concreteType')}); connect it to the published "
                "bucket with src/scripts/setup_external_storage first"
            )
        bucket, base_key = destination.get("bucket"), (destination.get("baseKey") or "").strip("/")
        for folder in desired.folders.values():
            for want in folder.files.values():
                loc = want.location
                if loc.bucket != bucket or (base_key and not loc.key.startswith(base_key + "/")):
                    raise SynapseExportError(
                        f"folder {self.root_folder_id}'s storage location is s3://{bucket}/{base_key}, which does not "
                        f"hold s3://{loc.bucket}/{loc.key}; point the export at the folder connected to that bucket "
                        "prefix (setup_external_storage) or pass --storage-location-id"
                    )
        return int(destination["storageLocationId"])

    # -- the export
    def plan(self, desired: sp.DesiredTree, prune_datasets: Iterable[str] | None = None) -> sp.Plan:
        return sp.diff(desired, self.read_tree(), prune_datasets=prune_datasets)

    def export(
        self, desired: sp.DesiredTree, *, dry_run: bool = False, prune_datasets: Iterable[str] | None = None
    ) -> ExportResult:
        existing = self.read_tree()
        plan = sp.diff(desired, existing, prune_datasets=prune_datasets)
        for line in plan.left_alone:
            log.warning("left alone (not created by the export): %s", line)
        needs_location = bool(plan.of(sp.CREATE_FILE) or plan.of(sp.UPDATE_FILE))
        location = self.resolve_storage_location(desired) if needs_location else self.storage_location_id
        if dry_run:
            for action in plan.actions:
                log.info("dry run: would %s", action.describe())
            return ExportResult(plan, applied=False, storage_location_id=location)
        folder_ids = {name: f.entity_id for name, f in existing.folders.items()}
        for action in plan.actions:
            log.info("%s", action.describe())
            self._apply(action, folder_ids, location)
        return ExportResult(plan, applied=True, folder_ids=folder_ids, storage_location_id=location)

    def _apply(self, action: sp.Action, folder_ids: dict[str, str], location: int | None) -> None:
        api = self.api
        # sp.diff fills in what each kind needs: annotations for creates and
        # updates, file for file creates and updates, entity_id for updates
        # and deletes. The casts below take those as given.
        if action.kind == sp.CREATE_FOLDER:
            entity = api.create_with_annotations(
                {"concreteType": FOLDER, "name": action.folder, "parentId": self.root_folder_id},
                cast(sp.Annotations, action.annotations),
            )
            folder_ids[action.folder] = entity["id"]
        elif action.kind == sp.UPDATE_FOLDER_ANNOTATIONS:
            entity_id = cast(str, action.entity_id)
            current = api.annotations(entity_id)
            api.set_annotations(entity_id, current["etag"], cast(sp.Annotations, action.annotations))
        elif action.kind == sp.CREATE_FILE:
            handle = self._file_handle(cast(sp.DesiredFile, action.file), location)
            api.create_with_annotations(
                {
                    "concreteType": FILE_ENTITY,
                    "name": action.name,
                    "parentId": folder_ids[action.folder],
                    "dataFileHandleId": handle["id"],
                },
                cast(sp.Annotations, action.annotations),
            )
        elif action.kind == sp.UPDATE_FILE:
            handle = self._file_handle(cast(sp.DesiredFile, action.file), location)
            entity = api.entity(cast(str, action.entity_id))
            entity["dataFileHandleId"] = handle["id"]
            # Synapse versions the File in place
            api.update_with_annotations(entity, cast(sp.Annotations, action.annotations))
        elif action.kind == sp.UPDATE_FILE_ANNOTATIONS:
            entity_id = cast(str, action.entity_id)
            current = api.annotations(entity_id)
            api.set_annotations(entity_id, current["etag"], cast(sp.Annotations, action.annotations))
        elif action.kind in (sp.DELETE_FILE, sp.DELETE_FOLDER):
            api.delete_entity(cast(str, action.entity_id))
            if action.kind == sp.DELETE_FOLDER:
                folder_ids.pop(action.folder, None)
        else:  # pragma: no cover
            raise ValueError(action.kind)

    def _file_handle(self, want: sp.DesiredFile, location: int | None) -> dict:
        if location is None:
            raise SynapseExportError("no storage location for the external file handles")
        return self.api.create_external_s3_file_handle(
            bucket=want.location.bucket,
            key=want.location.key,
            size=want.size,
            md5=want.md5,
            storage_location_id=location,
            content_type=CONTENT_TYPES.get(want.format),
        )


def manifests_to_export(
    storage, datasets: Iterable[str] | None = None, versions: dict[str, str] | None = None
) -> list[PublishManifest]:
    """The current manifest of every (or each chosen) dataset; ``versions``
    pins a dataset to another published version."""
    versions = dict(versions or {})
    manifests = [m for m in read_current_manifests(storage) if datasets is None or m.dataset_id in set(datasets)]
    by_id = {m.dataset_id: m for m in manifests}
    for dataset_id, version in versions.items():
        by_id[dataset_id] = read_manifest(storage, dataset_id, version)
    if datasets is not None:
        missing = sorted(set(datasets) - set(by_id))
        if missing:
            raise SynapseExportError(f"no published version of {', '.join(missing)}")
    return [by_id[k] for k in sorted(by_id)]


def s3_locator(storage) -> Callable[[str], sp.ObjectLocation]:
    """Pipeline-root key -> S3 bucket and object key, for an ``S3Storage``."""
    return lambda key: sp.ObjectLocation(storage.bucket, storage.full_key(key))


def export_published_root(
    published_root: str,
    folder_id: str,
    token: SecretToken,
    *,
    endpoint: str | None = None,
    datasets: Iterable[str] | None = None,
    tables: Iterable[str] | None = None,
    formats: Iterable[str] = ("parquet", "csv"),
    storage_location_id: int | None = None,
    dry_run: bool = False,
    retry: RetryPolicy | None = None,
    s3_client=None,
) -> ExportResult:
    """The whole export step: read the manifests under ``published_root``
    (``s3://bucket/prefix``), log in, diff and apply."""
    from bridge_downstream_adapters.s3 import S3Storage

    if not published_root.startswith("s3://"):
        raise SynapseExportError(
            "the Synapse export needs the published root in S3 (s3://bucket/prefix): "
            "Synapse file handles point at S3 objects"
        )
    storage = S3Storage.from_uri(published_root, client=s3_client)
    datasets = list(datasets) if datasets else None
    manifests = manifests_to_export(storage, datasets)
    if not manifests:
        # Never mirror "nothing": a wrong root would otherwise empty the tree.
        raise SynapseExportError(
            f"nothing published under {published_root} (no published/<dataset>/CURRENT); check --published-root"
        )
    desired = sp.desired_tree(
        manifests, s3_locator(storage), formats=tuple(formats), tables=list(tables) if tables else None
    )
    syn = connect(token, endpoint=endpoint, retry=retry)
    exporter = SynapseExporter(SynapseApi(syn, retry), folder_id, storage_location_id=storage_location_id)
    # Whole-root export: remove folders of tables no longer published. With a
    # dataset filter, only the chosen datasets' folders; with a table filter, none.
    prune = [] if tables else datasets
    result = exporter.export(desired, dry_run=dry_run, prune_datasets=prune)
    log.info("Synapse export %s: %s", "planned" if dry_run else "done", json.dumps(result.summary()))
    return result
