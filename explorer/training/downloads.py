"""Opt-in data set downloads: one data folder, archives fetched only when a person asks, checked, unpacked safely.

The data folder is ``$EXPLORER_DATA`` (default ``~/.cache/cnn-explorer/data``). An `Archive` is fetched with
urllib in chunks into a hidden temporary file beside its destination, with a ``progress(done_bytes,
total_bytes)`` callback; its md5 is checked; it is unpacked into a hidden temporary folder (no absolute paths, no
``..``, no links or devices) whose top-level entries are then renamed into place, so a download that broke off is
never taken for data. An archive placed in the data folder by hand (or the folders it unpacks to) works offline:
`unpacked` never touches the network. ``$EXPLORER_DATA_MIRROR`` (or ``mirror=``) is a base URL that serves the
same file names: a classroom's local copy, or a test's server. Every failure is one `DatasetError` sentence that
says what to do.
"""
from __future__ import annotations

import contextlib
import dataclasses
import errno
import hashlib
import http.client
import os
import pathlib
import posixpath
import shutil
import socket
import tarfile
import tempfile
import threading
import urllib.error
import urllib.parse
import urllib.request
import zlib
from typing import Callable, Iterable

from .errors import DatasetError

try:
    import fcntl
except ImportError:  # not on Windows: the in-process lock still holds
    fcntl = None

__all__ = ["Archive", "data_folder", "archive_url", "present", "unpacked", "fetch", "DEFAULT_DATA_FOLDER",
           "CHUNK"]

DEFAULT_DATA_FOLDER = "~/.cache/cnn-explorer/data"
CHUNK = 2**20
# An archive and what it unpacks to are about the same size, and both are on disk until the archive is deleted.
DISK_FACTOR = 2.2

Progress = Callable[[int, int], None]


@dataclasses.dataclass(frozen=True)
class Archive:
    """One file of a download: its address, md5 and size in bytes, the folder (under the data folder) it is
    unpacked into, and the paths (under the data folder) that are there once it is."""
    url: str
    md5: str
    size: int
    into: str
    gives: tuple[str, ...]

    @property
    def filename(self) -> str:
        return posixpath.basename(urllib.parse.urlsplit(self.url).path)

    @property
    def host(self) -> str:
        return urllib.parse.urlsplit(self.url).hostname or self.url

    @property
    def megabytes(self) -> float:
        return self.size / 2**20


def data_folder() -> pathlib.Path:
    """Where downloads and uploads are kept: ``$EXPLORER_DATA``, else ``~/.cache/cnn-explorer/data``."""
    return pathlib.Path(os.environ.get("EXPLORER_DATA") or DEFAULT_DATA_FOLDER).expanduser()


def archive_url(archive: Archive, mirror: str | None = None) -> str:
    """The address ``archive`` is fetched from: its own, or the same file name under ``mirror`` (or
    ``$EXPLORER_DATA_MIRROR``)."""
    mirror = mirror or os.environ.get("EXPLORER_DATA_MIRROR")
    return f"{mirror.rstrip('/')}/{archive.filename}" if mirror else archive.url


def _unpacked(archive: Archive, root: pathlib.Path) -> bool:
    return all((root / p).exists() for p in archive.gives)


def present(download) -> bool:
    """Whether every archive of ``download`` is unpacked in the data folder, or placed there by hand (to be
    checked and unpacked on first use). Looks at the disk only."""
    root = data_folder()
    return all(_unpacked(a, root) or (root / a.filename).is_file() for a in download.archives)


def unpacked(download, title: str = "This data set") -> pathlib.Path:
    """The data folder with every archive of ``download`` unpacked in it, unpacking an archive placed there by
    hand (md5-checked) if needed; never uses the network. A missing archive is a sentence."""
    root = data_folder()
    with _locked(root, download.folder):
        for archive in download.archives:
            if _unpacked(archive, root):
                continue
            placed = root / archive.filename
            if not placed.is_file():
                raise DatasetError(f"{title} is an opt-in download that is not in {root} yet; download it on the "
                                   f"Train page, or put {archive.filename} ({archive.url}) there yourself, or choose "
                                   "an offline data set.")
            _check_md5(_md5_of(placed, archive), archive,
                       f"The {archive.filename} in {root} does not match its checksum", "it is damaged or another "
                       "file: delete it and download it again")
            _unpack(placed, archive, root)
    return root


