"""Reading upload archives safely, member by member, with bounded memory.

Every way an archive can be bad is an :class:`ArchiveError` with a ``kind``
and a message a person can act on; the batch goes on with the next archive.
Declared sizes in a ZIP can lie, so limits are enforced on the bytes actually
inflated, not only on the central directory.
"""

from __future__ import annotations

import io
import json
import posixpath
import struct
import zipfile
import zlib
from collections.abc import Iterator
from typing import BinaryIO, Self

from bridge_downstream.common import jsoncodec
from bridge_downstream.common.text import control_character_problem, printable
from bridge_downstream.config.limits import DEFAULT_LIMITS, ArchiveLimits

# What zipfile and zlib raise for a member that cannot be read: a bad header or
# CRC, damaged deflate data (zlib.error, not an OSError), encryption, an
# unsupported method, data that ends early.
_INFLATE_ERRORS = (zipfile.BadZipFile, zlib.error, NotImplementedError, RuntimeError, OSError, EOFError, ValueError)


def _inflate(compressed: bytes, size: int) -> bytes | None:
    inflater = zlib.decompressobj(-zlib.MAX_WBITS)  # raw deflate, as in ZIP
    member = inflater.decompress(compressed, size + 1)  # never more than declared (+1 to tell)
    return member if inflater.eof else None


_INFLATERS = {zipfile.ZIP_STORED: lambda compressed, size: compressed, zipfile.ZIP_DEFLATED: _inflate}


# zipfile's own layout of a local file header (private names, absent from typeshed).
_LOCAL_HEADER = struct.Struct(zipfile.structFileHeader)  # type: ignore[attr-defined]


_FLAG_UTF8_NAME = 0x800


# Encrypted, compressed patched data, strong encryption: zipfile refuses these, with its reason.
_FLAGS_ZIPFILE_DECIDES = 0x1 | 0x20 | 0x40


class ArchiveError(Exception):
    """An archive that cannot be processed; ``kind`` names the problem."""

    def __init__(self, kind: str, message: str, member: str | None = None):
        super().__init__(message)
        self.kind = kind
        self.member = member

    def __str__(self) -> str:
        return f"{self.kind}: {self.args[0]}"


def _unsafe_name_reason(raw_name: str) -> str | None:
    """Why a member name is refused, or None. ``raw_name`` is the name as the
    central directory holds it (``ZipInfo.orig_filename``): zipfile cuts
    ``filename`` at a NUL, so ``a.json<NUL>.exe`` would pass for ``a.json``."""
    reason = control_character_problem(raw_name)
    if reason:
        return reason
    name = raw_name
    if name.startswith(("/", "\\")) or (len(name) > 1 and name[1] == ":"):
        return "is an absolute path"
    if "\\" in name:
        return "uses backslashes"
    parts = name.split("/")
    if ".." in parts:
        return "climbs out of the archive with '..'"
    return None


