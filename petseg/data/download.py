"""Download and unpack the official Oxford-IIIT Pet archives, resumably and verifiably.

Contracts, in short:

* :func:`download_dataset` turns an empty ``target`` into the official layout (``images/``,
  ``annotations/trimaps/``, ``annotations/list.txt`` ...) plus a marker file
  ``.petseg-complete.json``. A target with the marker is returned untouched, without any network use.
* Offline machines fail within about a second with :class:`OfflineError`, whose one-line message says
  how to get the data by hand (``PETSEG_DATA`` / ``--data``).
* Downloads stream into ``<name>.part`` and resume with an HTTP ``Range`` request; a finished file is
  md5-verified before it is renamed to its final name, so a file under its final name is always whole.
* Extraction happens in a hidden sibling folder that is renamed to ``target`` only once it is complete,
  so an interrupted run never leaves a ``target`` that :func:`is_complete_download` accepts.

Only the standard library (plus ``tqdm`` for progress bars) is used.
"""

from __future__ import annotations

import contextlib
import hashlib
import http.client
import json
import logging
import lzma
import os
import queue
import re
import shutil
import socket
import tarfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
import zlib
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath

__all__ = [
    "MARKER_NAME",
    "OFFICIAL_ARCHIVES",
    "OFFICIAL_BASE_URL",
    "OFFICIAL_PAGE",
    "ArchiveError",
    "ChecksumError",
    "DownloadError",
    "OfflineError",
    "check_reachable",
    "download_dataset",
    "download_file",
    "extract_archives",
    "is_complete_download",
    "md5sum",
]

log = logging.getLogger(__name__)

OFFICIAL_PAGE = "https://www.robots.ox.ac.uk/~vgg/data/pets/"
OFFICIAL_BASE_URL = "https://www.robots.ox.ac.uk/~vgg/data/pets/data/"
#: Archive file name -> md5 (the pins torchvision's ``OxfordIIITPet`` uses).
OFFICIAL_ARCHIVES: dict[str, str] = {
    "images.tar.gz": "5c4f3ee8e5d25df40f4fd59a7f44e54c",
    "annotations.tar.gz": "95a8c909bbe2e81eed6a22bccdf3f68f",
}
MARKER_NAME = ".petseg-complete.json"
#: Paths (relative to the dataset root) that must exist after extraction: (path, is_dir).
REQUIRED_LAYOUT: tuple[tuple[str, bool], ...] = (
    ("images", True),
    ("annotations/trimaps", True),
    ("annotations/list.txt", False),
)
MANUAL_HINT = (
    f"download images.tar.gz and annotations.tar.gz from {OFFICIAL_PAGE} , extract them into one folder "
    "and set PETSEG_DATA=that folder or pass --data"
)
USER_AGENT = "petseg-downloader/0.1 (Python urllib)"
_DEFAULT_PORTS = {"http": 80, "https": 443}


class DownloadError(RuntimeError):
    """Base class of every error raised by this module."""


class OfflineError(DownloadError):
    """The network (or the server) cannot be reached, or a transfer broke off; the message is one line."""


class ChecksumError(DownloadError):
    """A downloaded file does not have the expected md5 (the partial file has been deleted)."""


class ArchiveError(DownloadError):
    """An archive is corrupt, unsafe (absolute / ``..`` / escaping link members) or lacks the official layout."""


# --------------------------------------------------------------------------------------------- network


def _offline(what: str) -> OfflineError:
    return OfflineError(f"Cannot download the Oxford-IIIT Pet dataset: {what}. To work offline, {MANUAL_HINT}.")


def _proxy_for(scheme: str, host: str) -> tuple[str, int] | None:
    """The (host, port) of the proxy urllib would use for ``scheme://host``, or None for a direct connection."""
    proxy = urllib.request.getproxies().get(scheme)
    if not proxy or urllib.request.proxy_bypass(host):
        return None
    if "://" not in proxy:
        proxy = "http://" + proxy
    parts = urllib.parse.urlsplit(proxy)
    if not parts.hostname:
        return None
    return parts.hostname, parts.port or _DEFAULT_PORTS.get(parts.scheme, 80)


