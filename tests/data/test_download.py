"""Tests of petseg.data.fetch (HTTP: offline, resume, md5) and petseg.data.download (archives) against a local HTTP server (no internet needed)."""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import socket
import tarfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from petseg.data import download as dl
from petseg.data.download import (
    MARKER_NAME,
    ArchiveError,
    ChecksumError,
    DownloadError,
    OfflineError,
    check_reachable,
    download_dataset,
    download_file,
    extract_archives,
    is_complete_download,
    md5sum,
)

PROXY_VARS = ["http_proxy", "https_proxy", "all_proxy", "no_proxy",
              "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY"]


@pytest.fixture(autouse=True)
def _no_proxies(monkeypatch: pytest.MonkeyPatch) -> None:
    """Talk to 127.0.0.1 directly even where the CI machine has a proxy configured."""
    for var in PROXY_VARS:
        monkeypatch.delenv(var, raising=False)


# ----------------------------------------------------------------------------------------- the test server


@dataclass
class ServerState:
    files: dict[str, bytes] = field(default_factory=dict)
    support_range: bool = True
    cut_after: int | None = None  # cut the *next* response's body after this many bytes
    requests: list[tuple[str, str | None]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    base_url: str = ""

    def ranges(self) -> list[str | None]:
        return [rng for _, rng in self.requests]


class RangeHandler(BaseHTTPRequestHandler):
    """Serves ``state.files`` under ``/data/<name>``, with optional Range support and connection cuts."""

    server: ThreadingHTTPServer

    def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
        state: ServerState = self.server.state  # type: ignore[attr-defined]
        with state.lock:
            state.requests.append((self.path, self.headers.get("Range")))
            cut, state.cut_after = state.cut_after, None
        data = state.files.get(self.path.removeprefix("/data/"))
        if data is None:
            self.send_error(404)
            return
        status, body, extra = 200, data, {}
        rng = self.headers.get("Range")
        if state.support_range and rng and rng.startswith("bytes=") and rng.endswith("-"):
            start = int(rng[len("bytes="):-1])
            if start >= len(data):
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{len(data)}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            status, body = 206, data[start:]
            extra = {"Content-Range": f"bytes {start}-{len(data) - 1}/{len(data)}"}
        self.send_response(status)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(len(body)))
        for key, value in extra.items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(body if cut is None else body[:cut])
        self.close_connection = True

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002
        pass


@pytest.fixture
def server() -> Iterator[ServerState]:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), RangeHandler)
    httpd.daemon_threads = True
    state = ServerState(base_url=f"http://127.0.0.1:{httpd.server_address[1]}/data/")
    httpd.state = state  # type: ignore[attr-defined]
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=5)


def closed_port_url() -> str:
    """An http URL on 127.0.0.1 where nothing listens."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}/data/"


# ------------------------------------------------------------------------------------- tiny official data


def _png(mask: bool) -> bytes:
    rng = np.random.default_rng(0)
    array = rng.integers(1, 4, (8, 8), dtype=np.uint8) if mask else rng.integers(0, 255, (8, 8, 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format="PNG")
    return buf.getvalue()


def _jpeg() -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.full((8, 8, 3), 128, dtype=np.uint8)).save(buf, format="JPEG")
    return buf.getvalue()


def make_tar(members: dict[str, bytes | None], *, gz: bool = True) -> bytes:
    """A tarball of ``members`` (name -> content; None means a directory), names written verbatim."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz" if gz else "w") as tar:
        for name, content in members.items():
            info = tarfile.TarInfo(name)
            info.mtime = 1_600_000_000
            if content is None:
                info.type, info.mode = tarfile.DIRTYPE, 0o755
                tar.addfile(info)
            else:
                info.size, info.mode = len(content), 0o644
                tar.addfile(info, io.BytesIO(content))
    return buf.getvalue()


NAMES = ["Abyssinian_1", "american_bulldog_10"]


