"""Download against a loopback HTTP server that supports Range, and can truncate or ignore Range."""

from __future__ import annotations

import gzip
import hashlib
import io
import random
import re
import tarfile
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from meddiff.data.archive import extract_archive
from meddiff.data.download import download, file_digest
from meddiff.errors import DownloadError


@dataclass
class FakeServer:
    base_url: str = ""
    files: dict[str, bytes] = field(default_factory=dict)
    mode: str = "normal"  # normal | truncate (every response) | truncate_once | ignore_range
    truncations_left: int = 1
    requests: list[tuple[str, str | None]] = field(default_factory=list)

    def url(self, name: str) -> str:
        return f"{self.base_url}/{name}"


def _handler(state: FakeServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args) -> None:  # keep pytest output clean
            pass

        def do_GET(self) -> None:
            range_header = self.headers.get("Range")
            state.requests.append((self.path, range_header))
            body = state.files.get(self.path.lstrip("/"))
            if body is None:
                self.send_error(404)
                return
            start = 0
            if range_header and state.mode != "ignore_range":
                start = int(re.fullmatch(r"bytes=(\d+)-", range_header).group(1))
                if start >= len(body):
                    self.send_response(416)
                    self.send_header("Content-Range", f"bytes */{len(body)}")
                    self.end_headers()
                    return
                self.send_response(206)
                self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
            else:
                self.send_response(200)
            payload = body[start:]
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            truncate = state.mode == "truncate" or (state.mode == "truncate_once" and state.truncations_left > 0)
            if truncate:
                state.truncations_left -= 1
                payload = payload[: len(payload) // 2]  # then the connection closes: a short transfer
            self.wfile.write(payload)

    return Handler


@pytest.fixture
def server():
    state = FakeServer()
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _handler(state))
    state.base_url = f"http://127.0.0.1:{httpd.server_address[1]}"
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield state
    httpd.shutdown()
    httpd.server_close()


def make_tar_gz() -> bytes:
    """A small dataset archive: a text file and a nested .nii.gz (which must stay compressed)."""
    members = {
        "Task99_Demo/README.txt": b"demo dataset\n" * 200,
        # incompressible, so the archive is big enough (~40 kB) to be cut and resumed mid-way
        "Task99_Demo/imagesTr/demo_001.nii.gz": gzip.compress(random.Random(0).randbytes(40_000)),
    }
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tf:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    return buf.getvalue()


@pytest.fixture
def archive_bytes() -> bytes:
    return make_tar_gz()


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def test_download_verifies_checksum_and_extracts(server, archive_bytes, tmp_path):
    server.files["demo.tar.gz"] = archive_bytes
    dest = tmp_path / "downloads" / "demo.tar.gz"

    out = download(server.url("demo.tar.gz"), dest, sha256=sha256(archive_bytes), progress=False)

    assert out == dest and dest.read_bytes() == archive_bytes
    assert not dest.with_suffix(".gz.part").exists()
    assert file_digest(dest) == sha256(archive_bytes)
    extract_archive(dest, tmp_path / "data")
    nested = tmp_path / "data" / "Task99_Demo" / "imagesTr" / "demo_001.nii.gz"
    assert nested.read_bytes()[:2] == b"\x1f\x8b", "a .nii.gz inside the archive must not be decompressed"
    assert (tmp_path / "data" / "Task99_Demo" / "README.txt").read_bytes().startswith(b"demo dataset")


def test_partial_file_is_resumed_with_a_range_request(server, archive_bytes, tmp_path):
    server.files["demo.tar.gz"] = archive_bytes
    dest = tmp_path / "demo.tar.gz"
    dest.with_suffix(".gz.part").write_bytes(archive_bytes[:1000])

    download(server.url("demo.tar.gz"), dest, sha256=sha256(archive_bytes), progress=False)

    assert server.requests == [("/demo.tar.gz", "bytes=1000-")]
    assert dest.read_bytes() == archive_bytes


def test_server_ignoring_range_makes_the_transfer_restart(server, archive_bytes, tmp_path):
    server.files["demo.tar.gz"] = archive_bytes
    server.mode = "ignore_range"
    dest = tmp_path / "demo.tar.gz"
    dest.with_suffix(".gz.part").write_bytes(b"x" * 1000)  # would corrupt the file if appended to

    download(server.url("demo.tar.gz"), dest, sha256=sha256(archive_bytes), progress=False)

    assert dest.read_bytes() == archive_bytes


