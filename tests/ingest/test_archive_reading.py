"""Members of an archive held in memory are read without zipfile's
per-member machinery; what comes out must be exactly what zipfile reads, and
anything zipfile would refuse must still be refused with zipfile's reason."""

from __future__ import annotations

import io
import zipfile

import pytest

from bridge_downstream.ingest.safe_archive import ArchiveError, SafeArchive
from project_paths import shared_path
from support import SAMPLES

CONTENT = (
    b'{"taskIdentifier": "number-match", "steps": ['
    + b'{"identifier": "a", "responseTime": 1.5},' * 40
    + b'{"identifier": "b"}]}'
)


def _zip(members: dict[str, bytes], compression=zipfile.ZIP_DEFLATED) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return buffer.getvalue()


def _read_in_memory(data: bytes, name: str) -> bytes:
    with SafeArchive(io.BytesIO(data)) as archive:
        return archive.read_bytes(name)


def _read_through_zipfile(data: bytes, name: str, tmp_path) -> bytes:
    path = tmp_path / "archive.zip"  # a file, not memory: zipfile reads every member
    path.write_bytes(data)
    with open(path, "rb") as stream, SafeArchive(stream) as archive:
        return archive.read_bytes(name)


def _assert_read_from_memory_as_zipfile_reads(data: bytes) -> int:
    with zipfile.ZipFile(io.BytesIO(data)) as reference, SafeArchive(io.BytesIO(data)) as archive:
        for info in archive.members:
            assert archive._read_verified(info) is not None, f"{info.filename} was not read from memory"
            assert archive.read_bytes(info.filename) == reference.read(info.filename), info.filename
        return len(archive.members)


@pytest.mark.parametrize(
    "path", sorted(p for p in (SAMPLES / "archives").glob("*.zip") if zipfile.is_zipfile(p)), ids=lambda p: p.name
)
def test_sample_members_read_from_memory_are_zipfiles_bytes(path):
    assert _assert_read_from_memory_as_zipfile_reads(path.read_bytes()) >= 1


@pytest.mark.shared_data
def test_real_members_read_from_memory_are_zipfiles_bytes():
    archives = sorted(shared_path("bridge-archives").glob("*.zip"))
    assert len(archives) == 2
    assert sum(_assert_read_from_memory_as_zipfile_reads(path.read_bytes()) for path in archives) >= 10


@pytest.mark.parametrize("compression", [zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED])
def test_both_methods_are_read_from_memory(compression):
    data = _zip({"taskData.json": CONTENT, "empty.json": b""}, compression)
    with SafeArchive(io.BytesIO(data)) as archive:
        for info in archive.members:
            assert archive._read_verified(info) is not None
    assert _read_in_memory(data, "taskData.json") == CONTENT
    assert _read_in_memory(data, "empty.json") == b""


def test_non_ascii_names_are_read_from_memory_in_either_encoding():
    utf8 = _zip({"tâche.json": CONTENT})  # zipfile flags a non-ASCII name as UTF-8
    # The same bytes without the flag, as an old client writes names: cp437,
    # in which the UTF-8 bytes of "â" read as two other characters.
    legacy = bytearray(utf8)
    central = legacy.index(b"PK\x01\x02")
    for flags in (6, central + 8):  # the local header's and the central directory's
        legacy[flags + 1] &= ~0x08
    for data, name in ((utf8, "tâche.json"), (bytes(legacy), "tâche.json".encode().decode("cp437"))):
        with SafeArchive(io.BytesIO(data)) as archive:
            [info] = archive.members
            assert info.filename == name
            assert archive._read_verified(info) == CONTENT
            assert archive.read_bytes(name) == zipfile.ZipFile(io.BytesIO(data)).read(name) == CONTENT


def _damage_local_signature(data: bytearray) -> None:
    data[0:4] = b"PK\x09\x09"


def _damage_local_name(data: bytearray) -> None:
    data[30:31] = b"X"  # the central directory still says taskData.json


def _damage_stored_byte(data: bytearray) -> None:  # the CRC no longer matches
    start = 30 + len("taskData.json")
    data[start + 5] ^= 0x01


def _mark_encrypted(data: bytearray) -> None:
    central = data.rfind(b"PK\x01\x02")
    data[central + 8] |= 0x01


@pytest.mark.parametrize(
    ("damage", "compression", "reason"),
    [
        (_damage_local_signature, zipfile.ZIP_STORED, "Bad magic number for file header"),
        (_damage_local_name, zipfile.ZIP_STORED, "File name in directory 'taskData.json' and header"),
        (_damage_stored_byte, zipfile.ZIP_STORED, "Bad CRC-32 for file 'taskData.json'"),
        (_mark_encrypted, zipfile.ZIP_DEFLATED, "is encrypted, password required for extraction"),
    ],
)
def test_what_zipfile_refuses_is_refused_with_its_reason(damage, compression, reason, tmp_path):
    data = bytearray(_zip({"taskData.json": CONTENT}, compression))
    damage(data)
    data = bytes(data)
    with pytest.raises(ArchiveError) as in_memory:
        _read_in_memory(data, "taskData.json")
    with pytest.raises(ArchiveError) as through_zipfile:
        _read_through_zipfile(data, "taskData.json", tmp_path)
    assert reason in str(in_memory.value)
    assert str(in_memory.value) == str(through_zipfile.value)


def test_a_deflate_stream_that_ends_early_is_refused(tmp_path):
    # The declared sizes are kept, the compressed bytes cut short: zipfile's error.
    data = bytearray(_zip({"taskData.json": CONTENT * 20}))
    central = data.rfind(b"PK\x01\x02")
    compressed_size = int.from_bytes(data[central + 20 : central + 24], "little")
    start = 30 + len("taskData.json")
    cut = compressed_size // 2
    damaged = bytes(data[: start + cut] + b"\0" * (compressed_size - cut) + data[start + compressed_size :])
    with pytest.raises(ArchiveError) as in_memory:
        _read_in_memory(damaged, "taskData.json")
    with pytest.raises(ArchiveError) as through_zipfile:
        _read_through_zipfile(damaged, "taskData.json", tmp_path)
    assert str(in_memory.value).startswith("corrupt-archive: member 'taskData.json' cannot be read")
    assert str(in_memory.value) == str(through_zipfile.value)
