"""Crash-safe writes: a file or a whole directory appears complete or not at all.

A process killed at any instant (SIGKILL, power loss once the disk honours ``fsync``)
leaves the target either as it was or as it was meant to become, never missing and never
a mix of the two, and the next write to the same target removes what the killed one left.

Names. Next to a target ``name`` a writer only ever creates

* ``.{name}.tmp-{pid}-{random}``: its temporary file or directory. The writer holds an
  exclusive ``flock`` on it for its whole life; the kernel drops that lock when the process
  dies, so any ``.tmp-`` sibling whose lock another process can take (non-blocking) is
  garbage. Staleness is never decided by PID, so a reused PID is harmless.
* ``.{name}.old-{pid}-{random}`` (fallback swap only): the previous target, moved aside by
  one atomic rename, hence always complete. It is garbage if ``name`` exists and the copy
  to restore if ``name`` is missing.

Saves to targets in one folder swap one at a time under an exclusive ``flock`` on that
folder (held for the few renames only), so an ``.old-`` sibling seen under that lock
belongs to no live swap.

Order of operations of ``atomic_directory(path)``:

1. Tidy (``recover``): under the folder lock, if ``path`` is missing restore the newest
   ``.old-`` sibling to ``path``; rename any other ``.old-`` sibling to a fresh, unlocked
   ``.tmp-`` name. Then, without the folder lock, delete every ``.tmp-`` sibling whose lock
   can be taken.
2. ``mkdir`` ``.{name}.tmp-{pid}-{random}`` (mode 0o777 less the umask), open it, take its
   lock and check the locked inode is still the one at that name (a concurrent tidy may
   have taken it first; then try another name).
3. The caller writes into it (the ``with`` block). If the block raises, the temporary
   directory is deleted and ``path`` is untouched.
4. ``fsync`` every file and every folder in the temporary directory, deepest first.
5. Under the folder lock: tidy the ``.old-`` siblings again (step 1), then

   * ``path`` missing (first save): ``rename(tmp, path)``;
   * Linux ``renameat2(tmp, path, RENAME_EXCHANGE)``: one atomic step; the old tree now
     sits at the ``.tmp-`` name;
   * otherwise (no ``renameat2``, or the filesystem answers EINVAL/ENOSYS/ENOTSUP), the
     fallback: ``rename(path, old)``, ``fsync(folder)``, ``rename(tmp, path)``,
     ``fsync(folder)``, ``rename(old, tmp)``, so the old tree sits at the ``.tmp-`` name
     and an ``.old-`` name only ever holds a complete copy;

   then ``fsync(folder)`` and release the folder lock.
6. Delete the tree at the ``.tmp-`` name (the old target), then drop the lock.

A kill before step 5 leaves ``path`` untouched and an unlocked ``.tmp-`` sibling (removed by
the next save). The exchange and every rename are atomic: a kill between
``rename(path, old)`` and ``rename(tmp, path)`` leaves ``path`` missing and the old copy at
``.old-``, which the next save or ``recover(path)`` restores; a kill after
``rename(tmp, path)`` leaves the new target in place and garbage that the next save removes.

``atomic_write_bytes(path, data)`` deletes the stale ``.tmp-`` siblings of ``path``, writes
``.{name}.tmp-{pid}-{random}`` (locked the same way), fsyncs it, ``os.replace``-s it onto
``path`` (one atomic step), then drops its lock and fsyncs the folder.

Readers: with ``renameat2`` a target is always there. On the fallback a reader may find it
missing for the instant between the two renames, or for good if that saver was killed
there; ``recover(path)`` waits for a running swap (it takes the folder lock) and restores
the old copy of a killed one.

Permissions follow the umask as with an ordinary ``open``/``mkdir``. Where ``flock`` is
unavailable (not POSIX, or a filesystem refusing it) nothing is deleted on suspicion:
leftovers may then remain, the targets are still safe.
"""

from __future__ import annotations

import errno
import functools
import os
import re
import shutil
import stat
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

try:
    import fcntl
except ImportError:  # pragma: no cover - not POSIX
    fcntl = None  # type: ignore[assignment]

__all__ = ["atomic_write_bytes", "atomic_write_text", "atomic_directory", "recover"]

_AT_FDCWD = -100
_RENAME_EXCHANGE = 2
#: errnos meaning "this kernel or filesystem cannot do that": fall back, do not fail
_UNSUPPORTED = frozenset({errno.EINVAL, errno.ENOSYS, errno.ENOTSUP, errno.EOPNOTSUPP})
#: errnos of ``flock`` meaning "no locks here" (NFS emulating flock on a read-only fd, ...)
_NO_LOCKS = _UNSUPPORTED | {errno.EBADF, errno.ENOLCK}
_O_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_O_CLOEXEC = getattr(os, "O_CLOEXEC", 0)
_LOCKING = fcntl is not None and os.name == "posix"