def _resolve(host: str, port: int, timeout: float) -> list[tuple]:
    """``getaddrinfo`` bounded by ``timeout`` (the resolver itself has no timeout, so it runs in a thread)."""
    results: queue.Queue = queue.Queue(maxsize=1)

    def worker() -> None:
        try:
            results.put(socket.getaddrinfo(host, port, type=socket.SOCK_STREAM))
        except OSError as exc:
            results.put(exc)

    threading.Thread(target=worker, name=f"petseg-resolve-{host}", daemon=True).start()
    try:
        answer = results.get(timeout=timeout)
    except queue.Empty:
        raise _offline(f"looking up {host} took longer than {timeout:g} s (no network?)") from None
    if isinstance(answer, OSError):
        raise _offline(f"cannot resolve host {host} ({answer.strerror or answer}; no network?)") from answer
    return answer


def check_reachable(url: str, timeout: float = 1.0) -> None:
    """Return if a TCP connection to ``url``'s host and port (or to the configured proxy) opens in ``timeout`` s.

    Otherwise raise :class:`OfflineError` with a one-line message saying what failed and how to get the data
    by hand. Name lookup and connection share the ``timeout`` budget; nothing is retried.
    """
    parts = urllib.parse.urlsplit(url)
    host = parts.hostname
    port = parts.port or _DEFAULT_PORTS.get(parts.scheme)
    if not host or port is None:
        raise ValueError(f"not an http(s) URL: {url!r}")
    proxy = _proxy_for(parts.scheme, host)
    target_host, target_port = proxy or (host, port)
    via = f" (via proxy {target_host}:{target_port})" if proxy else ""
    deadline = time.monotonic() + timeout
    errors: list[str] = []
    for family, type_, proto, _, sockaddr in _resolve(target_host, target_port, timeout):
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            break
        sock = socket.socket(family, type_, proto)
        try:
            sock.settimeout(remaining)
            sock.connect(sockaddr)
            return
        except TimeoutError:
            errors.append("timed out")
        except OSError as exc:
            errors.append(exc.strerror or str(exc))
        finally:
            sock.close()
    reason = errors[-1] if errors else "timed out"
    raise _offline(f"cannot connect to {target_host}:{target_port}{via} within {timeout:g} s ({reason})")


def md5sum(path: str | os.PathLike[str], chunk_size: int = 1 << 20) -> str:
    """The hex md5 of the file at ``path``, read in chunks (constant memory)."""
    digest = hashlib.md5()
    with open(path, "rb") as fh:
        while chunk := fh.read(chunk_size):
            digest.update(chunk)
    return digest.hexdigest()


def _content_range(value: str | None) -> tuple[int | None, int | None]:
    """Parse ``Content-Range: bytes A-B/T`` or ``bytes */T`` into (A, T); unknown parts are None."""
    match = re.fullmatch(r"\s*bytes\s+(?:(\d+)-\d+|\*)/(\d+|\*)\s*", value or "")
    if not match:
        return None, None
    start, total = match.groups()
    return (int(start) if start else None), (int(total) if total and total != "*" else None)


