"""Object storage as the core sees it: keys under a root, like S3.

Keys are POSIX-style relative paths ("json/dataset=X/part-0.ndjson"). The
local implementation maps them to files under a directory; the S3
implementation (``bridge_downstream_adapters.s3.S3Storage``) to objects under a
bucket prefix. Writes of a whole object are atomic in both: a reader sees the
old object or the new one, never a torn one.
"""

from __future__ import annotations

import errno
import hashlib
import io
import os
import shutil
import stat
import tempfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import BinaryIO, Protocol, runtime_checkable

from bridge_downstream.common import jsoncodec
from bridge_downstream.common.text import control_character_problem

# A file up to this size is read whole by LocalStorage.open_read, as S3Storage reads every object.
SMALL_FILE_BYTES = 1 << 20


class UnreadableMetadata(ValueError):
    """An object's metadata that cannot be read (locally: a damaged sidecar file)."""


# What ``Storage.metadata`` gives for an object the store holds no metadata
# for (locally: no sidecar file), told apart by identity (``is``) from an
# empty one (an empty sidecar): ingest refuses the first as "no Bridge
# metadata" and checks the second for the fields it lacks.
NO_METADATA: Mapping[str, object] = MappingProxyType({})


@dataclass(frozen=True)
class ObjectInfo:
    key: str
    size: int


@dataclass(frozen=True)
class RefusedEntry:
    """An entry under a prefix that is no object to read, and why: locally a
    dangling or looping symbolic link, a FIFO, a device, a name that is not
    UTF-8 (shown with ``\\x`` escapes); anywhere a name with a control
    character. A folder's key ends in ``/``."""

    key: str
    reason: str


@runtime_checkable
class Storage(Protocol):
    """The storage interface every stage uses."""

    def uri(self, key: str) -> str: ...

    def read_bytes(self, key: str) -> bytes: ...

    def open_read(self, key: str) -> BinaryIO:
        """A seekable binary stream (ZIP reading needs seek)."""
        ...

    def write_bytes(self, key: str, data: bytes, metadata: dict[str, str] | None = None) -> None: ...

    def upload_file(self, local_path: str, key: str) -> None: ...

    def move_in(self, local_path: str, key: str) -> None:
        """``upload_file`` for a local file the caller is done with: the file
        is gone afterwards (locally it is renamed into place when it can be)."""
        ...

    def exists(self, key: str) -> bool: ...

    def list(self, prefix: str) -> Iterator[ObjectInfo]:
        """Every object whose key starts with ``prefix``, in key order."""
        ...

    def delete(self, key: str) -> None: ...

    def copy(self, source_key: str, dest_key: str) -> None: ...

    def metadata(self, key: str) -> Mapping[str, object]:
        """The object's user metadata (S3 ``x-amz-meta-*``) as the store holds it:
        S3 gives lower-case names and text; a local sidecar gives its JSON as
        written (ingest reads both the same way, nulls and case included);
        :data:`NO_METADATA` when it holds none for the object."""
        ...

    def open_read_with_metadata(self, key: str) -> tuple[BinaryIO, Mapping[str, object]]:
        """``open_read`` and ``metadata`` in one request where the store allows it."""
        ...


def join_key(*parts: str) -> str:
    return "/".join(p.strip("/") for p in parts if p and p.strip("/"))


def delete_prefix(storage: Storage, prefix: str) -> int:
    keys = [info.key for info in storage.list(prefix)]
    for key in keys:
        storage.delete(key)
    return len(keys)


def list_entries(storage: Storage, prefix: str) -> Iterator[ObjectInfo | RefusedEntry]:
    """Every entry under ``prefix`` in key order: the objects ``storage.list``
    gives, and the entries that are none, each with its reason. With
    :func:`local_entry`, the one place that decides which entries a listing
    cannot use."""
    entries = storage.scan(prefix) if isinstance(storage, LocalStorage) else storage.list(prefix)
    return map(_usably_named, entries)


def local_entry(storage: LocalStorage, key: str) -> ObjectInfo | RefusedEntry | None:
    """The file ``key`` names (not a folder), judged as :func:`list_entries`
    judges the entries it lists; None where there is none."""
    entry = storage.entry(key)
    return None if entry is None else _usably_named(entry)