def test_complete_part_file_is_accepted_after_416(server, archive_bytes, tmp_path):
    server.files["demo.tar.gz"] = archive_bytes
    dest = tmp_path / "demo.tar.gz"
    dest.with_suffix(".gz.part").write_bytes(archive_bytes)

    download(server.url("demo.tar.gz"), dest, sha256=sha256(archive_bytes), progress=False)

    assert dest.read_bytes() == archive_bytes


def test_truncated_transfer_recovers_on_retry_by_resuming(server, archive_bytes, tmp_path):
    server.files["demo.tar.gz"] = archive_bytes
    server.mode = "truncate_once"
    dest = tmp_path / "demo.tar.gz"

    download(server.url("demo.tar.gz"), dest, sha256=sha256(archive_bytes), progress=False, backoff=0)

    assert dest.read_bytes() == archive_bytes
    assert len(server.requests) == 2
    assert server.requests[1][1] == f"bytes={len(archive_bytes) // 2}-"


def test_transfer_that_stays_truncated_fails_cleanly(server, archive_bytes, tmp_path):
    server.files["demo.tar.gz"] = archive_bytes
    server.mode = "truncate"
    dest = tmp_path / "demo.tar.gz"
    url = server.url("demo.tar.gz")

    with pytest.raises(DownloadError, match=re.escape(url)) as err:
        download(url, dest, sha256=sha256(archive_bytes), progress=False, retries=2, backoff=0)

    assert "after 3 attempts" in str(err.value)
    assert not dest.exists()
    assert len(server.requests) == 3


def test_wrong_checksum_raises_and_leaves_no_file(server, archive_bytes, tmp_path):
    server.files["demo.tar.gz"] = archive_bytes
    dest = tmp_path / "demo.tar.gz"
    wrong = "0" * 64

    with pytest.raises(DownloadError) as err:
        download(server.url("demo.tar.gz"), dest, sha256=wrong, progress=False)

    message = str(err.value)
    assert server.url("demo.tar.gz") in message and wrong in message and sha256(archive_bytes) in message
    assert list(tmp_path.iterdir()) == []


def test_md5_only_checksum_is_verified(server, archive_bytes, tmp_path):
    server.files["demo.tar.gz"] = archive_bytes
    good = hashlib.md5(archive_bytes).hexdigest()

    download(server.url("demo.tar.gz"), tmp_path / "a.tar.gz", sha256=None, md5=good, progress=False)
    with pytest.raises(DownloadError, match="md5 mismatch"):
        download(server.url("demo.tar.gz"), tmp_path / "b.tar.gz", sha256=None, md5="f" * 32, progress=False)

    assert (tmp_path / "a.tar.gz").read_bytes() == archive_bytes
    assert not (tmp_path / "b.tar.gz").exists()


def test_rerun_with_verified_file_makes_no_request(server, archive_bytes, tmp_path):
    server.files["demo.tar.gz"] = archive_bytes
    dest = tmp_path / "demo.tar.gz"
    download(server.url("demo.tar.gz"), dest, sha256=sha256(archive_bytes), progress=False)
    server.requests.clear()

    download(server.url("demo.tar.gz"), dest, sha256=sha256(archive_bytes), progress=False)

    assert server.requests == []


def test_existing_file_with_wrong_content_is_fetched_again(server, archive_bytes, tmp_path):
    server.files["demo.tar.gz"] = archive_bytes
    dest = tmp_path / "demo.tar.gz"
    dest.write_bytes(b"stale")

    download(server.url("demo.tar.gz"), dest, sha256=sha256(archive_bytes), progress=False)

    assert dest.read_bytes() == archive_bytes


def test_missing_url_fails_without_retrying(server, tmp_path):
    with pytest.raises(DownloadError, match="HTTP 404"):
        download(server.url("nope.tar.gz"), tmp_path / "nope.tar.gz", sha256="0" * 64, progress=False, backoff=0)
    assert len(server.requests) == 1


def test_unreachable_server_is_retried_then_reported(tmp_path):
    # Port 9 (discard) on loopback is closed here: every attempt is a connection error.
    url = "http://127.0.0.1:9/x.tar.gz"
    with pytest.raises(DownloadError, match=re.escape(url)):
        download(url, tmp_path / "x.tar.gz", sha256="0" * 64, progress=False, retries=1, backoff=0, timeout=2)
    assert not (tmp_path / "x.tar.gz").exists()