def _open(url: str, offset: int, timeout: float) -> tuple[http.client.HTTPResponse | None, int]:
    """GET ``url`` (from byte ``offset`` if > 0). Returns (response, status); response is None on 416."""
    headers = {"User-Agent": USER_AGENT, "Accept-Encoding": "identity"}
    if offset > 0:
        headers["Range"] = f"bytes={offset}-"
    request = urllib.request.Request(url, headers=headers)
    try:
        response = urllib.request.urlopen(request, timeout=timeout)
    except urllib.error.HTTPError as exc:
        exc.close()
        if exc.code == 416 and offset > 0:
            _, total = _content_range(exc.headers.get("Content-Range"))
            return None, 416 if total in (None, offset) else -416
        raise DownloadError(f"{url}: the server answered HTTP {exc.code} {exc.reason}") from exc
    except (urllib.error.URLError, http.client.HTTPException, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise _offline(f"cannot open {url} ({reason})") from exc
    return response, response.status


def download_file(
    url: str,
    dest: Path,
    md5: str | None = None,
    *,
    timeout: float = 30,
    chunk_size: int = 1 << 20,
    progress: bool = True,
) -> Path:
    """Download ``url`` to ``dest`` (resumable, md5-verified, atomic) and return ``dest``.

    * ``dest`` already present (with the right md5 if ``md5`` is given): returned at once, no network.
      Present with a wrong md5: deleted and downloaded again.
    * Data streams into ``dest.name + ".part"``; an existing part file is resumed with ``Range: bytes=N-``
      (206: append; 200: the server ignores ranges, start again; 416: the part is already whole).
    * A broken transfer raises :class:`OfflineError` and keeps the part file for the next call.
    * On completion the md5 is checked: a mismatch deletes the part file and raises :class:`ChecksumError`;
      a match renames the part file to ``dest`` (``os.replace``, atomic).
    """
    dest = Path(dest)
    md5 = md5.lower() if md5 else None
    if dest.is_file():
        if md5 is None or md5sum(dest) == md5:
            return dest
        log.warning("%s exists with a wrong md5; downloading it again", dest)
        dest.unlink()
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")

    for _attempt in range(2):  # a second attempt only after a restart from byte 0 was forced
        offset = part.stat().st_size if part.is_file() else 0
        response, status = _open(url, offset, timeout)
        if status == -416:  # the part file does not match the remote file's size: start afresh
            part.unlink()
            continue
        if response is None:  # 416 with a matching size: the part file is already complete
            break
        with response:
            if status == 206:
                start, _ = _content_range(response.headers.get("Content-Range"))
                if start != offset:  # the server sent another range than asked for
                    part.unlink()
                    continue
            else:
                offset = 0
            length = response.headers.get("Content-Length")
            total = offset + int(length) if length and length.isdigit() else None
            _stream(response, part, offset, total, url, dest.name, chunk_size, progress)
        break
    else:  # pragma: no cover - needs a server that misbehaves twice in a row
        raise DownloadError(f"{url}: the server keeps answering with the wrong byte range")

    if md5 is not None:
        got = md5sum(part)
        if got != md5:
            part.unlink(missing_ok=True)
            raise ChecksumError(
                f"{dest.name}: checksum mismatch (expected md5 {md5}, got {got}); "
                f"the download was deleted, run again to download it afresh"
            )
    os.replace(part, dest)
    return dest


def _stream(
    response: http.client.HTTPResponse,
    part: Path,
    offset: int,
    total: int | None,
    url: str,
    name: str,
    chunk_size: int,
    progress: bool,
) -> None:
    """Write ``response``'s body to ``part`` (appending after ``offset`` bytes, else from scratch)."""
    from tqdm import tqdm

    written = offset
    with (
        open(part, "ab" if offset else "wb") as fh,
        tqdm(total=total, initial=offset, unit="B", unit_scale=True, unit_divisor=1024,
             desc=name, disable=not progress, leave=False) as bar,
    ):
        while True:
            try:
                chunk = response.read(chunk_size)
            except (http.client.HTTPException, OSError) as exc:
                fh.flush()
                raise _interrupted(name, url, written, total, part, exc) from exc
            if not chunk:
                break
            fh.write(chunk)
            written += len(chunk)
            bar.update(len(chunk))
        fh.flush()
        os.fsync(fh.fileno())
    if total is not None and written < total:  # http.client reports a cut connection as a short read
        raise _interrupted(name, url, written, total, part, "connection closed early")


def _interrupted(name: str, url: str, written: int, total: int | None, part: Path, why: object) -> OfflineError:
    of_total = f" of {total}" if total is not None else ""
    return _offline(
        f"the download of {name} from {url} broke off after {written}{of_total} bytes ({why}); "
        f"run again to resume from {part}"
    )


# ---------------------------------------------------------------------------------------------- archives


def is_complete_download(target: str | os.PathLike[str]) -> bool:
    """True iff ``target`` holds a finished extraction: a readable marker file and the official layout."""
    target = Path(target)
    try:
        marker = json.loads((target / MARKER_NAME).read_text())
    except (OSError, ValueError):
        return False
    if not isinstance(marker, dict) or "archives" not in marker:
        return False
    return not _missing_layout(target)


def _missing_layout(root: Path) -> list[str]:
    return [rel for rel, is_dir in REQUIRED_LAYOUT if not ((root / rel).is_dir() if is_dir else (root / rel).is_file())]


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    except (OSError, OverflowError):
        return False
    return True


def _remove_stale_partials(target: Path) -> None:
    """Delete ``.<name>.partial-<pid>`` siblings left by killed runs (those whose process is gone, or ours)."""
    prefix = f".{target.name}.partial-"
    if not target.parent.is_dir():
        return
    for path in target.parent.iterdir():
        if not path.name.startswith(prefix):
            continue
        pid_text = path.name[len(prefix):]
        pid = int(pid_text) if pid_text.isdigit() else -1
        if pid == os.getpid() or pid <= 0 or not _pid_alive(pid):
            log.info("removing stale partial extraction %s", path)
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path, ignore_errors=True)
            else:
                path.unlink(missing_ok=True)