# -- names -------------------------------------------------------------------------------

def _tmp_name(name: str) -> str:
    return f".{name}.tmp-{os.getpid()}-{os.urandom(4).hex()}"


def _old_name(name: str) -> str:
    return f".{name}.old-{os.getpid()}-{os.urandom(4).hex()}"


def _sibling_pattern(name: str, kind: str) -> re.Pattern[str]:
    """Names this module gives ``kind`` ("tmp" or "old") siblings of target ``name``.

    ``.{name}.old-{pid}`` (no random part) is what earlier versions left behind.
    """
    return re.compile(rf"\.{re.escape(name)}\.{kind}-[0-9]+(-[0-9a-f]{{8}})?")


def _siblings(path: Path, kind: str) -> list[Path]:
    """The ``kind`` siblings of target ``path`` (none if its folder is gone)."""
    pattern = _sibling_pattern(path.name, kind)
    try:
        with os.scandir(path.parent) as entries:
            return [path.parent / e.name for e in entries if pattern.fullmatch(e.name)]
    except OSError:  # gone, or a folder we may write but not list: nothing to tidy
        return []


# -- locks -------------------------------------------------------------------------------

def _open_entry(path: Path) -> int | None:
    """Open a sibling read-only to lock it; None if it is gone, a symlink or unreadable."""
    try:
        return os.open(path, os.O_RDONLY | os.O_NONBLOCK | _O_NOFOLLOW | _O_CLOEXEC)
    except OSError:  # ENOENT, ELOOP (a symlink: never ours), EACCES (not ours either)
        return None


def _lock(fd: int) -> bool | None:
    """Take an exclusive, non-blocking ``flock``.

    Returns:
        True when taken, False when another open file holds it, None when this platform
        or filesystem has no such locks.
    """
    if not _LOCKING:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    except OSError as exc:
        if exc.errno in _NO_LOCKS:
            return None
        raise
    return True


