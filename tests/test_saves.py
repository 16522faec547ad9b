"""Crash-safe saves: a target is never missing, never mixed, and killed saves leave nothing.

Unit tests of ``lensarith._io`` (replacement, exceptions, permissions, fsync, stale
siblings, PID reuse, the fallback swap) and a kill test: forked children saving a
``Result`` are SIGKILLed at random instants, on the ``renameat2`` path and on the fallback.
"""

from __future__ import annotations

import ctypes
import errno
import fcntl
import json
import mmap
import os
import random
import signal
import stat
import statistics
import sys
import time
from pathlib import Path

import pytest
import torch

from lensarith import _io
from lensarith._io import atomic_directory, atomic_write_bytes, atomic_write_text, recover
from lensarith.core import Result

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="fork, flock and renameat2: Linux")

torch.set_num_threads(1)


def hidden(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


def write_tree(path: Path, files: dict[str, str]) -> None:
    with atomic_directory(path) as tmp:
        for rel, text in files.items():
            (tmp / rel).parent.mkdir(parents=True, exist_ok=True)
            (tmp / rel).write_text(text)


def read_tree(path: Path) -> dict[str, str]:
    return {str(p.relative_to(path)): p.read_text() for p in sorted(path.rglob("*")) if p.is_file()}


@pytest.fixture(params=["renameat2", "fallback"])
def swap(request, monkeypatch):
    """Run a test on both swaps: the atomic exchange and the recoverable two renames."""
    if request.param == "renameat2":
        if _io._renameat2() is None:
            pytest.skip("no renameat2 in this libc")
    else:
        monkeypatch.setattr(_io, "_renameat2", lambda: None)
    return request.param


def fork_and_die(body) -> None:
    """Run ``body`` in a forked child that then dies (``os._exit``) without tidying."""
    pid = os.fork()
    if pid == 0:
        try:
            body()
        finally:
            os._exit(0)
    os.waitpid(pid, 0)


# -- replacing, exceptions, permissions ------------------------------------------------------

def test_replaces_an_existing_directory_as_a_whole(tmp_path, swap):
    target = tmp_path / "deep" / "res"
    write_tree(target, {"a.txt": "1", "sub/b.txt": "1"})
    write_tree(target, {"c.txt": "2"})
    assert read_tree(target) == {"c.txt": "2"}
    assert hidden(target.parent) == []


def test_an_exception_in_the_block_leaves_the_old_directory_and_no_temporary(tmp_path, swap):
    target = tmp_path / "res"
    write_tree(target, {"a.txt": "old"})
    for exc in (ValueError, KeyboardInterrupt):
        with pytest.raises(exc), atomic_directory(target) as tmp:
            (tmp / "a.txt").write_text("new")
            raise exc
        assert read_tree(target) == {"a.txt": "old"}
        assert hidden(tmp_path) == []


def test_a_failing_exchange_raises_and_keeps_the_old_directory(tmp_path, monkeypatch):
    def refuses(*args):
        ctypes.set_errno(errno.EACCES)
        return -1

    monkeypatch.setattr(_io, "_renameat2", lambda: refuses)
    target = tmp_path / "res"
    write_tree(target, {"a.txt": "old"})
    with pytest.raises(OSError, match="renameat2"):
        write_tree(target, {"a.txt": "new"})
    assert read_tree(target) == {"a.txt": "old"} and hidden(tmp_path) == []


@pytest.mark.parametrize("err", [errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP])
def test_a_filesystem_without_exchange_falls_back(tmp_path, monkeypatch, err):
    calls = []

    def unsupported(*args):
        calls.append(args)
        ctypes.set_errno(err)
        return -1

    monkeypatch.setattr(_io, "_renameat2", lambda: unsupported)
    target = tmp_path / "res"
    write_tree(target, {"a.txt": "old"})
    write_tree(target, {"a.txt": "new"})
    assert calls and read_tree(target) == {"a.txt": "new"} and hidden(tmp_path) == []


@pytest.mark.parametrize("umask, dir_mode, file_mode", [(0o022, 0o755, 0o644), (0o027, 0o750, 0o640),
                                                         (0o077, 0o700, 0o600)])
def test_permissions_follow_the_umask(tmp_path, umask, dir_mode, file_mode):
    old = os.umask(umask)
    try:
        with atomic_directory(tmp_path / "res") as tmp:
            (tmp / "plain.txt").write_text("x")
            fd = os.open(tmp / "private.txt", os.O_WRONLY | os.O_CREAT, 0o600)  # like a mkstemp
            os.close(fd)
        atomic_write_text(tmp_path / "file.txt", "x")
    finally:
        os.umask(old)
    mode = lambda p: stat.S_IMODE(p.stat().st_mode)  # noqa: E731
    assert mode(tmp_path / "res") == dir_mode
    assert mode(tmp_path / "res" / "plain.txt") == file_mode
    assert mode(tmp_path / "res" / "private.txt") == file_mode
    assert mode(tmp_path / "file.txt") == file_mode


# -- fsync ---------------------------------------------------------------------------------

def record_fsyncs(monkeypatch) -> list[tuple[int, int]]:
    synced: list[tuple[int, int]] = []
    real = os.fsync

    def fsync(fd):
        st = os.fstat(fd)
        synced.append((st.st_dev, st.st_ino))
        return real(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    return synced


def ident(path: Path) -> tuple[int, int]:
    st = os.stat(path)
    return st.st_dev, st.st_ino


def test_every_file_the_directory_and_the_parent_are_fsynced(tmp_path, monkeypatch, swap):
    target = tmp_path / "res"
    write_tree(target, {"a.txt": "old"})
    synced = record_fsyncs(monkeypatch)
    write_tree(target, {"a.txt": "1", "sub/b.txt": "2"})
    for p in (target / "a.txt", target / "sub" / "b.txt", target / "sub", target):
        assert ident(p) in synced, p
    last_tree = max(i for i, s in enumerate(synced) if s == ident(target))
    assert ident(tmp_path) in synced[last_tree + 1:]  # the parent, after the swap


def test_atomic_write_fsyncs_the_file_and_its_folder(tmp_path, monkeypatch):
    synced = record_fsyncs(monkeypatch)
    atomic_write_bytes(tmp_path / "f.bin", b"data")
    assert synced == [ident(tmp_path / "f.bin"), ident(tmp_path)]
    assert (tmp_path / "f.bin").read_bytes() == b"data" and hidden(tmp_path) == []


# -- stale siblings ----------------------------------------------------------------------------

def test_temporaries_of_a_dead_process_are_removed_by_the_next_save(tmp_path, swap):
    target = tmp_path / "res"
    write_tree(target, {"a.txt": "old"})

    def dies_while_saving():
        with atomic_directory(target) as tmp:
            (tmp / "a.txt").write_text("half")
            os._exit(0)

    fork_and_die(dies_while_saving)
    fork_and_die(lambda: _io._new_locked_file(tmp_path, "f.txt"))
    assert len(hidden(tmp_path)) == 2  # one .res.tmp-, one .f.txt.tmp-
    write_tree(target, {"a.txt": "new"})
    atomic_write_text(tmp_path / "f.txt", "new")
    assert hidden(tmp_path) == [] and read_tree(target) == {"a.txt": "new"}


def test_a_reused_pid_never_blocks_a_save(tmp_path, swap):
    """Siblings named with this very (live) PID, as a reused PID would make them."""
    target = tmp_path / "res"
    write_tree(target, {"a.txt": "current"})
    pid = os.getpid()
    for name in (f".res.old-{pid}", f".res.old-{pid}-0badcafe", f".res.tmp-{pid}-deadbeef", f".res.tmp-{pid}"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "a.txt").write_text("stale")
    (tmp_path / f".f.txt.tmp-{pid}-deadbeef").write_text("stale")
    write_tree(target, {"a.txt": "new"})
    atomic_write_text(tmp_path / "f.txt", "new")
    assert hidden(tmp_path) == [] and read_tree(target) == {"a.txt": "new"}


def test_other_targets_siblings_are_left_alone(tmp_path):
    (tmp_path / ".res.old-1.tmp-2-abcdef12").mkdir()  # the temporary of a target "res.old-1"
    (tmp_path / ".results.tmp-1-abcdef12").mkdir()
    (tmp_path / ".res.tmpfile").mkdir()
    write_tree(tmp_path / "res", {"a": "1"})
    assert hidden(tmp_path) == [".res.old-1.tmp-2-abcdef12", ".res.tmpfile", ".results.tmp-1-abcdef12"]


def test_a_live_writers_temporary_is_kept(tmp_path):
    live = tmp_path / ".res.tmp-1-abcdef12"
    live.mkdir()
    fd = os.open(live, os.O_RDONLY)
    fcntl.flock(fd, fcntl.LOCK_EX)  # another open file: as good as another process
    try:
        write_tree(tmp_path / "res", {"a": "1"})
        assert hidden(tmp_path) == [live.name]
    finally:
        os.close(fd)
    write_tree(tmp_path / "res", {"a": "2"})
    assert hidden(tmp_path) == []


def test_recover_restores_a_missing_target_from_its_old_copy(tmp_path):
    target = tmp_path / "res"
    old = tmp_path / f".res.old-{os.getpid()}"  # as the previous implementation left it
    old.mkdir()
    (old / "a.txt").write_text("old")
    (tmp_path / ".res.tmp-5-abcdef12").mkdir()
    assert recover(target) is True
    assert read_tree(target) == {"a.txt": "old"} and hidden(tmp_path) == []
    assert recover(target) is False and recover(tmp_path / "nowhere" / "x") is False


def test_a_fallback_swap_killed_between_its_renames_is_recovered(tmp_path, monkeypatch):
    """The one window of the fallback: the old target moved aside, the new one not yet in."""
    monkeypatch.setattr(_io, "_renameat2", lambda: None)
    target = tmp_path / "res"
    write_tree(target, {"a.txt": "old"})
    real_rename = os.rename

    def killed_before_second_rename():
        def rename(src, dst):
            if Path(dst) == target:
                os._exit(0)
            real_rename(src, dst)

        os.rename = rename
        write_tree(target, {"a.txt": "new"})

    fork_and_die(killed_before_second_rename)
    assert not target.exists() and any(".res.old-" in n for n in hidden(tmp_path))
    write_tree(tmp_path / "other", {"x": "1"})  # a save elsewhere in the folder leaves them alone
    assert not target.exists() and any(".res.old-" in n for n in hidden(tmp_path))
    assert recover(target) is True and read_tree(target) == {"a.txt": "old"}
    fork_and_die(killed_before_second_rename)
    write_tree(target, {"a.txt": "newer"})  # the next save recovers first, then replaces
    assert read_tree(target) == {"a.txt": "newer"} and hidden(tmp_path) == []


def test_concurrent_savers_to_one_target(tmp_path, swap):
    """Two processes replacing the same target (and tidying each other's siblings) at once."""
    target = tmp_path / "res"
    write_tree(target, {"a.txt": "0", "b.txt": "0"})
    pids = []
    for w in (1, 2):
        pid = os.fork()
        if pid == 0:
            code = 1
            try:
                for i in range(25):
                    write_tree(target, {"a.txt": f"{w}.{i}", "b.txt": f"{w}.{i}"})
                code = 0
            finally:
                os._exit(code)
        pids.append(pid)
    assert [os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) for pid in pids] == [0, 0]
    tree = read_tree(target)
    assert tree["a.txt"] == tree["b.txt"] and tree["a.txt"].endswith(".24") and hidden(tmp_path) == []


# -- the kill test -----------------------------------------------------------------------------

N_FLOAT, N_INT = 400_000, 100_000  # 2.4 MB of tensors: a save takes a few ms

#: shared-memory slots a child writes (CLOCK_MONOTONIC seconds, 0 = not reached)
STARTED, WRITTEN, SWAPPING, SWAPPED, DONE, RENAMES, FAILED = range(7)


def versioned(v: int) -> Result:
    return Result({"a": torch.full((N_FLOAT,), float(v)), "b": torch.full((N_INT,), v, dtype=torch.int64)},
                  axes={"a": ("x",), "b": ("y",)}, meta={"version": v})


def version_of(target: Path) -> int | None:
    """The version of a complete saved result; None if missing, unreadable or mixed."""
    try:
        r = Result.load(target)
    except Exception:
        return None
    v = r.meta["version"]
    doc = json.loads((target / "result.json").read_text())
    complete = (doc["meta"]["version"] == v and r["a"].shape == (N_FLOAT,) and bool((r["a"] == v).all())
                and r["b"].shape == (N_INT,) and bool((r["b"] == v).all()))
    return v if complete else None


def child_save(result: Result, target: Path, marks) -> None:
    """In a forked child: save, stamping each phase into shared memory, then exit."""
    def stamped(fn, slot):
        def wrapper(*args, **kwargs):
            marks[slot] = time.monotonic()
            out = fn(*args, **kwargs)
            if slot == SWAPPING:
                marks[SWAPPED] = time.monotonic()
            return out
        return wrapper

    real_rename, real_exchange = os.rename, _io._exchange

    def counted_rename(src, dst):
        real_rename(src, dst)
        if marks[SWAPPING]:
            marks[RENAMES] += 1

    def counted_exchange(a, b):  # the exchange counts as a rename
        done = real_exchange(a, b)
        marks[RENAMES] += done
        return done

    try:
        marks[STARTED] = time.monotonic()
        _io._finish_tree = stamped(_io._finish_tree, WRITTEN)
        _io._swap_in = stamped(_io._swap_in, SWAPPING)
        os.rename, _io._exchange = counted_rename, counted_exchange
        result.save(target)
        marks[DONE] = time.monotonic()
    except BaseException:
        marks[FAILED] = 1
    finally:
        os._exit(0)


def phase(marks) -> str:
    if marks[DONE]:
        return "after the save"
    if marks[SWAPPED]:
        return "deleting the old tree"
    if marks[SWAPPING]:
        return f"swapping ({int(marks[RENAMES])} renames/exchanges done)"
    if marks[WRITTEN]:
        return "fsyncing"
    return "before or while writing"


def fork_save(result: Result, target: Path, marks, delay: float | None) -> float:
    """Fork a child saving ``result``; SIGKILL it ``delay`` seconds after the fork (None: let it
    finish). Returns the instant of the fork."""
    for i in range(len(marks)):
        marks[i] = 0.0
    t0 = time.monotonic()
    pid = os.fork()
    if pid == 0:
        child_save(result, target, marks)
    if delay is not None:
        time.sleep(max(0.0, t0 + delay - time.monotonic()))
        os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
    return t0


def kill_trials(folder: Path, n: int, seed: int) -> dict:
    """SIGKILL ``n`` saving children; after each, check the target and tidy with one save."""
    target = folder / "res"
    buf = mmap.mmap(-1, mmap.PAGESIZE)
    marks = (ctypes.c_double * 8).from_buffer(buf)
    versioned(0).save(target)

    # when, after the fork, does an unhindered child reach the swap and finish? Measured
    # before the trials and again every 10 trials: the timing drifts with the machine's load
    swap_at, done_at = [], []

    def calibrate(version: int) -> None:
        t0 = fork_save(versioned(version), target, marks, None)
        assert not marks[FAILED] and marks[DONE]
        swap_at.append(marks[SWAPPING] - t0)
        done_at.append(marks[DONE] - t0)

    for v in range(1, 9):
        calibrate(v)
    current = 8
    rng = random.Random(seed)
    stats = {"kills": 0, "lost": 0, "mixed": 0, "missing before recover()": 0, "old version": 0,
             "new version": 0, "leftovers after kill": 0, "leftovers after next save": 0, "child errors": 0,
             "phases": {}}
    fallback = _io._renameat2() is None
    for trial in range(n):
        if trial % 10 == 9:
            current += 1
            calibrate(current)
        new = current + 1
        t_swap, t_done = statistics.median(swap_at[-8:]), statistics.median(done_at[-8:])
        # 40 % uniform over the whole save, 60 % within 2 ms of the swap
        near = rng.random() < 0.6
        delay = max(0.0, t_swap + rng.uniform(-2e-3, 2e-3)) if near else rng.uniform(0, 1.2 * t_done)
        fork_save(versioned(new), target, marks, delay)
        stats["kills"] += 1
        stats["child errors"] += int(marks[FAILED])
        stats["phases"][phase(marks)] = stats["phases"].get(phase(marks), 0) + 1
        stats["leftovers after kill"] += bool(hidden(folder))
        if not target.exists():
            stats["missing before recover()"] += 1
            if fallback:
                recover(target)
        if not target.exists():
            stats["lost"] += 1
            versioned(current).save(target)
        else:
            v = version_of(target)
            if v not in (current, new):
                stats["mixed"] += 1
            else:
                stats["old version" if v == current else "new version"] += 1
        current = new + 1
        versioned(current).save(target)  # the next successful save tidies everything
        if version_of(target) != current:
            stats["lost"] += 1
        stats["leftovers after next save"] += bool(hidden(folder))
    stats["swap at (ms after fork)"] = round(1e3 * statistics.median(swap_at), 1)
    stats["save done at (ms after fork)"] = round(1e3 * statistics.median(done_at), 1)
    return stats


def assert_safe(stats: dict, label: str, record_property) -> None:
    print(f"\nkill test, {label}: {json.dumps(stats)}")
    record_property(f"kill_test_{label}", json.dumps(stats))
    assert stats["lost"] == 0 and stats["mixed"] == 0 and stats["leftovers after next save"] == 0
    assert stats["child errors"] == 0
    assert stats["old version"] > 0 and stats["new version"] > 0  # kills landed on both sides of the swap


def test_kill_while_saving_with_renameat2(tmp_path, record_property):
    if _io._renameat2() is None:
        pytest.skip("no renameat2 in this libc")
    start = time.monotonic()
    stats = kill_trials(tmp_path, 200, seed=1)
    stats["seconds"] = round(time.monotonic() - start, 1)
    assert stats["missing before recover()"] == 0  # the exchange has no window at all
    assert_safe(stats, "renameat2", record_property)


def test_kill_while_saving_with_the_fallback(tmp_path, monkeypatch, record_property):
    monkeypatch.setattr(_io, "_renameat2", lambda: None)
    start = time.monotonic()
    stats = kill_trials(tmp_path, 100, seed=2)
    stats["seconds"] = round(time.monotonic() - start, 1)
    assert_safe(stats, "fallback", record_property)


def test_a_save_nested_inside_another_saves_staging_folder_does_not_deadlock(tmp_path):
    """A run's outputs are staged in one atomic folder and its results saved inside it."""
    import threading

    from lensarith._io import atomic_directory, atomic_write_text
    from lensarith.core import Result

    done = threading.Event()

    def work():
        with atomic_directory(tmp_path / "run") as stage:
            Result({"x": torch.zeros(3)}, {"x": ("batch",)}).save(stage / "result")
            atomic_write_text(stage / "summary.json", "{}")
        done.set()

    t = threading.Thread(target=work, daemon=True)
    t.start()
    t.join(timeout=20)
    assert done.is_set(), "nested save deadlocked on the staging folder's lock"
    assert sorted(p.name for p in (tmp_path / "run").iterdir()) == ["result", "summary.json"]
    assert not [p for p in tmp_path.rglob(".*")]