def fetch(download, progress: Progress | None = None, *, mirror: str | None = None,
          timeout: float = 30) -> pathlib.Path:
    """Download, check and unpack every archive of ``download`` that is not in the data folder yet (an archive
    placed there by hand is used instead of the network); returns the data folder. ``progress(done, total)`` is
    called after each chunk, in bytes over all the archives fetched."""
    root = data_folder()
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise _write_error(e, root) from None
    with _locked(root, download.folder):
        wanted = [a for a in download.archives
                  if not _unpacked(a, root) and not (root / a.filename).is_file()]
        _check_space(root, sum(a.size for a in wanted))
        sizes = {a.filename: a.size for a in wanted}
        done_before = 0
        for archive in wanted:
            def report(done: int, total: int, _before=done_before, _name=archive.filename) -> None:
                sizes[_name] = total or sizes[_name]
                if progress is not None:
                    progress(_before + done, sum(sizes.values()))

            path = _download(archive, archive_url(archive, mirror), root, report, timeout)
            try:
                _unpack(path, archive, root)
            finally:
                path.unlink(missing_ok=True)
            done_before += sizes[archive.filename]
    return unpacked(download)


# -- fetching ----------------------------------------------------------------------------------------------------
def _offer(archive: Archive, root: pathlib.Path) -> str:
    return (f"download {archive.filename} yourself ({archive.url}) and put it in {root}, or choose an offline "
            "data set")


def _download(archive: Archive, url: str, root: pathlib.Path, progress: Progress, timeout: float) -> pathlib.Path:
    """``url`` streamed into a hidden temporary file in ``root``, its md5 checked; the temporary file is removed
    on any failure."""
    host = urllib.parse.urlsplit(url).hostname or url
    tmp_path, done, total = None, 0, 0
    try:
        request = urllib.request.Request(url, headers={"User-Agent": "cnn-architecture-explorer"})
        with urllib.request.urlopen(request, timeout=timeout) as response:
            total = int(response.headers.get("Content-Length") or 0)
            md5 = hashlib.md5()
            with tempfile.NamedTemporaryFile(dir=root, prefix=f".{archive.filename}.", suffix=".partial",
                                             delete=False) as tmp:
                tmp_path = pathlib.Path(tmp.name)
                progress(0, total)
                while chunk := response.read(CHUNK):
                    tmp.write(chunk)
                    md5.update(chunk)
                    done += len(chunk)
                    progress(done, total)
        if total and done != total:
            raise DatasetError(f"The download of {archive.filename} from {host} broke off after {done / 2**20:.1f} "
                               f"of {total / 2**20:.1f} MB; try again, or {_offer(archive, root)}.")
        _check_md5(md5.hexdigest(), archive, f"{archive.filename} from {host} does not match its checksum",
                   f"nothing was kept: try again, or {_offer(archive, root)}")
        path, tmp_path = tmp_path, None
        return path
    except urllib.error.HTTPError as e:
        raise DatasetError(f"{host} refused the download of {archive.filename} (HTTP {e.code} {e.reason}); "
                           f"{_offer(archive, root)}.") from None
    except urllib.error.URLError as e:
        if isinstance(e.reason, OSError) and e.reason.errno in (errno.ENOSPC, errno.EDQUOT):
            raise _write_error(e.reason, root) from None
        raise DatasetError(f"Could not reach {host} (offline?); {_offer(archive, root)}.") from None
    except (socket.timeout, TimeoutError, ConnectionError, http.client.HTTPException) as e:
        raise DatasetError(f"The download of {archive.filename} from {host} broke off after {done / 2**20:.1f} MB "
                           f"({type(e).__name__}); try again, or {_offer(archive, root)}.") from None
    except OSError as e:  # writing: disk full, permissions
        raise _write_error(e, root) from None
    finally:
        if tmp_path is not None:
            tmp_path.unlink(missing_ok=True)


def _check_md5(got: str, archive: Archive, what: str, then: str) -> None:
    if got != archive.md5:
        raise DatasetError(f"{what} (md5 {got} instead of {archive.md5}); {then}.")


