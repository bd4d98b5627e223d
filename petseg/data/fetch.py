"""Fetch files over HTTP(S): fail fast offline, resume with ``Range``, verify an md5 before a file is named.

* :func:`check_reachable` answers within about a second whether a server can be reached (honouring the
  proxy settings urllib would use); offline machines get :class:`OfflineError`, whose one-line message
  says how to get the data by hand (``PETSEG_DATA`` / ``--data``).
* :func:`download_file` streams into ``<name>.part`` and resumes it with an HTTP ``Range`` request; a
  finished file is md5-verified before it is renamed to its final name, so a file under its final name
  is always whole.

:mod:`petseg.data.download` uses these for the official archives, :mod:`petseg.models.sam2` for checkpoints.
Only the standard library (plus ``tqdm`` for progress bars) is used.
"""

from __future__ import annotations

import hashlib
import http.client
import logging
import os
import queue
import re
import socket
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

__all__ = ["MANUAL_HINT", "OFFICIAL_PAGE", "ChecksumError", "DownloadError", "OfflineError", "check_reachable",
           "download_file", "md5sum"]

log = logging.getLogger(__name__)

OFFICIAL_PAGE = "https://www.robots.ox.ac.uk/~vgg/data/pets/"
MANUAL_HINT = (
    f"download images.tar.gz and annotations.tar.gz from {OFFICIAL_PAGE} , extract them into one folder "
    "and set PETSEG_DATA=that folder or pass --data"
)
USER_AGENT = "petseg-downloader/0.1 (Python urllib)"
_DEFAULT_PORTS = {"http": 80, "https": 443}


class DownloadError(RuntimeError):
    """Base class of every error raised by this module and :mod:`petseg.data.download`."""


class OfflineError(DownloadError):
    """The network (or the server) cannot be reached, or a transfer broke off; the message is one line."""


class ChecksumError(DownloadError):
    """A downloaded file does not have the expected md5 (the partial file has been deleted)."""




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