def _check_member(member: tarfile.TarInfo, archive: Path) -> None:
    """Reject members that would land outside the destination or are not plain files/folders/safe links."""
    name = member.name
    parts = PurePosixPath(name.replace("\\", "/")).parts
    if name.startswith(("/", "\\")) or re.match(r"^[A-Za-z]:", name) or ".." in parts:
        raise ArchiveError(f"{archive.name}: refusing unsafe member path {name!r}")
    if member.issym() or member.islnk():
        link = PurePosixPath(member.linkname.replace("\\", "/"))
        base = PurePosixPath(*parts[:-1]) if member.issym() else PurePosixPath()
        depth = 0
        for piece in (base / link).parts if not link.is_absolute() else ("..",):
            depth += -1 if piece == ".." else (0 if piece == "." else 1)
            if depth < 0:
                raise ArchiveError(f"{archive.name}: refusing link {name!r} -> {member.linkname!r} (leaves the folder)")
    elif not (member.isfile() or member.isdir()):
        raise ArchiveError(f"{archive.name}: refusing special member {name!r} (device, fifo ...)")


def _safe_members(tar: tarfile.TarFile, archive: Path) -> Iterator[tarfile.TarInfo]:
    for member in tar:
        _check_member(member, archive)
        yield member


def _extract_one(archive: Path, dest: Path) -> None:
    """Extract one archive into ``dest``; damaged or unsafe archives raise :class:`ArchiveError`."""
    try:
        with tarfile.open(archive, "r:*") as tar:
            if hasattr(tarfile, "data_filter"):  # Python >= 3.11.4 / 3.10.12: the stdlib's own safety net
                tar.extractall(dest, members=_safe_members(tar, archive), filter="data")
            else:  # pragma: no cover - old Python; _check_member already did the essential checks
                tar.extractall(dest, members=_safe_members(tar, archive))
    except ArchiveError:
        raise
    except tarfile.TarError as exc:
        unsafe = hasattr(tarfile, "FilterError") and isinstance(exc, tarfile.FilterError)
        what = "contains an unsafe member" if unsafe else "is corrupt or not a tar archive"
        detail = "unreadable as .tar/.tar.gz/.tar.bz2/.tar.xz" if "could not be opened" in str(exc) else exc
        raise ArchiveError(f"{archive.name} {what} ({_one_line(detail)}); delete it and run again") from exc
    except (EOFError, zlib.error, lzma.LZMAError, OSError) as exc:
        if isinstance(exc, OSError) and exc.errno is not None:
            raise  # a real I/O problem (disk full, permissions ...): report it as such
        # truncated stream, bad CRC (gzip.BadGzipFile), bad deflate/bz2/xz data
        raise ArchiveError(f"{archive.name} is corrupt ({_one_line(exc)}); delete it and run again") from exc


def _one_line(detail: object) -> str:
    return " ".join(str(detail).split())