def _usably_named(entry: ObjectInfo | RefusedEntry) -> ObjectInfo | RefusedEntry:
    if isinstance(entry, ObjectInfo) and (problem := control_character_problem(entry.key)):
        # Reports, logs and terminals read a name as text: a line break could forge a
        # line, an escape (ESC, or C1's CSI) could drive the terminal.
        return RefusedEntry(entry.key, f"its name {problem}")
    return entry


def file_digests(path: str | os.PathLike, chunk_size: int = 1 << 20) -> tuple[str, str, int]:
    """(md5 hex, sha256 hex, size) of a local file, read once."""
    md5, sha256, size = hashlib.md5(usedforsecurity=False), hashlib.sha256(), 0
    with open(path, "rb") as stream:
        while chunk := stream.read(chunk_size):
            md5.update(chunk)
            sha256.update(chunk)
            size += len(chunk)
    return md5.hexdigest(), sha256.hexdigest(), size


class LocalStorage:
    """Storage on a local directory; the layout mirrors the S3 one.

    Object metadata, which S3 keeps beside the object, is kept in a sidecar
    file ``<name>.metadata.json`` -- the same convention the local ingest
    command reads Bridge metadata from.
    """

    METADATA_SUFFIX = ".metadata.json"

    def __init__(self, root: str | os.PathLike):
        self.root = Path(root).resolve()
        self._root_text = self.root.as_posix()
        self._root_prefix = self._root_text.rstrip("/") + "/"

    def _checked(self, key: str) -> str:
        # Normalized, not resolved: a symlinked input inside the root is fine,
        # a key that climbs out with ".." is not. String work only: this runs
        # for every archive and every part file.
        path = os.path.normpath(os.path.join(self._root_text, key))
        if path != self._root_text and not path.startswith(self._root_prefix):
            raise ValueError(f"key {key!r} escapes the storage root {self.root}")
        return path

    def path(self, key: str) -> Path:
        return Path(self._checked(key))

    def uri(self, key: str) -> str:
        # Not percent-encoded: Spark and Hadoop take "dataset=X" literally. A
        # folder's key keeps its "/", as on S3: URIs sort as their keys do.
        return "file://" + self._checked(key) + ("/" if key.endswith("/") and key.strip("/") else "")

    def read_bytes(self, key: str) -> bytes:
        return _read_file(self._checked(key))

    def open_read(self, key: str) -> BinaryIO:
        """A small file (most uploads are a few KB) read whole into memory, as
        from S3: four system calls where a buffered file object takes about
        ten, once per archive. A larger one as a file object, streamed."""
        path = self._checked(key)
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        try:
            status = os.fstat(fd)
            if stat.S_ISDIR(status.st_mode):
                raise IsADirectoryError(errno.EISDIR, os.strerror(errno.EISDIR), path)
            if not stat.S_ISREG(status.st_mode) or status.st_size > SMALL_FILE_BYTES:
                return open(fd, "rb")  # the descriptor is the file object's now
            data = _read_to_end(fd, status.st_size)
        except BaseException:
            os.close(fd)
            raise
        os.close(fd)
        return io.BytesIO(data)

    def write_bytes(self, key: str, data: bytes, metadata: dict[str, str] | None = None) -> None:
        self._atomic_write(self.path(key), data)
        if metadata is not None:
            import json

            sidecar = self.path(key + self.METADATA_SUFFIX)
            self._atomic_write(sidecar, json.dumps(metadata, sort_keys=True).encode())

    def upload_file(self, local_path: str, key: str) -> None:
        target = self.path(key)
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".tmp-")
        os.fchmod(fd, new_file_mode())
        os.close(fd)
        shutil.copyfile(local_path, tmp)  # the content only: the mode stays the new file's
        os.replace(tmp, target)

    def move_in(self, local_path: str, key: str) -> None:
        target = self._checked(key)
        os.makedirs(os.path.dirname(target), exist_ok=True)
        os.chmod(local_path, new_file_mode())  # a temporary file's 0600 is not the object's
        try:
            os.replace(local_path, target)  # atomic, and no copy
        except OSError as error:
            if error.errno != errno.EXDEV:
                raise
            self.upload_file(local_path, key)  # another file system: copy, then remove
            os.unlink(local_path)

    def exists(self, key: str) -> bool:
        return self.path(key).is_file()

    def list(self, prefix: str) -> Iterator[ObjectInfo]:
        """The regular files under ``prefix`` in key order, as S3 lists its
        objects, one folder at a time: a backfill's 100,000s of files are never
        held at once. Nothing else is listed (see :meth:`scan`)."""
        return (entry for entry in self.scan(prefix) if isinstance(entry, ObjectInfo))

    def scan(self, prefix: str) -> Iterator[ObjectInfo | RefusedEntry]:
        """:meth:`list`, and every other entry under ``prefix`` as a
        :class:`RefusedEntry` with its reason. Nothing is opened and no
        symbolic link to a folder is followed, so a FIFO or a link loop is
        named, never waited on or walked round."""
        # Walk only the deepest directory the prefix names, as S3 would.
        base = self.root / prefix
        start = base if base.is_dir() else base.parent
        if not start.exists():
            return
        relative = start.relative_to(self.root).as_posix()
        for entry in _walk_in_key_order(str(start), "" if relative == "." else relative + "/", prefix):
            if entry.key.startswith(prefix):
                yield entry

    def entry(self, key: str) -> ObjectInfo | RefusedEntry | None:
        """The file ``key`` names as :meth:`scan` would give it; None for a
        folder or nothing."""
        parent, _, name = key.rpartition("/")
        found = _examine(name, self._checked(key), parent + "/" if parent else "")
        if isinstance(found, _Walkable):
            return None if found.folder else ObjectInfo(found.key, found.size)
        return found

    def delete(self, key: str) -> None:
        path = self.path(key)
        path.unlink(missing_ok=True)
        # Remove empty parents so listings stay as S3 would show them.
        parent = path.parent
        while parent != self.root and parent.exists() and not any(parent.iterdir()):
            parent.rmdir()
            parent = parent.parent

    def copy(self, source_key: str, dest_key: str) -> None:
        self.upload_file(str(self.path(source_key)), dest_key)

    def metadata(self, key: str) -> Mapping[str, object]:
        sidecar = self._checked(key + self.METADATA_SUFFIX)
        try:
            text = _read_file(sidecar)
        except (FileNotFoundError, IsADirectoryError):
            return NO_METADATA
        if not text.strip():  # an empty sidecar: metadata with no fields, not a damaged file
            return {}
        name = os.path.basename(sidecar)
        try:
            values = jsoncodec.parse(text)  # strict: an unpaired surrogate could not be written out again
        except ValueError as error:  # not UTF-8, or not JSON
            raise UnreadableMetadata(f"{name} is not JSON ({error})") from error
        if not isinstance(values, dict):
            raise UnreadableMetadata(f"{name} is not a JSON object of metadata names and values")
        return values

    def open_read_with_metadata(self, key: str) -> tuple[BinaryIO, Mapping[str, object]]:
        metadata = self.metadata(key)  # first: a damaged sidecar leaves no file open
        return self.open_read(key), metadata

    @staticmethod
    def _atomic_write(target: Path, data: bytes) -> None:
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".tmp-")
        os.fchmod(fd, new_file_mode())
        with os.fdopen(fd, "wb") as stream:
            stream.write(data)
        os.replace(tmp, target)


