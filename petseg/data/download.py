"""Download and unpack the official Oxford-IIIT Pet archives, resumably and verifiably.

Contracts, in short:

* :func:`download_dataset` turns an empty ``target`` into the official layout (``images/``,
  ``annotations/trimaps/``, ``annotations/list.txt`` ...) plus a marker file
  ``.petseg-complete.json``. A target with the marker is returned untouched, without any network use.
* Offline machines fail within about a second, and downloads resume and are md5-verified: the network
  half lives in :mod:`petseg.data.fetch` (whose errors this module re-exports).
* Extraction happens in a hidden sibling folder that is renamed to ``target`` only once it is complete,
  so an interrupted run never leaves a ``target`` that :func:`is_complete_download` accepts.

Only the standard library (plus ``tqdm`` for progress bars) is used.
"""

from __future__ import annotations

import contextlib
import json
import logging
import lzma
import os
import re
import shutil
import tarfile
import urllib.parse
import zlib
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath

from petseg.data.fetch import (
    OFFICIAL_PAGE,
    ChecksumError,
    DownloadError,
    OfflineError,
    check_reachable,
    download_file,
    md5sum,
)

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


class ArchiveError(DownloadError):
    """An archive is corrupt, unsafe (absolute / ``..`` / escaping link members) or lacks the official layout."""


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