class SafeArchive:
    """A ZIP archive checked before any member is read.

    Opening checks: the file is a ZIP, it is not empty, member names are
    relative and stay inside the archive, no name occurs twice, and the
    declared sizes are within the limits.
    """

    def __init__(self, stream: BinaryIO, limits: ArchiveLimits = DEFAULT_LIMITS, name: str = "archive"):
        self.limits = limits
        self.name = name
        stream.seek(0, io.SEEK_END)
        size = stream.tell()
        stream.seek(0)
        if size > limits.max_archive_bytes:
            raise ArchiveError(
                "oversized-archive", f"{size} bytes is more than the limit of {limits.max_archive_bytes}"
            )
        try:
            self.zip = zipfile.ZipFile(stream)
            infos = self.zip.infolist()
        except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, ValueError, EOFError) as error:
            raise ArchiveError("corrupt-archive", f"not a readable ZIP archive ({error})") from error
        # An archive in memory (most uploads) has its members read from these
        # bytes directly (:meth:`_read_verified`); BytesIO shares them, no copy.
        self._bytes = stream.getvalue() if isinstance(stream, io.BytesIO) else None
        self.members = [info for info in infos if not info.is_dir()]
        if not self.members:
            raise ArchiveError("empty-archive", "the archive holds no files")
        if len(self.members) > limits.max_members:
            raise ArchiveError(
                "too-many-members", f"{len(self.members)} members, more than the limit of {limits.max_members}"
            )
        seen: set[str] = set()
        by_base_name: dict[str, str] = {}
        total = compressed = 0
        for info in self.members:
            reason = _unsafe_name_reason(info.orig_filename)
            if reason:
                raise ArchiveError(
                    "unsafe-member-name", f"member name '{printable(info.orig_filename)}' {reason}", info.filename
                )
            normalized = posixpath.normpath(info.filename)
            if normalized in seen:
                raise ArchiveError(
                    "duplicate-member", f"member '{printable(info.filename)}' occurs more than once", info.filename
                )
            seen.add(normalized)
            # Files are mapped to datasets by base name: two of one name would pass for each other.
            base_name = posixpath.basename(normalized)
            if base_name in by_base_name:
                raise ArchiveError(
                    "ambiguous-member",
                    f"members '{printable(by_base_name[base_name])}' and '{printable(info.filename)}' "
                    f"share the file name '{printable(base_name)}'",
                    info.filename,
                )
            by_base_name[base_name] = info.filename
            self._check_declared(info)
            total += info.file_size
            compressed += info.compress_size
        if total > limits.max_total_bytes:
            raise ArchiveError(
                "zip-bomb", f"members inflate to {total} bytes, more than the limit of {limits.max_total_bytes}"
            )
        # Declared sizes bound what is inflated (a member is read up to its
        # declared size, then its CRC is checked), so this holds for the bytes too.
        if total > limits.ratio_floor_bytes and total / max(compressed, 1) > limits.max_ratio:
            raise ArchiveError(
                "zip-bomb",
                f"members inflate to {total} bytes, {total / max(compressed, 1):.0f} times their compressed size, "
                f"more than the limit of {limits.max_ratio:.0f}",
            )
        self.rows = 0  # given so far (:meth:`count_rows`)

    def _check_declared(self, info: zipfile.ZipInfo) -> None:
        if info.file_size > self.limits.max_member_bytes:
            raise ArchiveError(
                "oversized-member",
                f"member '{printable(info.filename)}' inflates to {info.file_size} bytes, more than the limit of {self.limits.max_member_bytes}",
                info.filename,
            )
        if info.file_size > self.limits.ratio_floor_bytes and info.compress_size > 0:
            ratio = info.file_size / info.compress_size
            if ratio > self.limits.max_ratio:
                raise ArchiveError(
                    "zip-bomb",
                    f"member '{printable(info.filename)}' has compression ratio {ratio:.0f}, more than the limit of {self.limits.max_ratio:.0f}",
                    info.filename,
                )

    @property
    def names(self) -> list[str]:
        return [info.filename for info in self.members]

    def has(self, name: str) -> bool:
        return any(info.filename == name for info in self.members)

    def check_dataset_member(self, name: str) -> None:
        """A member about to give a dataset rows sits at the archive's top
        level, unless the limits allow folders (``allow_subfolders``)."""
        if "/" in name and not self.limits.allow_subfolders:
            raise ArchiveError(
                "ambiguous-member",
                f"member '{printable(name)}' maps to a dataset by its file name but sits in a folder",
                name,
            )

    def count_rows(self, rows: int) -> None:
        """Count rows the archive gives; refused past ``max_rows``."""
        self.rows += rows
        if self.rows > self.limits.max_rows:
            raise ArchiveError("too-many-rows", f"the archive gives more than {self.limits.max_rows} rows, the limit")

    def open(self, name: str) -> io.BufferedReader:
        info = self.zip.getinfo(name)
        try:
            return io.BufferedReader(_BoundedRaw(self.zip.open(info), name, info.compress_size, self.limits), 1 << 16)
        except _INFLATE_ERRORS as error:
            raise ArchiveError(
                "corrupt-archive", f"member '{printable(name)}' cannot be read ({error})", name
            ) from error

    def read_bytes(self, name: str) -> bytes:
        """A whole member, in one read. zipfile inflates no more than the
        member's declared size and then checks its CRC, and opening checked
        the declared sizes against the limits: a member whose data inflate
        past its declared size fails here as corrupt, having inflated no more
        than the limits allow. (:meth:`open` streams a member of any size.)"""
        info = self.zip.getinfo(name)
        verified = self._read_verified(info)
        if verified is not None:
            return verified
        try:
            with self.zip.open(info) as member:
                return member.read(info.file_size + 1)
        except _INFLATE_ERRORS as error:
            raise ArchiveError(
                "corrupt-archive", f"member '{printable(name)}' cannot be read ({error})", name
            ) from error

    def _read_verified(self, info: zipfile.ZipInfo) -> bytes | None:
        """The member's bytes straight from an archive in memory, or None to
        let zipfile read it.

        For a small upload, zipfile's per-member set-up (a shared file
        handle, a local header read, a decompressing stream) costs more than
        inflating the member. Here the member's compressed bytes are
        inflated in one call, with the sizes, offsets and CRC zipfile read
        from the central directory. Bytes are returned only when everything
        zipfile checks holds -- the local header's signature and name, no
        encryption, a stored or deflated member, the declared size and the
        CRC -- so they are the bytes zipfile would return. Anything else
        (None) goes to zipfile, which reads it or says why it cannot."""
        data = self._bytes
        if data is None or info.flag_bits & _FLAGS_ZIPFILE_DECIDES or info.compress_type not in _INFLATERS:
            return None
        offset = info.header_offset
        try:
            header = _LOCAL_HEADER.unpack_from(data, offset)
        except struct.error:
            return None
        signature, flags, name_length, extra_length = header[0], header[3], header[10], header[11]
        start = offset + _LOCAL_HEADER.size
        raw_name = data[start : start + name_length]
        # ASCII reads the same in both encodings, without cp437's codec (Python code).
        name = (
            raw_name.decode("ascii")
            if raw_name.isascii()
            else raw_name.decode("utf-8" if flags & _FLAG_UTF8_NAME else "cp437", "replace")
        )
        if signature != zipfile.stringFileHeader or name != info.orig_filename:  # type: ignore[attr-defined]
            return None
        start += name_length + extra_length
        compressed = data[start : start + info.compress_size]
        if len(compressed) != info.compress_size:
            return None
        try:
            member = _INFLATERS[info.compress_type](compressed, info.file_size)
        except zlib.error:
            return None
        if member is None or len(member) != info.file_size or zlib.crc32(member) != info.CRC:
            return None
        return member

    def read_json(self, name: str):
        return parse_json_document(self.read_bytes(name), name)

    def iter_lines(self, name: str) -> Iterator[tuple[int, bytes]]:
        """(line number from 0, line) of a member, streamed."""
        with self.open(name) as reader:
            yield from enumerate(reader)

    def close(self) -> None:
        self.zip.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class _BoundedRaw(io.RawIOBase):
    """Inflates a member, failing as soon as it passes the size limits."""

    def __init__(self, raw, name: str, compressed: int, limits: ArchiveLimits):
        self.raw = raw
        self.name = name
        self.compressed = max(compressed, 1)
        self.limits = limits
        self.count = 0

    def readable(self) -> bool:
        return True

    def readinto(self, target) -> int:
        try:
            data = self.raw.read(len(target))
        except _INFLATE_ERRORS as error:
            raise ArchiveError(
                "corrupt-archive", f"member '{printable(self.name)}' cannot be inflated ({error})", self.name
            ) from error
        self.count += len(data)
        if self.count > self.limits.max_member_bytes:
            raise ArchiveError(
                "oversized-member",
                f"member '{printable(self.name)}' inflates past {self.limits.max_member_bytes} bytes",
                self.name,
            )
        if self.count > self.limits.ratio_floor_bytes and self.count / self.compressed > self.limits.max_ratio:
            raise ArchiveError(
                "zip-bomb",
                f"member '{printable(self.name)}' inflates more than {self.limits.max_ratio:.0f} times its size",
                self.name,
            )
        target[: len(data)] = data
        return len(data)

    def close(self) -> None:
        self.raw.close()
        super().close()