@pytest.fixture(scope="module")
def official() -> dict[str, bytes]:
    """Small images.tar.gz / annotations.tar.gz with the official top-level layout."""
    images = make_tar({"images": None, **{f"images/{n}.jpg": _jpeg() for n in NAMES}})
    listing = b"#Image CLASS-ID SPECIES BREED ID\nAbyssinian_1 1 1 1\namerican_bulldog_10 2 2 1\n"
    annotations = make_tar({
        "annotations": None,
        "annotations/trimaps": None,
        **{f"annotations/trimaps/{n}.png": _png(mask=True) for n in NAMES},
        "annotations/xmls": None,
        "annotations/xmls/Abyssinian_1.xml": b"<annotation/>",
        "annotations/list.txt": listing,
        "annotations/trainval.txt": b"Abyssinian_1 1 1 1\n",
        "annotations/test.txt": b"american_bulldog_10 2 2 1\n",
    })
    return {"images.tar.gz": images, "annotations.tar.gz": annotations}


def md5(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


def checksums(files: dict[str, bytes]) -> dict[str, str]:
    return {name: md5(data) for name, data in files.items()}


def partials(target: Path) -> list[Path]:
    return sorted(target.parent.glob(f".{target.name}.partial-*"))


# ------------------------------------------------------------------------------------------------- tests


def test_official_constants() -> None:
    assert dl.OFFICIAL_BASE_URL == "https://www.robots.ox.ac.uk/~vgg/data/pets/data/"
    assert dl.OFFICIAL_ARCHIVES == {
        "images.tar.gz": "5c4f3ee8e5d25df40f4fd59a7f44e54c",
        "annotations.tar.gz": "95a8c909bbe2e81eed6a22bccdf3f68f",
    }
    assert issubclass(OfflineError, RuntimeError) and issubclass(ChecksumError, RuntimeError)


def test_md5sum_streams(tmp_path: Path) -> None:
    path = tmp_path / "f.bin"
    data = os.urandom(3000)
    path.write_bytes(data)
    assert md5sum(path) == md5sum(str(path)) == md5(data)
    assert dl.md5sum(path, chunk_size=7) == md5(data)


def test_full_download_and_extract(server: ServerState, official: dict[str, bytes], tmp_path: Path) -> None:
    server.files.update(official)
    target = tmp_path / "oxford-pets"
    result = download_dataset(target, base_url=server.base_url, archives=checksums(official), progress=False)

    assert result == target and is_complete_download(target)
    assert sorted(p.name for p in (target / "images").iterdir()) == [f"{n}.jpg" for n in NAMES]
    assert sorted(p.name for p in (target / "annotations" / "trimaps").iterdir()) == [f"{n}.png" for n in NAMES]
    for name in ("list.txt", "trainval.txt", "test.txt", "xmls/Abyssinian_1.xml"):
        assert (target / "annotations" / name).is_file()
    marker = json.loads((target / MARKER_NAME).read_text())
    assert {a["name"]: a["md5"] for a in marker["archives"]} == checksums(official)
    assert "completed_at" in marker
    downloads = tmp_path / "downloads"
    assert sorted(p.name for p in downloads.iterdir()) == sorted(official)  # kept, no .part left over
    assert partials(target) == []
    assert [path for path, _ in server.requests] == ["/data/images.tar.gz", "/data/annotations.tar.gz"]


def test_complete_target_makes_no_network_request(
    server: ServerState, official: dict[str, bytes], tmp_path: Path
) -> None:
    server.files.update(official)
    target = tmp_path / "pets"
    download_dataset(target, base_url=server.base_url, archives=checksums(official), progress=False)
    before = (target / MARKER_NAME).read_text()
    server.requests.clear()

    assert download_dataset(target, base_url=server.base_url, archives=checksums(official)) == target
    assert download_dataset(target, base_url="http://petseg-offline.invalid/") == target  # not even a lookup
    assert server.requests == []
    assert (target / MARKER_NAME).read_text() == before


def test_cached_archives_extract_without_network(official: dict[str, bytes], tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    cache.mkdir()
    for name, data in official.items():
        (cache / name).write_bytes(data)
    target = tmp_path / "pets"
    download_dataset(target, base_url=closed_port_url(), archives=checksums(official), cache_dir=cache,
                     keep_archives=False, progress=False)
    assert is_complete_download(target)
    assert not cache.exists()  # archives deleted and the emptied cache folder removed


def test_broken_download_resumes_with_range(server: ServerState, official: dict[str, bytes], tmp_path: Path) -> None:
    data = official["images.tar.gz"]
    server.files["images.tar.gz"] = data
    dest = tmp_path / "dl" / "images.tar.gz"
    part = dest.with_name("images.tar.gz.part")
    cut = len(data) // 3
    server.cut_after = cut

    with pytest.raises(OfflineError, match="resume") as info:
        download_file(server.base_url + "images.tar.gz", dest, md5(data), progress=False)
    assert "\n" not in str(info.value)
    assert not dest.exists() and part.stat().st_size == cut

    assert download_file(server.base_url + "images.tar.gz", dest, md5(data), progress=True) == dest
    assert server.ranges() == [None, f"bytes={cut}-"]
    assert md5sum(dest) == md5(data) and not part.exists()


def test_interrupted_dataset_download_then_resumed(
    server: ServerState, official: dict[str, bytes], tmp_path: Path
) -> None:
    server.files.update(official)
    server.cut_after = 10
    target = tmp_path / "pets"
    with pytest.raises(OfflineError):
        download_dataset(target, base_url=server.base_url, archives=checksums(official), progress=False)
    assert not target.exists() and not is_complete_download(target)
    assert (tmp_path / "downloads" / "images.tar.gz.part").stat().st_size == 10

    download_dataset(target, base_url=server.base_url, archives=checksums(official), progress=False)
    assert is_complete_download(target)
    assert server.requests[1] == ("/data/images.tar.gz", "bytes=10-")


def test_server_without_range_support_restarts(
    server: ServerState, official: dict[str, bytes], tmp_path: Path
) -> None:
    data = official["annotations.tar.gz"]
    server.files["annotations.tar.gz"] = data
    server.support_range = False
    server.cut_after = 50
    dest = tmp_path / "annotations.tar.gz"
    with pytest.raises(OfflineError):
        download_file(server.base_url + "annotations.tar.gz", dest, md5(data), progress=False)

    download_file(server.base_url + "annotations.tar.gz", dest, md5(data), progress=False)
    assert server.ranges() == [None, "bytes=50-"]  # asked for a range, got a plain 200
    assert dest.read_bytes() == data


def test_416_means_part_already_complete(server: ServerState, tmp_path: Path) -> None:
    data = os.urandom(5000)
    server.files["blob"] = data
    dest = tmp_path / "blob"
    dest.with_name("blob.part").write_bytes(data)
    download_file(server.base_url + "blob", dest, md5(data), progress=False)
    assert server.ranges() == [f"bytes={len(data)}-"]
    assert dest.read_bytes() == data


def test_oversized_part_restarts_from_zero(server: ServerState, tmp_path: Path) -> None:
    data = os.urandom(5000)
    server.files["blob"] = data
    dest = tmp_path / "blob"
    dest.with_name("blob.part").write_bytes(data + b"junk")
    download_file(server.base_url + "blob", dest, md5(data), progress=False)
    assert server.ranges() == [f"bytes={len(data) + 4}-", None]
    assert dest.read_bytes() == data


def test_checksum_mismatch(server: ServerState, tmp_path: Path) -> None:
    data = os.urandom(2000)
    server.files["blob"] = data
    dest = tmp_path / "blob"
    wrong = "0" * 32
    with pytest.raises(ChecksumError) as info:
        download_file(server.base_url + "blob", dest, wrong, progress=False)
    message = str(info.value)
    assert "blob" in message and wrong in message and md5(data) in message
    assert not dest.exists() and not dest.with_name("blob.part").exists()


def test_checksum_mismatch_leaves_no_dataset(server: ServerState, official: dict[str, bytes], tmp_path: Path) -> None:
    server.files.update(official)
    target = tmp_path / "pets"
    bad = {**checksums(official), "annotations.tar.gz": "f" * 32}
    with pytest.raises(ChecksumError, match="annotations.tar.gz"):
        download_dataset(target, base_url=server.base_url, archives=bad, progress=False)
    assert not target.exists() and not is_complete_download(target) and partials(target) == []
    assert not (tmp_path / "downloads" / "annotations.tar.gz").exists()
    assert not (tmp_path / "downloads" / "annotations.tar.gz.part").exists()


def test_existing_dest_with_right_md5_needs_no_network(tmp_path: Path) -> None:
    dest = tmp_path / "blob"
    dest.write_bytes(b"hello")
    assert download_file(closed_port_url() + "blob", dest, md5(b"hello"), progress=False) == dest


def test_existing_dest_with_wrong_md5_is_downloaded_again(server: ServerState, tmp_path: Path) -> None:
    server.files["blob"] = b"right"
    dest = tmp_path / "blob"
    dest.write_bytes(b"wrong")
    download_file(server.base_url + "blob", dest, md5(b"right"), progress=False)
    assert dest.read_bytes() == b"right"


def test_http_error_is_a_download_error(server: ServerState, tmp_path: Path) -> None:
    with pytest.raises(DownloadError, match="404") as info:
        download_file(server.base_url + "missing.tar.gz", tmp_path / "missing.tar.gz", progress=False)
    assert not isinstance(info.value, OfflineError)


@pytest.mark.parametrize("kind", ["garbage", "truncated"])
def test_corrupt_archive_leaves_nothing_complete(
    server: ServerState, official: dict[str, bytes], tmp_path: Path, kind: str
) -> None:
    good = official["images.tar.gz"]
    server.files.update(official)
    server.files["images.tar.gz"] = b"this is not a tarball " * 50 if kind == "garbage" else good[: len(good) // 2]
    target = tmp_path / "pets"
    with pytest.raises(ArchiveError, match="images.tar.gz"):
        download_dataset(target, base_url=server.base_url, archives=checksums(server.files), progress=False)
    assert not target.exists() and not is_complete_download(target) and partials(target) == []


def test_archive_without_annotations_leaves_nothing_complete(
    server: ServerState, official: dict[str, bytes], tmp_path: Path
) -> None:
    server.files.update(official)
    server.files["annotations.tar.gz"] = make_tar({"README.txt": b"wrong archive"})
    target = tmp_path / "pets"
    with pytest.raises(ArchiveError, match="annotations/trimaps"):
        download_dataset(target, base_url=server.base_url, archives=checksums(server.files), progress=False)
    assert not target.exists() and not is_complete_download(target) and partials(target) == []


@pytest.mark.parametrize("member", ["../evil.txt", "images/../../evil.txt", "/ABS/evil.txt", "symlink"])
def test_unsafe_tar_members_are_rejected(tmp_path: Path, member: str) -> None:
    members: dict[str, bytes | None] = {"images": None, "images/a.jpg": _jpeg()}
    archive = tmp_path / "evil.tar"
    if member == "symlink":
        buf = io.BytesIO(make_tar(members, gz=False))
        with tarfile.open(fileobj=buf, mode="a") as tar:
            info = tarfile.TarInfo("images/link")
            info.type, info.linkname = tarfile.SYMTYPE, "../../evil.txt"
            tar.addfile(info)
        archive.write_bytes(buf.getvalue())
    else:
        name = member.replace("/ABS", str(tmp_path))
        archive.write_bytes(make_tar({**members, name: b"pwned"}, gz=False))
    target = tmp_path / "out" / "pets"
    with pytest.raises(ArchiveError, match="refusing"):
        extract_archives([archive], target)
    assert not (tmp_path / "evil.txt").exists() and not (tmp_path / "out" / "evil.txt").exists()
    assert not target.exists() and partials(target) == []


def test_extract_is_atomic_when_interrupted(
    official: dict[str, bytes], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    paths = []
    for name, data in official.items():
        (tmp_path / name).write_bytes(data)
        paths.append(tmp_path / name)
    real = dl._extract_one
    calls = []

    def flaky(archive: Path, dest: Path) -> None:
        calls.append(archive)
        if len(calls) == 2:
            raise KeyboardInterrupt  # stands in for Ctrl-C halfway through
        real(archive, dest)

    monkeypatch.setattr(dl, "_extract_one", flaky)
    target = tmp_path / "pets"
    with pytest.raises(KeyboardInterrupt):
        extract_archives(paths, target)
    assert not target.exists() and partials(target) == []


def test_stale_partials_removed_live_ones_kept(official: dict[str, bytes], tmp_path: Path) -> None:
    paths = []
    for name, data in official.items():
        (tmp_path / name).write_bytes(data)
        paths.append(tmp_path / name)
    target = tmp_path / "pets"
    dead = tmp_path / ".pets.partial-999999999"  # beyond any pid_max: a killed run's leftovers
    (dead / "images").mkdir(parents=True)
    live = tmp_path / ".pets.partial-1"  # pid 1 always runs: someone else's extraction in progress
    live.mkdir()
    extract_archives(paths, target)
    assert is_complete_download(target)
    assert not dead.exists() and live.exists()
    shutil.rmtree(live)


def test_complete_target_returned_untouched_by_extract(tmp_path: Path) -> None:
    target = tmp_path / "pets"
    (target / "images").mkdir(parents=True)
    (target / "annotations" / "trimaps").mkdir(parents=True)
    (target / "annotations" / "list.txt").write_text("")
    assert not is_complete_download(target)  # layout without marker
    (target / MARKER_NAME).write_text(json.dumps({"archives": []}))
    assert is_complete_download(target)
    assert extract_archives([tmp_path / "does-not-exist.tar.gz"], target) == target
    (target / MARKER_NAME).write_text("{not json")
    assert not is_complete_download(target)


def test_marker_without_layout_is_not_complete(tmp_path: Path) -> None:
    (tmp_path / MARKER_NAME).write_text(json.dumps({"archives": []}))
    assert not is_complete_download(tmp_path)
    assert not is_complete_download(tmp_path / "absent")


def test_unmarked_nonempty_target_refused_before_network(server: ServerState, tmp_path: Path) -> None:
    target = tmp_path / "pets"
    target.mkdir()
    (target / "mine.txt").write_text("user data")
    with pytest.raises(FileExistsError, match="PETSEG_DATA"):
        download_dataset(target, base_url=server.base_url, progress=False)
    assert server.requests == [] and (target / "mine.txt").exists()


def test_empty_target_folder_is_filled(server: ServerState, official: dict[str, bytes], tmp_path: Path) -> None:
    server.files.update(official)
    target = tmp_path / "pets"
    target.mkdir()
    download_dataset(target, base_url=server.base_url, archives=checksums(official), progress=False)
    assert is_complete_download(target)


def _assert_fast_offline(url: str, **kwargs: float) -> OfflineError:
    start = time.monotonic()
    with pytest.raises(OfflineError) as info:
        check_reachable(url, **kwargs)
    assert time.monotonic() - start < 2.0
    message = str(info.value)
    assert "PETSEG_DATA" in message and "--data" in message and "\n" not in message
    assert "https://www.robots.ox.ac.uk/~vgg/data/pets/" in message
    return info.value


def test_check_reachable_unresolvable_host() -> None:
    error = _assert_fast_offline("http://petseg-offline.invalid/")
    assert "petseg-offline.invalid" in str(error)


def test_check_reachable_closed_port() -> None:
    _assert_fast_offline(closed_port_url())


def test_check_reachable_slow_resolver_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    def hanging_lookup(*args: object, **kwargs: object) -> list:
        time.sleep(3)
        raise socket.gaierror("too late")

    monkeypatch.setattr(socket, "getaddrinfo", hanging_lookup)
    _assert_fast_offline("https://www.robots.ox.ac.uk/~vgg/data/pets/data/", timeout=0.3)


def test_check_reachable_ok_and_offline_dataset_download(server: ServerState, tmp_path: Path) -> None:
    check_reachable(server.base_url)  # listening: no error
    with pytest.raises(OfflineError, match="PETSEG_DATA"):
        download_dataset(tmp_path / "pets", base_url="http://petseg-offline.invalid/", progress=False)
    assert not (tmp_path / "pets").exists()
    with pytest.raises(ValueError):
        check_reachable("ftp-without-host")
