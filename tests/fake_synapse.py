"""A fake Synapse REST server on 127.0.0.1 for the real ``synapseclient``.

It implements just the endpoints the export and the storage setup call
(found by running the client against it and logging every unknown route),
with the server-side rules that matter to them:

* every call needs ``Authorization: Bearer <known token>`` (else 401);
* entity names are unique per parent (409), updates need the current etag
  (412), a File whose file handle changes gets a new version;
* annotations (v2) share the entity's etag;
* ``/entity/children`` pages (small pages, to exercise paging), and so do
  table and view queries: ``page_size`` rows a result, the rest through its
  ``nextPageToken`` (``.../table/query/nextPage/async``), as Synapse's;
* an external S3 file handle needs an ExternalS3 storage location owned by
  the caller, with the bucket and base key the handle names, and (when the
  test gives ``s3_head``) an existing object of the stated size;
* an ExternalS3 storage location needs ``owner.txt`` at the base key naming
  the caller (checked through ``s3_read``); creating the same one twice gives
  back the first (as Synapse does);
* an STS-enabled location can only be set on an empty folder;
* STS tokens (``GET /entity/{id}/sts``) for folders under an STS-enabled
  location, each with new credentials; they expire ``sts_lifetime`` after
  issue (default: far in the future) and are recorded in ``sts_issued``;
* injected faults (:meth:`FakeSynapse.fail`): a status for the next N
  matching calls, e.g. 429 with ``Retry-After`` or 503.

Every request is recorded in ``requests`` (method, path, status); routes the
fake does not know are also recorded in ``unknown``.
"""

from __future__ import annotations

import itertools
import json
import re
import threading
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

FOLDER = "org.sagebionetworks.repo.model.Folder"
PROJECT = "org.sagebionetworks.repo.model.Project"
FILE = "org.sagebionetworks.repo.model.FileEntity"
S3_FILE_HANDLE = "org.sagebionetworks.repo.model.file.S3FileHandle"
EXTERNAL_S3 = "org.sagebionetworks.repo.model.project.ExternalS3StorageLocationSetting"
UPLOAD_LIST = "org.sagebionetworks.repo.model.project.UploadDestinationListSetting"
NAME_RE = re.compile(r"^[A-Za-z0-9 _.+\-'()]{1,256}$")
TYPE_NAMES = {"folder": FOLDER, "file": FILE, "project": PROJECT}


class HttpError(Exception):
    def __init__(self, status: int, reason: str, headers: dict | None = None):
        super().__init__(reason)
        self.status, self.reason, self.headers = status, reason, headers or {}


@dataclass
class Fault:
    method: str
    pattern: re.Pattern
    status: int
    remaining: int
    retry_after: float | None
    reason: str


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