def _md5_of(path: pathlib.Path, archive: Archive) -> str:
    md5 = hashlib.md5()
    try:
        with open(path, "rb") as f:
            while chunk := f.read(CHUNK):
                md5.update(chunk)
    except OSError as e:
        raise DatasetError(f"The {archive.filename} in {path.parent} cannot be read ({e.strerror}); check its "
                           "permissions, or delete it and download it again.") from None
    return md5.hexdigest()


def _check_space(root: pathlib.Path, size: int) -> None:
    need = size * DISK_FACTOR
    try:
        free = shutil.disk_usage(root).free
    except OSError:
        return
    if free < need:
        raise DatasetError(f"The disk holding {root} has {free / 2**20:,.0f} MB free and the download needs about "
                           f"{need / 2**20:,.0f} MB; free some space, or set EXPLORER_DATA to a folder on a larger "
                           "disk.")


def _write_error(e: OSError, root: pathlib.Path) -> DatasetError:
    if e.errno in (errno.ENOSPC, errno.EDQUOT):
        return DatasetError(f"The disk holding {root} is full; free some space, or set EXPLORER_DATA to a folder on "
                            "a larger disk.")
    return DatasetError(f"Cannot write to {root} ({e.strerror or e}); set EXPLORER_DATA to a folder you can write "
                        "to.")


# -- unpacking ---------------------------------------------------------------------------------------------------
def _checked(tar: tarfile.TarFile, archive: Archive) -> Iterable[tarfile.TarInfo]:
    """The members of ``tar``, refusing any that could write outside the folder it is unpacked into."""
    for member in tar:
        name = member.name
        reason = None
        if name.startswith(("/", "\\")) or (len(name) > 1 and name[1] == ":"):
            reason = "has an absolute path"
        elif ".." in name.replace("\\", "/").split("/"):
            reason = "points outside the folder with '..'"
        elif not (member.isfile() or member.isdir()):
            reason = "is a link or a device, not a file"
        if reason:
            raise DatasetError(f"{archive.filename} is refused because the entry {name[:80]!r} {reason}; download "
                               f"it again from {archive.url}.")
        yield member


def _unpack(path: pathlib.Path, archive: Archive, root: pathlib.Path) -> None:
    """Unpack ``path`` into a hidden temporary folder, then rename each top-level entry into ``root /
    archive.into`` (replacing what was there), so the destination is either complete or absent."""
    into = root / archive.into
    staging = None
    try:
        into.mkdir(parents=True, exist_ok=True)
        staging = pathlib.Path(tempfile.mkdtemp(dir=into, prefix=".unpacking-"))
        with tarfile.open(path, "r:*") as tar:
            tar.extractall(staging, members=_checked(tar, archive), filter="data")
        for entry in staging.iterdir():
            target = into / entry.name
            if target.exists():  # a partial copy placed by hand: moved aside, then removed
                old = staging / f".old-{entry.name}"
                os.rename(target, old)
            os.rename(entry, target)
    except (tarfile.TarError, EOFError, zlib.error) as e:
        raise DatasetError(f"{path.name} is not a readable .tar.gz archive ({str(e)[:80]}); delete it and download "
                           "it again.") from None
    except OSError as e:
        raise _write_error(e, root) from None
    finally:
        if staging is not None:
            shutil.rmtree(staging, ignore_errors=True)
    if not _unpacked(archive, root):
        missing = next(p for p in archive.gives if not (root / p).exists())
        raise DatasetError(f"{path.name} unpacked without {missing}, so it is not the expected archive; delete it and "
                           f"download it again from {archive.url}.")


# -- one download at a time per data set -------------------------------------------------------------------------
_thread_locks: dict[str, threading.Lock] = {}
_thread_locks_guard = threading.Lock()


@contextlib.contextmanager
def _locked(root: pathlib.Path, folder: str):
    """Held while a data set is fetched or unpacked: by the threads of this process (sessions of one server),
    and through a lock file by other processes (runs), so two never unpack into the same place at once."""
    key = str(root / folder)
    with _thread_locks_guard:
        lock = _thread_locks.setdefault(key, threading.Lock())
    with lock:
        handle = None
        if fcntl is not None:
            try:
                root.mkdir(parents=True, exist_ok=True)
                handle = open(root / f".{folder}.lock", "a")
                fcntl.flock(handle, fcntl.LOCK_EX)
            except OSError:  # a read-only data folder, filled by hand: nothing will be written to it
                handle = None
        try:
            yield
        finally:
            if handle is not None:
                handle.close()