def _still_at(fd: int, path: Path) -> bool:
    """Whether ``path`` still names the file or folder open as ``fd``."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return False
    own = os.fstat(fd)
    return (st.st_dev, st.st_ino) == (own.st_dev, own.st_ino)


def _hold(fd: int, path: Path) -> bool:
    """Lock a file or folder this process just created at ``path``.

    Returns False if a concurrent tidy took it first (it is then that tidy's to delete).
    """
    taken = _lock(fd)
    if taken is None:
        return True  # no locks here: keep it unlocked, tidies then leave it alone
    return taken and _still_at(fd, path)


#: temporary directories this process is filling right now: private until swapped in, so a
#: save nested inside one (a result written into a run's staging folder) needs no folder lock
#: on it, and must not take one: the directory's own liveness lock would block it.
_OWN_TEMPS: set[str] = set()


@contextmanager
def _folder_lock(parent: Path) -> Iterator[int | None]:
    """Hold a blocking exclusive ``flock`` on folder ``parent``; yields its fd (or None)."""
    fd = None
    if _LOCKING and str(Path(parent).resolve()) not in _OWN_TEMPS:
        with suppress(PermissionError):
            fd = os.open(parent, os.O_RDONLY | _O_CLOEXEC)
    try:
        if fd is not None:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)
            except OSError as exc:
                if exc.errno not in _NO_LOCKS:
                    raise
        yield fd
    finally:
        if fd is not None:
            os.close(fd)


# -- durability --------------------------------------------------------------------------

def _fsync_fd(fd: int) -> None:
    try:
        os.fsync(fd)
    except OSError as exc:
        if exc.errno not in _UNSUPPORTED:  # some filesystems cannot fsync a folder
            raise


def _fsync_path(path: Path | str) -> None:
    """``fsync`` a file or folder by name (folders only where they can be opened)."""
    try:
        fd = os.open(path, os.O_RDONLY | _O_CLOEXEC)
    except (IsADirectoryError, PermissionError):
        return  # Windows cannot open a folder; nothing to flush there
    try:
        _fsync_fd(fd)
    finally:
        os.close(fd)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def _finish_tree(root: Path, mask: int) -> None:
    """Give files the usual permissions and flush every file and folder under ``root``.

    Args:
        root: the temporary directory.
        mask: the umask in force when ``root`` was made.
    """
    for folder, _dirs, files in os.walk(root, topdown=False):
        for file in files:
            child = os.path.join(folder, file)
            st = os.lstat(child)
            if not stat.S_ISREG(st.st_mode):
                continue
            if not st.st_mode & 0o044:  # e.g. a library's mkstemp (0600): usual permissions
                os.chmod(child, 0o666 & ~mask)
            _fsync_path(child)
        _fsync_path(folder)


def _remove(path: Path) -> None:
    """Delete a file or a folder tree; what is already gone is ignored."""
    try:
        is_dir = stat.S_ISDIR(os.lstat(path).st_mode)
    except FileNotFoundError:
        return
    if is_dir:
        shutil.rmtree(path, ignore_errors=True)
    else:
        with suppress(FileNotFoundError):
            os.unlink(path)


# -- renameat2 ---------------------------------------------------------------------------

@functools.cache
def _renameat2() -> Callable[..., int] | None:
    """libc's ``renameat2``, or None (not Linux, or a libc older than glibc 2.28)."""
    if not sys.platform.startswith("linux"):
        return None
    import ctypes

    try:
        fn = ctypes.CDLL(None, use_errno=True).renameat2
    except (OSError, AttributeError):
        return None
    fn.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    fn.restype = ctypes.c_int
    return fn


def _exchange(a: Path, b: Path) -> bool:
    """Swap the names ``a`` and ``b`` in one atomic step (``RENAME_EXCHANGE``).

    Returns:
        True once swapped; False, having changed nothing, where the kernel, libc or
        filesystem cannot.
    """
    fn = _renameat2()
    if fn is None:
        return False
    if fn(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) == 0:
        return True
    import ctypes

    err = ctypes.get_errno()
    if err in _UNSUPPORTED:
        return False
    raise OSError(err, f"renameat2(RENAME_EXCHANGE) failed: {os.strerror(err)}", str(a), None, str(b))


# -- tidying -----------------------------------------------------------------------------

def _remove_stale(path: Path) -> None:
    """Delete every ``.tmp-`` sibling of ``path`` whose writer is gone (its lock can be taken).

    Best effort: a sibling that cannot be opened, locked or deleted is left alone.
    """
    if not _LOCKING:
        return
    for entry in _siblings(path, "tmp"):
        fd = _open_entry(entry)
        if fd is None:
            continue
        try:
            if _lock(fd) and _still_at(fd, entry):
                _remove(entry)
        except OSError:
            pass
        finally:
            os.close(fd)


def _newest(paths: list[Path]) -> Path:
    return max(paths, key=lambda p: os.lstat(p).st_mtime_ns)


def _recover_locked(path: Path, parent_fd: int | None) -> bool:
    """Resolve ``.{name}.old-*`` siblings; the caller holds the folder lock.

    If ``path`` is missing the newest old copy becomes ``path`` again; every other old copy
    is renamed to an unlocked ``.tmp-`` name for ``_remove_stale`` to delete.

    Returns:
        Whether ``path`` was restored.
    """
    olds = _siblings(path, "old")
    if not olds:
        return False
    restored = False
    if not os.path.lexists(path):
        keep = _newest(olds)
        os.rename(keep, path)
        olds.remove(keep)
        restored = True
    for old in olds:
        with suppress(OSError):  # e.g. another user's, in a sticky folder: leave it
            os.rename(old, path.parent / _tmp_name(path.name))
    if parent_fd is not None:
        _fsync_fd(parent_fd)
    return restored


def recover(path: str | os.PathLike[str]) -> bool:
    """Bring ``path`` back after a killed save and delete what that save left behind.

    Saves call this themselves before writing. Call it before reading a target that a
    killed process may have been replacing, on a system where the swap is not atomic
    (no ``renameat2``): the target can then be missing, its old copy waiting beside it.

    Args:
        path: the target directory (or file) of ``atomic_directory``.

    Returns:
        True if ``path`` was missing and its previous version was restored.
    """
    path = Path(path)
    if not path.parent.is_dir():
        return False
    with _folder_lock(path.parent) as parent_fd:
        restored = _recover_locked(path, parent_fd)
    _remove_stale(path)
    return restored


# -- files -------------------------------------------------------------------------------

def _new_locked_file(parent: Path, name: str) -> tuple[Path, int]:
    """Create and lock ``.{name}.tmp-{pid}-{random}`` (mode 0o666 less the umask)."""
    for _ in range(100):
        tmp = parent / _tmp_name(name)
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | _O_CLOEXEC | getattr(os, "O_BINARY", 0),
                         0o666)
        except FileExistsError:
            continue
        if _hold(fd, tmp):
            return tmp, fd
        os.close(fd)
    raise OSError(errno.EEXIST, "could not create a temporary file", str(parent / name))


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> Path:
    """Write a file via a temporary sibling, ``fsync`` and one rename.

    Args:
        path: the file; its folder is created if needed.
        data: the whole content.

    Returns:
        The file written.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    _remove_stale(path)
    tmp, fd = _new_locked_file(path.parent, path.name)
    try:
        try:
            _write_all(fd, data)
            os.fsync(fd)
        finally:
            if not _LOCKING:  # Windows renames and deletes closed files only
                os.close(fd)
        os.replace(tmp, path)
    except BaseException:
        with suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    finally:
        if _LOCKING:  # the lock is dropped once the temporary name is gone
            os.close(fd)
    _fsync_path(path.parent)
    return path


def atomic_write_text(path: str | os.PathLike[str], text: str) -> Path:
    """``atomic_write_bytes`` of ``text`` encoded as UTF-8."""
    return atomic_write_bytes(path, text.encode("utf-8"))


# -- directories -------------------------------------------------------------------------

def _new_locked_dir(parent: Path, name: str) -> tuple[Path, int | None, int]:
    """Create and lock ``.{name}.tmp-{pid}-{random}``.

    Returns:
        The folder, its locked fd (None without locks) and the umask it was made under.
    """
    for _ in range(100):
        tmp = parent / _tmp_name(name)
        try:
            os.mkdir(tmp, 0o777)
        except FileExistsError:
            continue
        try:
            mask = 0o777 & ~stat.S_IMODE(os.stat(tmp).st_mode)
            fd = os.open(tmp, os.O_RDONLY | _O_NOFOLLOW | _O_CLOEXEC) if _LOCKING else None
        except FileNotFoundError:
            continue  # a concurrent tidy deleted it already
        except PermissionError:  # a umask without owner read: work unlocked
            fd = None
        if fd is None or _hold(fd, tmp):
            return tmp, fd, mask
        os.close(fd)
    raise OSError(errno.EEXIST, "could not create a temporary directory", str(parent / name))


def _swap_fallback(tmp: Path, path: Path, parent_fd: int | None) -> None:
    """Two renames, each atomic; ``.old-`` holds the complete old copy in between."""
    old = path.parent / _old_name(path.name)
    os.rename(path, old)
    if parent_fd is not None:
        _fsync_fd(parent_fd)
    try:
        os.rename(tmp, path)
    except BaseException:
        os.rename(old, path)
        raise
    if parent_fd is not None:
        _fsync_fd(parent_fd)
    with suppress(OSError):  # the save is complete; a leftover .old- is tidied next time
        os.rename(old, tmp)


def _swap_in(tmp: Path, path: Path) -> None:
    """Put the complete ``tmp`` at ``path``; afterwards ``tmp`` holds the old tree, if any."""
    with _folder_lock(path.parent) as parent_fd:
        _recover_locked(path, parent_fd)
        if not os.path.lexists(path):
            os.rename(tmp, path)
        elif not _exchange(tmp, path):
            _swap_fallback(tmp, path, parent_fd)
        if parent_fd is not None:
            _fsync_fd(parent_fd)


def check_replaceable(path: str | os.PathLike[str], own: Callable[[str], bool], what: str = "the result", *,
                      error: type[Exception] = ValueError) -> None:
    """Raise ``error`` (callers pass ``LensarithError``) unless saving to ``path`` destroys nothing
    lensarith did not write.

    A save replaces ``path`` as a whole. That is refused when ``path`` is a file (or anything
    but a folder), or a folder holding an entry that ``own(name)`` does not recognise as one a
    previous save of ``what`` wrote (hidden ``.name.tmp-``/``.old-`` leftovers aside).
    """
    path = Path(path)
    if not os.path.lexists(path):
        return
    if path.is_symlink() or not path.is_dir():
        raise error(f"{str(path)!r} exists and is not a folder: saving {what} there would delete it; pick a "
                             "new folder name")
    foreign = sorted(p.name for p in path.iterdir() if not own(p.name))
    if foreign:
        shown = ", ".join(foreign[:3]) + (f" and {len(foreign) - 3} more" if len(foreign) > 3 else "")
        raise error(f"{str(path)!r} holds files lensarith did not write ({shown}): saving {what} there would "
                             "replace the folder and delete them; pick a new folder name or an empty folder")


@contextmanager
def atomic_directory(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary sibling directory; on success it replaces ``path`` as a whole.

    Every file and folder written into it is flushed to disk before the swap. If the block
    raises, the temporary directory is removed and ``path`` is untouched. Leftovers of
    killed saves to the same ``path`` are restored or removed first (see ``recover``).

    Args:
        path: the target directory; its folder is created if needed.

    Yields:
        The temporary directory to fill.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    recover(path)
    tmp, fd, mask = _new_locked_dir(path.parent, path.name)
    own = str(Path(tmp).resolve())
    _OWN_TEMPS.add(own)
    try:
        try:
            yield tmp
            _OWN_TEMPS.discard(own)
            _finish_tree(tmp, mask)
            _swap_in(tmp, path)
        finally:
            _remove(tmp)  # the failed attempt, or the old tree after the swap
    finally:
        _OWN_TEMPS.discard(own)
        if fd is not None:
            os.close(fd)