def decode_utf8(data: bytes, where: str) -> str:
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        raise ArchiveError("not-utf8", f"{printable(where)} is not UTF-8 text (byte {error.start})", where) from error


def parse_json(data: bytes, where: str):
    """The JSON value of a member (or one line of it), strictly parsed
    (:mod:`jsoncodec`). Keys given twice are not looked for here
    (:func:`refuse_duplicate_keys`)."""
    try:
        return jsoncodec.parse(data)
    except jsoncodec.JSONDecodeError as error:
        decode_utf8(data, where)  # text that is not UTF-8 is reported as such
        raise ArchiveError("not-json", f"{printable(where)} is not JSON ({error})", where) from error


def parse_json_document(data: bytes, where: str):
    """The JSON value of a whole member: strictly parsed, and refused when one
    of its objects gives a key twice."""
    value = parse_json(data, where)
    refuse_duplicate_keys(data, value, where)
    return value


# -- keys given twice ------------------------------------------------------------
#
# orjson keeps the last value of a key an object gives twice, silently. A
# document is rarely so, and asking Python's json to report every object's
# pairs costs 3-10 times the parse; so a cheap count decides first whether
# it can be. JSON text without an escaped quote (\" or \u0022) has no quote
# inside a string: every quote opens or closes a key or a string value. orjson
# writes the parsed value back the same way, so a key (with its value) that
# the parse dropped shows as fewer quotes in the re-encoding. Equal counts:
# nothing was dropped. Otherwise -- or with an escaped quote -- json's
# object_pairs_hook looks, and names the key.


def kept_every_key(source: bytes, value) -> bool:
    """True when ``value``, parsed from ``source``, certainly holds every key
    ``source`` spells; False when that takes a closer look (:func:`duplicate_key`).
    ``source`` may also be several JSON texts (an export's lines) and
    ``value`` the list of their values."""
    if b"\\" in source and (b'\\"' in source or b"\\u0022" in source):
        return False
    return source.count(b'"') == jsoncodec.exact_dumps(value).count(b'"')


class _DuplicateKey(Exception):
    pass


def _pairs_once(pairs: list[tuple[str, object]]) -> dict:
    value = dict(pairs)
    if len(value) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise _DuplicateKey(key)
            seen.add(key)
    return value


def duplicate_key(source: bytes) -> str | None:
    """The first key that an object of ``source`` (one JSON text, already
    known to be JSON) gives twice; None when there is none."""
    try:
        json.loads(source.removeprefix(b"\xef\xbb\xbf"), object_pairs_hook=_pairs_once)
    except _DuplicateKey as found:
        return found.args[0]
    return None


def refuse_duplicate_keys(source: bytes, value, where: str) -> None:
    """Raise ``duplicate-key`` when an object in ``source`` (parsed: ``value``) gives a key twice."""
    if kept_every_key(source, value):
        return
    key = duplicate_key(source)
    if key is not None:
        raise ArchiveError(
            "duplicate-key", f"{printable(where)} gives the key '{printable(key)}' twice in one object", where
        )