class FakeSynapse:
    def __init__(self, *, page_size: int = 3, s3_head=None, s3_read=None):
        self.lock = threading.RLock()
        self.ids = itertools.count(1000)
        self.users: dict[str, dict] = {}  # token -> profile
        self.entities: dict[str, dict] = {}
        self.annotations: dict[str, dict] = {}
        self.file_handles: dict[str, dict] = {}
        self.storage_locations: dict[int, dict] = {}
        self.project_settings: dict[str, dict] = {}  # folder id -> setting
        self.faults: list[Fault] = []
        self.requests: list[tuple[str, str, int]] = []
        self.unknown: list[tuple[str, str]] = []
        self.page_size = page_size
        self.s3_head = s3_head  # (bucket, key) -> size or None
        self.s3_read = s3_read  # (bucket, key) -> bytes or None
        self.sts_lifetime: timedelta | None = None
        self.sts_issued: list[dict] = []
        self.server: ThreadingHTTPServer | None = None
        self.thread: threading.Thread | None = None
        self.views: dict[str, list[dict]] = {}  # file view id -> its rows
        self.view_column_types: dict[str, dict[str, str]] = {}  # file view id -> column -> Synapse type
        self.query_jobs: dict[str, dict] = {}  # async job token -> query result bundle or next page
        self.query_pages: dict[str, tuple] = {}  # next page token -> (view id, headers, rows, start)

    # ----------------------------------------------------------- test API
    def add_user(self, token: str, user_name: str = "exporter", owner_id: str | None = None) -> dict:
        profile = {
            "ownerId": owner_id or str(next(self.ids)),
            "userName": user_name,
            "displayName": user_name.title(),
            "emails": [f"{user_name}@example.org"],
            "etag": uuid.uuid4().hex,
        }
        self.users[token] = profile
        return profile

    def add_project(self, name: str, owner: dict) -> str:
        return self._new_entity({"concreteType": PROJECT, "name": name}, owner)["id"]

    def add_folder(self, name: str, parent_id: str, owner: dict) -> str:
        return self._new_entity({"concreteType": FOLDER, "name": name, "parentId": parent_id}, owner)["id"]

    def add_external_location(self, bucket: str, base_key: str, owner: dict, *, sts: bool = False) -> int:
        return self._new_storage_location(
            {"concreteType": EXTERNAL_S3, "bucket": bucket, "baseKey": base_key, "uploadType": "S3", "stsEnabled": sts},
            owner,
            check_owner=False,
        )["storageLocationId"]

    def set_upload_location(self, folder_id: str, location_id: int) -> None:
        self.project_settings[folder_id] = {
            "id": str(next(self.ids)),
            "concreteType": UPLOAD_LIST,
            "projectId": folder_id,
            "settingsType": "upload",
            "locations": [location_id],
            "etag": uuid.uuid4().hex,
        }

    def fail(
        self,
        method: str,
        path_regex: str,
        status: int,
        *,
        times: int = 1,
        retry_after: float | None = None,
        reason: str = "injected failure",
    ) -> None:
        self.faults.append(Fault(method.upper(), re.compile(path_regex), status, times, retry_after, reason))

    def children_of(self, parent_id: str) -> list[dict]:
        return sorted((e for e in self.entities.values() if e.get("parentId") == parent_id), key=lambda e: e["name"])

    def calls(self, method: str, path_regex: str) -> list[tuple[str, str, int]]:
        pattern = re.compile(path_regex)
        return [r for r in self.requests if r[0] == method and pattern.search(r[1])]

    # --------------------------------------------------------- server life
    def start(self) -> FakeSynapse:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True  # no 40 ms delayed-ACK stalls per response
            wbufsize = 1 << 16  # headers and body leave in one write

            def log_message(self, *args):  # quiet
                pass

            def _handle(self):
                fake._dispatch(self)

            do_GET = do_POST = do_PUT = do_DELETE = _handle

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, name="fake-synapse", daemon=True)
        self.thread.start()
        return self

    def stop(self) -> None:
        if self.server:
            self.server.shutdown()
            self.server.server_close()

    @property
    def url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host}:{port}"

    # ------------------------------------------------------------ dispatch
    def _dispatch(self, handler: BaseHTTPRequestHandler) -> None:
        parsed = urlparse(handler.path)
        path, query = parsed.path, parse_qs(parsed.query)
        method = handler.command
        length = int(handler.headers.get("Content-Length") or 0)
        raw = handler.rfile.read(length) if length else b""
        status, body, headers = 200, None, {}
        try:
            body = self._route(method, path, query, raw, handler.headers.get("Authorization", ""))
        except HttpError as error:
            status, body, headers = error.status, {"reason": error.reason}, error.headers
        with self.lock:
            self.requests.append((method, path, status))
        payload = b"" if body is None else json.dumps(body).encode()
        handler.send_response(status)
        if body is not None:
            handler.send_header("Content-Type", "application/json;charset=UTF-8")
        for name, value in headers.items():
            handler.send_header(name, value)
        handler.send_header("Content-Length", str(len(payload)))
        handler.end_headers()
        handler.wfile.write(payload)

    def _route(self, method: str, path: str, query: dict, raw: bytes, authorization: str):
        with self.lock:
            for fault in self.faults:
                if fault.remaining > 0 and fault.method == method and fault.pattern.search(path):
                    fault.remaining -= 1
                    headers = {} if fault.retry_after is None else {"Retry-After": str(fault.retry_after)}
                    raise HttpError(fault.status, fault.reason, headers)
            if method == "GET" and path == "/repo/v1/version":
                return {"version": "fake-synapse-1"}
            user = self._authenticate(authorization)
            body = json.loads(raw) if raw else None
            for pattern, verb, fn in self._routes():
                match = re.fullmatch(pattern, path)
                if match and verb == method:
                    return fn(user, body, query, *match.groups())
            self.unknown.append((method, path))
            raise HttpError(404, f"The fake Synapse does not implement {method} {path}")

    def _routes(self):
        eid = r"(syn\d+)"
        return [
            (r"/repo/v1/userProfile", "GET", lambda u, b, q: u),
            (r"/repo/v1/entity", "POST", self._create_entity),
            (rf"/repo/v1/entity/{eid}", "GET", self._get_entity),
            (rf"/repo/v1/entity/{eid}", "PUT", self._put_entity),
            (rf"/repo/v1/entity/{eid}", "DELETE", self._delete_entity),
            (r"/repo/v1/entity/children", "POST", self._children),
            (rf"/repo/v1/entity/{eid}/annotations2", "GET", self._get_annotations),
            (rf"/repo/v1/entity/{eid}/annotations2", "PUT", self._put_annotations),
            (rf"/repo/v1/entity/{eid}/filehandles", "GET", self._entity_file_handles),
            (rf"/repo/v1/entity/{eid}/bundle2", "POST", self._get_bundle),
            (rf"/repo/v1/entity/{eid}/bundle2", "PUT", self._put_bundle),
            (r"/repo/v1/entity/bundle2/create", "POST", self._create_bundle),
            (rf"/repo/v1/entity/{eid}/sts", "GET", self._sts),
            (rf"/file/v1/entity/{eid}/uploadDestination", "GET", self._upload_destination),
            (r"/file/v1/externalFileHandle/s3", "POST", self._external_s3_handle),
            (r"/file/v1/fileHandle/(\d+)", "GET", self._get_file_handle),
            (r"/repo/v1/storageLocation", "POST", self._create_storage_location),
            (r"/repo/v1/storageLocation/(\d+)", "GET", self._get_storage_location),
            (rf"/repo/v1/projectSettings/{eid}/type/upload", "GET", self._get_project_setting),
            (r"/repo/v1/projectSettings", "POST", self._create_project_setting),
            (r"/repo/v1/projectSettings", "PUT", self._update_project_setting),
            (rf"/repo/v1/entity/{eid}/table/query/async/start", "POST", self._start_table_query),
            (rf"/repo/v1/entity/{eid}/table/query/async/get/(\w+)", "GET", self._get_table_query),
            (rf"/repo/v1/entity/{eid}/table/query/nextPage/async/start", "POST", self._start_next_page),
            (rf"/repo/v1/entity/{eid}/table/query/nextPage/async/get/(\w+)", "GET", self._get_table_query),
        ]

    # --------------------------------------------------------- table queries
    def add_file_view(self, rows: list[dict], column_types: dict[str, str] | None = None) -> str:
        """A file view whose rows are ``rows`` (column -> value); its id.
        ``column_types``: a column's Synapse type (default STRING), which
        the client casts its values by (a DATE is epoch milliseconds)."""
        view_id = f"syn{next(self.ids)}"
        self.views[view_id] = rows
        self.view_column_types[view_id] = column_types or {}
        return view_id

    def add_raw_file(self, bucket: str, key: str, parent_id: str, owner: dict) -> str:
        """A File entity on an external S3 handle, made directly (no storage location checks); its id."""
        handle = {"id": str(next(self.ids)), "bucketName": bucket, "key": key, "createdBy": owner["ownerId"]}
        handle["concreteType"] = "org.sagebionetworks.repo.model.file.S3FileHandle"
        self.file_handles[handle["id"]] = handle
        name = key.rsplit("/", 1)[-1]
        body = {"name": name, "parentId": parent_id, "concreteType": FILE, "dataFileHandleId": handle["id"]}
        return self._new_entity(body, owner)["id"]

    def _start_table_query(self, user, body, query, entity_id):
        """Runs the query at once (DuckDB over the view's rows); the job is
        ready on the first get. A result holds at most ``page_size`` rows and
        a ``nextPageToken`` for the rest, as Synapse's (whose page size is a
        byte budget)."""
        import duckdb

        rows = self.views.get(entity_id)
        if rows is None:
            raise HttpError(404, f"{entity_id} is no table or view")
        sql = body["query"]["sql"]
        offset, limit = int(body["query"].get("offset") or 0), int(body["query"].get("limit") or 10**9)
        columns = sorted({name for row in rows for name in row})
        with duckdb.connect() as connection:
            connection.execute(f"CREATE TABLE {entity_id} ({', '.join(f'{c} VARCHAR' for c in columns)})")
            for row in rows:
                connection.execute(
                    f"INSERT INTO {entity_id} VALUES ({', '.join('?' for _ in columns)})",
                    [None if row.get(c) is None else str(row[c]) for c in columns],
                )
            try:
                result = connection.execute(f"SELECT * FROM ({sql}) LIMIT {limit} OFFSET {offset}")
            except duckdb.Error as error:
                raise HttpError(400, f"invalid query: {error}") from error
            names = [d[0] for d in result.description]
            values = [[None if v is None else str(v) for v in row] for row in result.fetchall()]
        types = self.view_column_types.get(entity_id, {})
        headers = [{"name": name, "columnType": types.get(name, "STRING")} for name in names]
        token = uuid.uuid4().hex
        self.query_jobs[token] = {
            "concreteType": "org.sagebionetworks.repo.model.table.QueryResultBundle",
            "queryResult": self._query_page(entity_id, headers, values, offset),
        }
        return {"token": token}

    def _query_page(self, entity_id: str, headers: list[dict], values: list[list], offset: int, at: int = 0) -> dict:
        """A QueryResult: the result's rows from ``at``, at most ``page_size``
        of them, and a ``nextPageToken`` when rows remain."""
        end = at + self.page_size
        page = {
            "concreteType": "org.sagebionetworks.repo.model.table.QueryResult",
            "queryResults": {
                "concreteType": "org.sagebionetworks.repo.model.table.RowSet",
                "tableId": entity_id,
                "headers": headers,
                "rows": [
                    {"rowId": offset + at + i, "versionNumber": 1, "values": row}
                    for i, row in enumerate(values[at:end])
                ],
            },
        }
        if end < len(values):
            token = uuid.uuid4().hex
            self.query_pages[token] = (entity_id, headers, values, offset, end)
            page["nextPageToken"] = {
                "concreteType": "org.sagebionetworks.repo.model.table.QueryNextPageToken",
                "entityId": entity_id,
                "token": token,
            }
        return page

    def _start_next_page(self, user, body, query, entity_id):
        """The next page of a query, as an async job (``POST .../table/query/nextPage/async/start``)."""
        given = self.query_pages.pop((body or {}).get("token", ""), None)
        if given is None or given[0] != entity_id:
            raise HttpError(400, "unknown or used nextPageToken")
        token = uuid.uuid4().hex
        self.query_jobs[token] = self._query_page(*given)
        return {"token": token}

    def _get_table_query(self, user, body, query, entity_id, token):
        job = self.query_jobs.get(token)
        if job is None:
            raise HttpError(404, f"no query job {token}")
        return job

    def _authenticate(self, authorization: str) -> dict:
        if not authorization.startswith("Bearer "):
            raise HttpError(401, "Missing or malformed authentication")
        user = self.users.get(authorization[len("Bearer ") :])
        if user is None:
            raise HttpError(401, "Invalid access token")
        return user

    # -------------------------------------------------------------- entities
    def _entity(self, entity_id: str) -> dict:
        entity = self.entities.get(entity_id)
        if entity is None:
            raise HttpError(404, f"The resource you are attempting to access cannot be found: {entity_id}")
        return entity

    def _new_entity(self, body: dict, user: dict) -> dict:
        name, parent = body.get("name"), body.get("parentId")
        if not name or not NAME_RE.match(name):
            raise HttpError(400, f"Invalid Entity name: '{name}'")
        concrete = body.get("concreteType")
        if concrete not in (FOLDER, FILE, PROJECT):
            raise HttpError(400, f"unsupported concreteType {concrete}")
        if concrete != PROJECT:
            parent_entity = self._entity(parent or "")
            if parent_entity["concreteType"] == FILE:
                raise HttpError(400, "a File cannot be a parent")
            if any(c["name"] == name for c in self.children_of(parent)):
                raise HttpError(409, f"An entity with the name: {name} already exists with a parentId: {parent}")
        if concrete == FILE:
            handle = self.file_handles.get(str(body.get("dataFileHandleId")))
            if handle is None:
                raise HttpError(400, "FileEntity.dataFileHandleId must refer to an existing file handle")
            if handle["createdBy"] != user["ownerId"]:
                raise HttpError(403, "Only the creator of a FileHandle can assign it to an Entity")
        entity_id = f"syn{next(self.ids)}"
        now = _now()
        entity = {
            **body,
            "id": entity_id,
            "etag": uuid.uuid4().hex,
            "createdOn": now,
            "modifiedOn": now,
            "createdBy": user["ownerId"],
            "modifiedBy": user["ownerId"],
        }
        if concrete == FILE:
            entity.update(versionNumber=1, versionLabel="1", isLatestVersion=True)
        self.entities[entity_id] = entity
        self.annotations[entity_id] = {}
        return entity

    def _create_entity(self, user, body, query):
        return self._new_entity(body or {}, user)

    def _get_entity(self, user, body, query, entity_id):
        return self._entity(entity_id)

    def _put_entity(self, user, body, query, entity_id):
        entity = self._entity(entity_id)
        if body.get("etag") != entity["etag"]:
            raise HttpError(412, f"Object: {entity_id} was updated since you last fetched it, retrieve it again")
        if body.get("name") != entity["name"] and any(
            c["name"] == body.get("name") for c in self.children_of(entity.get("parentId"))
        ):
            raise HttpError(409, "name conflict")
        updated = {**entity, **{k: v for k, v in body.items() if k not in ("id", "createdOn", "createdBy")}}
        if entity["concreteType"] == FILE and str(body.get("dataFileHandleId")) != str(entity["dataFileHandleId"]):
            handle = self.file_handles.get(str(body.get("dataFileHandleId")))
            if handle is None:
                raise HttpError(400, "FileEntity.dataFileHandleId must refer to an existing file handle")
            updated["versionNumber"] = entity["versionNumber"] + 1
            updated["versionLabel"] = str(updated["versionNumber"])
        updated.update(etag=uuid.uuid4().hex, modifiedOn=_now(), modifiedBy=user["ownerId"])
        self.entities[entity_id] = updated
        return updated

    def _delete_entity(self, user, body, query, entity_id):
        self._entity(entity_id)
        for child in self.children_of(entity_id):
            self._delete_entity(user, None, query, child["id"])
        self.entities.pop(entity_id, None)
        self.annotations.pop(entity_id, None)

    def _children(self, user, body, query):
        parent = body.get("parentId")
        self._entity(parent)
        types = [TYPE_NAMES[t.lower()] for t in body.get("includeTypes") or ["file", "folder"]]
        items = [c for c in self.children_of(parent) if c["concreteType"] in types]
        start = int(body.get("nextPageToken") or 0)
        page = items[start : start + self.page_size]
        response = {
            "page": [
                {
                    "id": c["id"],
                    "name": c["name"],
                    "type": c["concreteType"],
                    "versionNumber": c.get("versionNumber"),
                    "createdOn": c["createdOn"],
                    "modifiedOn": c["modifiedOn"],
                }
                for c in page
            ]
        }
        if start + self.page_size < len(items):
            response["nextPageToken"] = str(start + self.page_size)
        return response

    def _get_annotations(self, user, body, query, entity_id):
        entity = self._entity(entity_id)
        return {"id": entity_id, "etag": entity["etag"], "annotations": self.annotations[entity_id]}

    @staticmethod
    def _check_annotations(annotations: dict) -> None:
        for key, typed in annotations.items():
            if not re.fullmatch(r"[A-Za-z0-9_.]+", key):
                raise HttpError(400, f"Invalid annotation key: {key}")
            if typed.get("type") not in ("STRING", "LONG", "DOUBLE", "BOOLEAN", "TIMESTAMP_MS", "ENTITYID"):
                raise HttpError(400, f"Invalid annotation type for {key}")
            try:
                if typed.get("type") == "LONG":
                    [int(v) for v in typed.get("value", [])]
            except ValueError:
                raise HttpError(400, f"Invalid LONG value for {key}") from None

    def _set_annotations(self, entity: dict, annotations: dict) -> dict:
        self.annotations[entity["id"]] = annotations
        entity["etag"] = uuid.uuid4().hex
        return {"id": entity["id"], "etag": entity["etag"], "annotations": annotations}

    def _put_annotations(self, user, body, query, entity_id):
        entity = self._entity(entity_id)
        if body.get("etag") != entity["etag"]:
            raise HttpError(412, f"Object: {entity_id} was updated since you last fetched it, retrieve it again")
        annotations = body.get("annotations") or {}
        self._check_annotations(annotations)
        return self._set_annotations(entity, annotations)

    # EntityBundle v2: one call for entity + annotations (+ file handles).
    def _get_bundle(self, user, body, query, entity_id):
        entity = self._entity(entity_id)
        bundle = {}
        if body.get("includeEntity"):
            bundle["entity"] = entity
        if body.get("includeAnnotations"):
            bundle["annotations"] = {
                "id": entity_id,
                "etag": entity["etag"],
                "annotations": self.annotations[entity_id],
            }
        if body.get("includeFileHandles"):
            handle = self.file_handles.get(str(entity.get("dataFileHandleId")))
            bundle["fileHandles"] = [handle] if handle else []
        return bundle

    def _create_bundle(self, user, body, query):
        annotations = ((body.get("annotations") or {}).get("annotations")) or {}
        self._check_annotations(annotations)  # before creating: all or nothing
        entity = self._new_entity(body.get("entity") or {}, user)
        return {"entity": entity, "annotations": self._set_annotations(entity, annotations)}

    def _put_bundle(self, user, body, query, entity_id):
        annotations = body.get("annotations")
        if annotations is not None:
            self._check_annotations(annotations.get("annotations") or {})
        entity = self._put_entity(user, body.get("entity") or {}, query, entity_id)
        result = {"entity": entity}
        if annotations is not None:  # Synapse applies them with the updated entity's etag
            result["annotations"] = self._set_annotations(entity, annotations.get("annotations") or {})
        return result

    def _entity_file_handles(self, user, body, query, entity_id):
        entity = self._entity(entity_id)
        if entity["concreteType"] != FILE:
            raise HttpError(400, f"{entity_id} is not a File")
        return {"list": [self.file_handles[str(entity["dataFileHandleId"])]]}

    # -------------------------------------------------------------- storage
    def _setting_for(self, entity_id: str) -> dict | None:
        current = entity_id
        while current:
            if current in self.project_settings:
                return self.project_settings[current]
            current = self.entities.get(current, {}).get("parentId")
        return None

    def _upload_destination(self, user, body, query, entity_id):
        self._entity(entity_id)
        setting = self._setting_for(entity_id)
        if setting is None:
            return {
                "concreteType": "org.sagebionetworks.repo.model.file.S3UploadDestination",
                "storageLocationId": 1,
                "uploadType": "S3",
            }
        location = self.storage_locations[int(setting["locations"][0])]
        return {
            "concreteType": "org.sagebionetworks.repo.model.file.ExternalS3UploadDestination",
            "storageLocationId": location["storageLocationId"],
            "uploadType": "S3",
            "bucket": location["bucket"],
            "baseKey": location.get("baseKey"),
            "stsEnabled": location.get("stsEnabled", False),
        }

    def _external_s3_handle(self, user, body, query):
        for name in ("bucketName", "key", "storageLocationId", "contentMd5", "contentSize", "fileName"):
            if body.get(name) in (None, ""):
                raise HttpError(400, f"{name} is required")
        location = self.storage_locations.get(int(body["storageLocationId"]))
        if location is None or location["concreteType"] != EXTERNAL_S3:
            raise HttpError(400, "storageLocationId must be an ExternalS3StorageLocationSetting")
        if location["createdBy"] != user["ownerId"]:
            raise HttpError(403, "Only the creator of the storage location can create external S3 file handles in it")
        base = (location.get("baseKey") or "").strip("/")
        if body["bucketName"] != location["bucket"] or (base and not body["key"].startswith(base + "/")):
            raise HttpError(400, "The bucket or key is not within the storage location")
        if self.s3_head is not None:
            size = self.s3_head(body["bucketName"], body["key"])
            if size is None:
                raise HttpError(400, f"Unable to access the file at bucket: {body['bucketName']} key: {body['key']}")
            if int(size) != int(body["contentSize"]):
                raise HttpError(400, "contentSize does not match the object")
        handle = {
            **body,
            "id": str(next(self.ids)),
            "etag": uuid.uuid4().hex,
            "createdBy": user["ownerId"],
            "createdOn": _now(),
        }
        self.file_handles[handle["id"]] = handle
        return handle

    def _get_file_handle(self, user, body, query, handle_id):
        handle = self.file_handles.get(handle_id)
        if handle is None:
            raise HttpError(404, f"FileHandle {handle_id} not found")
        return handle

    def _new_storage_location(self, body: dict, user: dict, *, check_owner: bool = True) -> dict:
        if body.get("concreteType") != EXTERNAL_S3:
            raise HttpError(400, "the fake only supports ExternalS3StorageLocationSetting")
        bucket, base = body.get("bucket"), (body.get("baseKey") or "").strip("/")
        if not bucket:
            raise HttpError(400, "bucket is required")
        if check_owner and self.s3_read is not None:
            key = f"{base}/owner.txt" if base else "owner.txt"
            content = self.s3_read(bucket, key)
            if content is None:
                raise HttpError(400, f"Did not find S3 object at key: {key} from bucket: {bucket}")
            names = set(content.decode().split())
            if not names & {user["ownerId"], user["userName"]}:
                raise HttpError(400, f"The username {user['userName']} found under key: {key} is not what was expected")
        for existing in self.storage_locations.values():  # Synapse returns the existing identical location
            if (
                existing["createdBy"] == user["ownerId"]
                and existing["bucket"] == bucket
                and (existing.get("baseKey") or "") == base
                and bool(existing.get("stsEnabled")) == bool(body.get("stsEnabled"))
            ):
                return existing
        location = {
            **body,
            "baseKey": base or None,
            "storageLocationId": next(self.ids),
            "etag": uuid.uuid4().hex,
            "createdBy": user["ownerId"],
            "createdOn": _now(),
            "uploadType": body.get("uploadType", "S3"),
            "stsEnabled": bool(body.get("stsEnabled")),
        }
        self.storage_locations[location["storageLocationId"]] = location
        return location

    def _create_storage_location(self, user, body, query):
        return self._new_storage_location(body or {}, user)

    def _get_storage_location(self, user, body, query, location_id):
        location = self.storage_locations.get(int(location_id))
        if location is None:
            raise HttpError(404, f"storage location {location_id} not found")
        return location

    def _get_project_setting(self, user, body, query, entity_id):
        self._entity(entity_id)
        setting = self.project_settings.get(entity_id)
        if setting is None:
            raise HttpError(404, f"No upload setting on {entity_id}")
        return setting

    def _check_setting(self, body: dict) -> None:
        folder = self._entity(body.get("projectId") or "")
        if folder["concreteType"] not in (FOLDER, PROJECT):
            raise HttpError(400, "project settings apply to projects and folders")
        if body.get("settingsType") != "upload" or body.get("concreteType") != UPLOAD_LIST:
            raise HttpError(400, "only upload settings are supported")
        for location_id in body.get("locations") or []:
            location = self.storage_locations.get(int(location_id))
            if location is None:
                raise HttpError(400, f"storage location {location_id} does not exist")
            if location.get("stsEnabled") and self.children_of(folder["id"]):
                raise HttpError(400, "Can only enable STS on a folder that is empty")

    def _create_project_setting(self, user, body, query):
        self._check_setting(body)
        if body["projectId"] in self.project_settings:
            raise HttpError(409, f"A project setting of type 'upload' already exists for {body['projectId']}")
        setting = {**body, "id": str(next(self.ids)), "etag": uuid.uuid4().hex}
        self.project_settings[body["projectId"]] = setting
        return setting

    def _update_project_setting(self, user, body, query):
        self._check_setting(body)
        existing = self.project_settings.get(body["projectId"])
        if existing is None:
            raise HttpError(404, "no setting to update")
        if body.get("etag") != existing["etag"]:
            raise HttpError(412, "project setting was updated since you last fetched it")
        self.project_settings[body["projectId"]] = {**existing, **body, "etag": uuid.uuid4().hex}

    def _sts(self, user, body, query, entity_id):
        self._entity(entity_id)
        permission = (query.get("permission") or [""])[0]
        if permission not in ("read_only", "read_write"):
            raise HttpError(400, "permission must be read_only or read_write")
        setting = self._setting_for(entity_id)
        location = self.storage_locations.get(int(setting["locations"][0])) if setting else None
        if not location or not location.get("stsEnabled"):
            raise HttpError(400, f"Entity {entity_id} does not have STS enabled")
        number = len(self.sts_issued) + 1
        expires = (
            datetime(2099, 1, 1, tzinfo=UTC) if self.sts_lifetime is None else datetime.now(UTC) + self.sts_lifetime
        )
        token = {
            "bucket": location["bucket"],
            "baseKey": location.get("baseKey"),
            "accessKeyId": f"FAKEACCESSKEY{number}",
            "secretAccessKey": f"fake-secret-{number}",
            "sessionToken": f"fake-session-{number}",
            "expiration": expires.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z",
        }
        self.sts_issued.append({"entity_id": entity_id, "permission": permission, **token})
        return token