def new_file_mode() -> int:
    """The mode a file the user creates gets (0644 under umask 022, 0664 under
    002), for every object LocalStorage writes: it writes through temporary
    files, which ``mkstemp`` makes 0600, and a published output is often read by
    colleagues."""
    return 0o666 & ~process_umask()


def process_umask() -> int:
    """The process's umask."""
    # Read, not set: setting it to read it would, for a moment, change the mode of
    # files other threads create.
    try:
        with open("/proc/self/status", "rb") as status:
            for line in status:
                if line.startswith(b"Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)  # no /proc (macOS): the only way to read it
    os.umask(mask)
    return mask


def read_stream(storage: Storage, key: str) -> BinaryIO:
    """A seekable stream; falls back to an in-memory copy when needed."""
    stream = storage.open_read(key)
    if stream.seekable():
        return stream
    data = stream.read()
    stream.close()
    return io.BytesIO(data)


def _read_file(path: str) -> bytes:
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        return _read_to_end(fd, os.fstat(fd).st_size)
    finally:
        os.close(fd)


def _read_to_end(fd: int, size: int) -> bytes:
    """A file's bytes from ``fd``'s position; ``size``, what the file holds
    (a file that grew since is read to its new end)."""
    data = os.read(fd, size + 1)  # one more than expected: a short read is the end
    if len(data) <= size:
        return data
    chunks = [data]
    while chunk := os.read(fd, 1 << 20):
        chunks.append(chunk)
    return b"".join(chunks)


def _walk_in_key_order(folder: str, key_prefix: str, wanted: str = "") -> Iterator[ObjectInfo | RefusedEntry]:
    """Every entry under ``folder`` (of those whose keys can start with
    ``wanted``), in the order of the keys. A folder ``a`` sorts as ``a/``:
    its files' keys all start with ``a/``, so walking each folder's entries in
    that order lists the keys sorted."""
    with os.scandir(folder) as scan:
        entries = [examined for entry in scan if (examined := _examine(entry.name, entry.path, key_prefix)) is not None]
    entries.sort(key=lambda examined: examined.key)
    for entry in entries:
        if isinstance(entry, RefusedEntry):
            yield entry
        elif not (entry.key.startswith(wanted) or wanted.startswith(entry.key)):
            continue  # a folder or file the prefix rules out
        elif entry.folder:
            try:
                yield from _walk_in_key_order(entry.path, entry.key, wanted)
            except OSError as error:  # a folder that cannot be read: named, and the walk goes on
                yield RefusedEntry(entry.key, f"a folder that cannot be read ({error.strerror})")
        else:
            yield ObjectInfo(entry.key, entry.size)


@dataclass(frozen=True, slots=True)
class _Walkable:
    """A folder to walk or a regular file to list."""

    key: str
    path: str
    folder: bool
    size: int


_NOT_REGULAR = {
    stat.S_IFIFO: "a FIFO (named pipe), not a regular file: reading it could wait for ever",
    stat.S_IFCHR: "a character device, not a regular file",
    stat.S_IFBLK: "a block device, not a regular file",
    stat.S_IFSOCK: "a socket, not a regular file",
}


def _examine(name: str, path: str, key_prefix: str) -> _Walkable | RefusedEntry | None:
    """A folder or regular file, an entry that is neither (refused, with the
    reason), or None for one to pass over (gone since the folder was read, or
    an upload in progress). Nothing is opened."""
    try:
        status = os.stat(path)  # through a link: a link to a regular file is one
    except FileNotFoundError:
        if not os.path.islink(path):
            return None  # gone since the folder was read
        return RefusedEntry(key_prefix + name, "a symbolic link whose target does not exist")
    except OSError as error:
        if error.errno == errno.ELOOP:
            return RefusedEntry(key_prefix + name, "a symbolic link that loops (it leads back to itself)")
        return RefusedEntry(key_prefix + name, f"cannot be examined ({error.strerror})")
    folder = stat.S_ISDIR(status.st_mode)
    key = key_prefix + name + ("/" if folder else "")
    try:
        name.encode()
    except UnicodeEncodeError:  # os.scandir gave the bytes that are not UTF-8 as surrogates
        shown = key_prefix + os.fsencode(name).decode("utf-8", "backslashreplace") + ("/" if folder else "")
        return RefusedEntry(shown, "its name is not UTF-8 (shown with \\x escapes), so no key names it")
    if folder:
        if os.path.islink(path):  # as os.walk: a link could lead round in a loop, or out of the root
            return RefusedEntry(key, "a symbolic link to a folder: links to folders are not followed")
        return _Walkable(key, path, True, 0)
    if stat.S_ISREG(status.st_mode):
        return None if name.startswith(".tmp-") else _Walkable(key, path, False, status.st_size)
    return RefusedEntry(key, _NOT_REGULAR.get(stat.S_IFMT(status.st_mode), "not a regular file"))
