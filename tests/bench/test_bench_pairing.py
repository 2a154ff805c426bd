"""The benchmark's paired ingest comparison: its shares cover every archive
once, and the ratio it reports is the original's whole time over ours."""

from __future__ import annotations

import sys

import pytest

from project_paths import PROJECT_ROOT

sys.path.insert(0, str(PROJECT_ROOT / "bench"))  # bench/ is scripts, not a package

import run
import steps


def test_shares_cover_every_archive_once_with_their_bytes(tmp_path):
    for day in range(3):
        folder = tmp_path / f"{day:04d}"
        folder.mkdir()
        for n in range(3):
            (folder / f"{day}-{n}.zip").write_bytes(b"x" * (10 * day + n + 1))
    (tmp_path / "0000" / "notes.txt").write_text("not an archive")
    listing, total = steps._inputs(tmp_path)
    shares = [steps._share(listing, f"{k}/4") for k in range(4)]
    keys = [[inp.key for inp in view] for view, _ in shares]
    assert [len(k) for k in keys] == [3, 2, 2, 2]
    assert sorted(key for share in keys for key in share) == [inp.key for inp in listing]
    assert keys[1] == ["0000/0-1.zip", "0001/1-2.zip"]  # archives 1 and 5: every 4th, in key order
    assert sum(size for _, size in shares) == total == sum(10 * day + n + 1 for day in range(3) for n in range(3))
    with pytest.raises(SystemExit, match="K/R"):
        steps._share(listing, "4/4")


def test_paired_rounds_compare_the_original_sum_with_ours_mean(monkeypatch, tmp_path):
    calls = []

    def fake_measure(arguments, label, extra_env=None):
        calls.append(arguments)
        share = arguments[arguments.index("--share") + 1] if "--share" in arguments else None
        if share is None:  # ours: all 100 archives, slower in the second round (the host drifted)
            seconds = [1.0, 2.0][sum(1 for a in calls if "--share" not in a) - 1]
            return {
                "label": label,
                "seconds": seconds,
                "wall_seconds": seconds + 0.5,
                "records": 100,
                "in_bytes": 1000,
                "out_rows": 400,
                "peak_rss_bytes": 10,
                "detail": {},
                "host_probe_s": 0.15,
            }
        seconds = {"0/2": 10.0, "1/2": 30.0}[share]
        return {
            "label": label,
            "seconds": seconds,
            "wall_seconds": seconds,
            "records": 50,
            "in_bytes": 500,
            "out_rows": 200,
            "peak_rss_bytes": 5,
            "detail": {},
            "host_probe_s": 0.3,
        }

    monkeypatch.setattr(run, "measure", fake_measure)
    ours, original = run.paired_ingest(["--input", "in", "--registry", "reg"], tmp_path, "ingest", 2)
    assert [a[a.index("--impl") + 1] for a in calls] == ["ours", "original", "ours", "original"]
    assert ours["seconds"] == 1.5 and ours["records"] == 100 and ours["rounds"] == [1.0, 2.0]
    assert original["seconds"] == 40.0 and original["records"] == 100 and original["in_bytes"] == 1000
    assert run.ratio(original, ours) == pytest.approx(40 / 1.5)
    # Each round: ours' records/s over the original's on its share.
    assert ours["round_ratios"] == pytest.approx([(100 / 1.0) / (50 / 10.0), (100 / 2.0) / (50 / 30.0)])
    assert ours["records_per_s"] == pytest.approx(100 / 1.5)
    assert (ours["host_probe_s"], original["host_probe_s"]) == (0.15, 0.3)  # the slowest host each side saw


def test_a_failed_round_fails_the_comparison(monkeypatch, tmp_path):
    monkeypatch.setattr(
        run, "measure", lambda arguments, label, extra_env=None: {"label": label, "failed": True, "error": "boom"}
    )
    ours, original = run.paired_ingest(["--input", "in"], tmp_path, "ingest", 3)
    assert ours["failed"] and original["failed"]
    assert run.ratio(original, ours) is None


def test_a_new_invocation_deletes_nothing_until_it_is_done(tmp_path):
    work = tmp_path / "work"
    (work / "10000" / "original").mkdir(parents=True)
    (work / "10000" / "original" / "row.ndjson").write_text("{}\n")
    (work / "results.json").write_text('{"kind": "full"}')
    (work / "results-s3.json").write_text('{"kind": "s3"}')
    stale = run.fresh_work(work)
    assert sorted(p.name for p in work.iterdir()) == ["results-s3.json", "results.json"]  # earlier results stay
    assert (stale / "10000" / "original" / "row.ndjson").is_file()  # moved aside, not yet deleted
    run.remove_stale(stale)
    assert not stale.exists()
    assert run.fresh_work(tmp_path / "new") is None and (tmp_path / "new").is_dir()


def test_memory_sampler_counts_the_whole_process_tree(tmp_path):
    import os
    import subprocess
    import time

    import psutil

    # A child holding ~64 MiB and a grandchild: both are part of the tree.
    script = "import subprocess, time; block = bytearray(64 << 20); subprocess.Popen(['sleep', '5']); time.sleep(5)"
    child = subprocess.Popen([sys.executable, "-c", script])
    try:
        root = psutil.Process(child.pid)
        deadline = time.monotonic() + 10
        while not root.children() and time.monotonic() < deadline:
            time.sleep(0.05)
        sampler = run.TreeMemory(child.pid)
        pids = [pid for pid, _ in sampler._tree()]
        assert pids[0] == child.pid and len(pids) == 2
        assert {pid for pid, _ in sampler._tree()} == {child.pid, *(p.pid for p in root.children(recursive=True))}
        expected = sum(p.memory_info().rss for p in (root, *root.children(recursive=True)))
        assert sampler.rss() >= 64 << 20
        assert abs(sampler.rss() - expected) < 8 << 20
        assert run.TreeMemory(os.getpid()).rss() > 0
        assert run._executable(child.pid) == os.path.realpath(sys.executable)  # read afresh, not a handle's memory
    finally:
        for process in psutil.Process(child.pid).children(recursive=True):
            process.kill()
        child.kill()
        child.wait()


def test_every_data_file_is_read_before_the_steps(tmp_path, capsys):
    (tmp_path / "0000").mkdir()
    (tmp_path / "0000" / "a.zip").write_bytes(b"x" * 3_000_000)
    (tmp_path / "0000" / "a.zip.metadata.json").write_bytes(b"{}")
    (tmp_path / "generated.json").write_bytes(b"{}")
    assert run.read_into_page_cache(tmp_path) == (3, 3_000_004)
    assert "read 3 files (3 MB)" in capsys.readouterr().out
