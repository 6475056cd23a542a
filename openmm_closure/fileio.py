"""Files the package writes and reads back: atomic writes, content hashes, directory locks.

Torch-free and OpenMM-free; the dataset writer, the model directory and the export
directory all use it.

- :func:`atomic_write_bytes` writes through a uniquely named temporary file in the same
  folder and renames it, so a reader never sees half a file; the result gets the mode an
  ordinary new file would get (``0o666`` less the umask, usually ``0o644``).
- :func:`sha256_file` is the content hash stored in model and export metadata and
  checked on load (:func:`check_hashes`).
- :class:`DirectoryLock` is an advisory ``fcntl.flock`` lock on a directory held for a
  whole run; a second holder gets :class:`DirectoryLockedError` naming the first one's pid.
- :func:`unique_temp_name` gives per-process temporary names (pid + random suffix).

Example:
    >>> with DirectoryLock("runs/ds"):                       # doctest: +SKIP
    ...     atomic_write_bytes("runs/ds/manifest.json", b"{}")
"""

from __future__ import annotations

import hashlib
import os
import secrets
import tempfile
from pathlib import Path
from typing import Mapping

__all__ = [
    "LOCK_FILE",
    "DirectoryLock",
    "DirectoryLockedError",
    "atomic_write_bytes",
    "check_hashes",
    "file_mode",
    "sha256_file",
    "unique_temp_name",
]

LOCK_FILE = ".openmm-closure.lock"


def file_mode() -> int:
    """The mode of an ordinary new file under the current umask (``0o666 & ~umask``)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return 0o666 & ~mask


def unique_temp_name(final: str | os.PathLike, suffix: str = ".tmp") -> Path:
    """A temporary path beside ``final``, unique to this process: ``NAME.<pid>-<random><suffix>``."""
    final = Path(final)
    return final.with_name(f"{final.name}.{os.getpid()}-{secrets.token_hex(4)}{suffix}")


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically (temporary file in the same folder + os.replace).

    The file gets mode ``0o666 & ~umask`` like any new file (``mkstemp`` alone gives 0600).
    """
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f"{path.name}.{os.getpid()}-", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, file_mode())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def sha256_file(path: str | os.PathLike) -> str:
    """Hex SHA-256 of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def check_hashes(directory: str | os.PathLike, hashes: Mapping[str, str], what: str) -> None:
    """Check each ``name -> sha256`` of ``hashes`` against the file ``directory/name``.

    Raises:
        FileNotFoundError: a listed file is missing.
        ValueError: a file's content differs from its recorded hash (edited, truncated or
            copied from another ``what``).
    """
    d = Path(directory)
    for name, want in sorted(hashes.items()):
        p = d / name
        if not p.is_file():
            raise FileNotFoundError(f"{what} {d}: {name} is missing")
        if sha256_file(p) != want:
            raise ValueError(
                f"{what} {d}: {name} does not match the sha256 recorded in its metadata "
                f"(edited, truncated or from another {what}); write it again"
            )


class DirectoryLockedError(RuntimeError):
    """Another process holds the lock on a directory."""


class DirectoryLock:
    """An advisory lock (``fcntl.flock``) on a directory, held until :meth:`release`.

    The lock file ``LOCK_FILE`` inside the directory records the holder's pid. The
    kernel drops the lock when the holder exits, however it exits, so a killed run
    never leaves a directory locked.

    Arguments:
        directory: the directory (created if missing).
        what: how the error message names the directory's user (e.g. ``"simulate"``).

    Raises:
        DirectoryLockedError: another process holds the lock (message names its pid).
    """

    def __init__(self, directory: str | os.PathLike, what: str = "another run") -> None:
        self.directory = Path(directory)
        self.what = what
        self._fd: int | None = None
        self._created: list[Path] = []

    def acquire(self) -> "DirectoryLock":
        import fcntl

        d = self.directory
        if d.is_symlink() and not d.is_dir():
            target = os.readlink(d)
            what = "a dangling symbolic link" if not d.exists() else "a symbolic link to a file"
            raise FileExistsError(f"--out {d} is {what} ({target}), not a directory; choose another --out")
        if d.exists() and not d.is_dir():
            raise FileExistsError(f"--out {d} is a file, not a directory; choose another --out")
        made_dir = not d.exists()
        self.directory.mkdir(parents=True, exist_ok=True)
        path = self.directory / LOCK_FILE
        made_lock = not path.exists()
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            try:
                holder = os.pread(fd, 64, 0).decode(errors="replace").strip() or "?"
            finally:
                os.close(fd)
            raise DirectoryLockedError(
                f"{self.directory} is in use by {self.what} (pid {holder}); wait for it to "
                f"finish or choose another --out"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._fd = fd
        self._created = ([path] if made_lock else []) + ([self.directory] if made_dir else [])
        return self

    def release(self) -> None:
        """Release the lock (idempotent). A run that wrote nothing leaves nothing: the lock
        file and the directory are removed when this lock created them and the directory
        holds nothing else."""
        if self._fd is not None:
            import fcntl

            path = self.directory / LOCK_FILE
            if path in self._created:
                try:
                    if [p.name for p in self.directory.iterdir()] == [LOCK_FILE]:
                        path.unlink()  # still locked by us: nobody else can hold it now
                        if self.directory in self._created:
                            self.directory.rmdir()
                except OSError:
                    pass
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> "DirectoryLock":
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()