def extract_archives(
    archives: list[Path],
    target: Path,
    *,
    checksums: Mapping[str, str] | None = None,
) -> Path:
    """Extract ``archives`` into ``target`` atomically and mark it complete; return ``target``.

    * ``target`` already complete (marker present): returned untouched.
    * ``target`` existing and non-empty without a marker: :class:`FileExistsError` (it is not ours to replace).
    * Extraction goes to ``target.parent / f".{target.name}.partial-<pid>"``; stale partial folders of dead
      processes are removed first. Members with absolute paths, ``..`` or escaping links are refused.
    * The result must have the official layout (``images/``, ``annotations/trimaps/``,
      ``annotations/list.txt``), else :class:`ArchiveError`. Then ``.petseg-complete.json`` (archive names,
      md5s, time) is written inside, and the folder is renamed to ``target``.
    * Any failure (or interruption) deletes the partial folder; ``target`` is never left half-written.

    ``checksums`` (archive name -> md5) spares recomputing md5s the caller has just verified.
    """
    target = Path(target)
    if is_complete_download(target):
        return target
    _ensure_replaceable(target)
    archives = [Path(a) for a in archives]
    for archive in archives:
        if not archive.is_file():
            raise FileNotFoundError(f"archive not found: {archive}")
    target.parent.mkdir(parents=True, exist_ok=True)
    _remove_stale_partials(target)
    partial = target.parent / f".{target.name}.partial-{os.getpid()}"
    partial.mkdir()
    done = False
    try:
        for archive in archives:
            log.info("extracting %s", archive)
            _extract_one(archive, partial)
        missing = _missing_layout(partial)
        if missing:
            names = ", ".join(a.name for a in archives)
            raise ArchiveError(
                f"the archives ({names}) lack the official Oxford-IIIT Pet layout (missing: {', '.join(missing)}); "
                f"expected images/ and annotations/ (trimaps/, list.txt) at the top level"
            )
        known = dict(checksums or {})
        marker = {
            "dataset": "Oxford-IIIT Pet",
            "source": OFFICIAL_PAGE,
            "archives": [
                {"name": a.name, "md5": known.get(a.name) or md5sum(a), "bytes": a.stat().st_size}
                for a in archives
            ],
            "completed_at": datetime.now(UTC).isoformat(timespec="seconds"),
        }
        with open(partial / MARKER_NAME, "w") as fh:
            json.dump(marker, fh, indent=2)
            fh.write("\n")
            fh.flush()
            os.fsync(fh.fileno())
        with contextlib.suppress(OSError):
            target.rmdir()  # an empty folder left for us (or by an earlier _ensure_replaceable check)
        try:
            os.rename(partial, target)
        except OSError:
            if is_complete_download(target):  # another process finished first: keep its result
                return target
            raise
        done = True
    finally:
        if not done:
            shutil.rmtree(partial, ignore_errors=True)
    return target


def _ensure_replaceable(target: Path) -> None:
    """Raise :class:`FileExistsError` if ``target`` exists and is neither an empty folder nor complete."""
    if target.is_dir() and not target.is_symlink():
        if next(target.iterdir(), None) is None:
            return
    elif not target.exists() and not target.is_symlink():
        return
    raise FileExistsError(
        f"{target} exists but is not a complete petseg download (no {MARKER_NAME}); if it already holds the "
        f"dataset set PETSEG_DATA={target} (or pass --data), otherwise remove it or choose another folder"
    )


# ------------------------------------------------------------------------------------------- the whole job


def download_dataset(
    target: Path,
    *,
    base_url: str = OFFICIAL_BASE_URL,
    archives: Mapping[str, str] = OFFICIAL_ARCHIVES,
    cache_dir: Path | None = None,
    keep_archives: bool = True,
    progress: bool = True,
    connect_timeout: float = 1.0,
) -> Path:
    """Make ``target`` a complete Oxford-IIIT Pet folder (official layout + marker) and return it.

    A complete ``target`` is returned at once without network. Otherwise, unless every archive is already
    in ``cache_dir`` (default ``target.parent / "downloads"``), :func:`check_reachable` fails fast with
    :class:`OfflineError` on an offline machine; then each archive is downloaded (resumable, md5-verified),
    extracted with :func:`extract_archives`, and deleted afterwards if ``keep_archives`` is False.
    """
    target = Path(target).expanduser()
    if is_complete_download(target):
        return target
    _ensure_replaceable(target)  # fail before any download, not after 800 MB
    cache = Path(cache_dir).expanduser() if cache_dir is not None else target.parent / "downloads"
    base = base_url if base_url.endswith("/") else base_url + "/"
    if not all((cache / name).is_file() for name in archives):
        check_reachable(base, timeout=connect_timeout)
    paths = [
        download_file(urllib.parse.urljoin(base, name), cache / name, md5, progress=progress)
        for name, md5 in archives.items()
    ]
    extract_archives(paths, target, checksums=archives)
    if not keep_archives:
        for path in paths:
            path.unlink(missing_ok=True)
        with contextlib.suppress(OSError):
            cache.rmdir()  # only if nothing else is in it
    return target
