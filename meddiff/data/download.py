"""Resumable, verified HTTP download with the standard library.

Hand-written on ``urllib`` because no installed package does resumable Range transfers with checksum
verification (``monai.apps.download_url`` restarts from zero and would pull in ``gdown``/``requests`` paths we
do not need). A transfer goes to ``<dest>.part``; only a complete file whose size and checksum match is
renamed onto ``dest``, and its checksum is recorded in a ``<dest>.sha256`` sidecar (``sha256sum`` format) so
that reruns do not re-hash multi-gigabyte archives.
"""

from __future__ import annotations

import hashlib
import http.client
import logging
import os
import re
import socket
import time
import urllib.error
import urllib.request
from pathlib import Path

from tqdm.auto import tqdm

from meddiff import __version__
from meddiff.atomic import write_text
from meddiff.errors import DownloadError

log = logging.getLogger(__name__)

CHUNK_BYTES = 1 << 20
_USER_AGENT = f"meddiff/{__version__} (python-urllib)"
_RETRYABLE_HTTP = {408, 425, 429, 500, 502, 503, 504}
_CONTENT_RANGE_RE = re.compile(r"bytes\s+(\d+)-(\d+)/(\d+|\*)")


class _Incomplete(Exception):
    """The server closed the connection before sending every byte (resumable)."""


def _sidecar(path: Path, algo: str) -> Path:
    return path.with_name(f"{path.name}.{algo}")


def _hash_file(path: Path, algos: tuple[str, ...]) -> dict[str, str]:
    hashers = {a: hashlib.new(a) for a in algos}
    with open(path, "rb") as fh:
        while chunk := fh.read(CHUNK_BYTES):
            for h in hashers.values():
                h.update(chunk)
    return {a: h.hexdigest() for a, h in hashers.items()}


def _record_digests(path: Path, digests: dict[str, str]) -> None:
    for algo, value in digests.items():
        write_text(_sidecar(path, algo), f"{value}  {path.name}\n")


def file_digest(path: str | Path, algo: str = "sha256") -> str:
    """Hex digest of ``path``, read from the ``<path>.<algo>`` sidecar when that is newer than the file,
    otherwise computed (and the sidecar written)."""
    path = Path(path)
    side = _sidecar(path, algo)
    try:
        if side.stat().st_mtime_ns >= path.stat().st_mtime_ns:
            value = side.read_text().split()[0]
            if re.fullmatch(r"[0-9a-f]+", value):
                return value
    except (FileNotFoundError, IndexError):
        pass
    value = _hash_file(path, (algo,))[algo]
    _record_digests(path, {algo: value})
    return value


def _parse_total(response: http.client.HTTPResponse, offset: int) -> tuple[int, int | None]:
    """Return (start offset the body begins at, total file size or None) for a 200/206 response."""
    if response.status == 206:
        match = _CONTENT_RANGE_RE.match(response.headers.get("Content-Range", ""))
        if not match:
            raise _Incomplete("206 response without a usable Content-Range")
        start, total = int(match.group(1)), match.group(3)
        return start, None if total == "*" else int(total)
    length = response.headers.get("Content-Length")
    return 0, int(length) if length is not None and length.isdigit() else None


def _transfer(url: str, part: Path, *, timeout: float, progress: bool) -> None:
    """One HTTP attempt: append to ``part`` from its current size; raise :class:`_Incomplete` if short."""
    offset = part.stat().st_size if part.exists() else 0
    headers = {"User-Agent": _USER_AGENT}
    if offset:
        headers["Range"] = f"bytes={offset}-"
    request = urllib.request.Request(url, headers=headers)
    try:
        response = urllib.request.urlopen(request, timeout=timeout)
    except urllib.error.HTTPError as err:
        if err.code == 416 and offset:
            # Range not satisfiable: the .part is already complete (or longer than the file); let the size
            # and checksum checks decide, restarting if it is longer.
            match = re.match(r"bytes \*/(\d+)", err.headers.get("Content-Range", "") or "")
            if match and int(match.group(1)) == offset:
                return
            log.warning("%s: server rejected resume at byte %d; restarting", url, offset)
            part.unlink(missing_ok=True)
            raise _Incomplete("range not satisfiable") from None
        raise
    with response:
        start, total = _parse_total(response, offset)
        if offset and start != offset:
            log.warning("%s: server ignored the Range request (sent byte %d, not %d); restarting", url, start, offset)
            offset = 0
        mode = "ab" if offset else "wb"
        with open(part, mode) as fh, tqdm(
            total=total, initial=offset, unit="B", unit_scale=True, unit_divisor=1024,
            desc=part.name.removesuffix(".part"), disable=None if progress else True,
        ) as bar:
            while chunk := response.read(CHUNK_BYTES):
                fh.write(chunk)
                bar.update(len(chunk))
    size = part.stat().st_size
    if total is not None and size < total:
        raise _Incomplete(f"got {size} of {total} bytes")
    if total is not None and size > total:
        part.unlink()
        raise DownloadError(f"{url}: received {size} bytes but the server announced {total}; deleted {part}")


def download(
    url: str,
    dest: str | Path,
    *,
    sha256: str | None,
    md5: str | None = None,
    progress: bool = True,
    retries: int = 4,
    timeout: float = 60.0,
    backoff: float = 2.0,
) -> Path:
    """Fetch ``url`` to ``dest`` and verify it; return ``dest``.

    - Idempotent: if ``dest`` exists and matches the checksum, no request is made.
    - Resumable: bytes already in ``<dest>.part`` are kept and the rest requested with ``Range``; a server
      that ignores ``Range`` (answers 200) makes the transfer restart from zero.
    - Verified: the size must match ``Content-Length``/``Content-Range`` and the digest must match ``sha256``
      (or ``md5`` when that is all the publisher gives). On mismatch the ``.part`` is deleted and
      :class:`DownloadError` names the URL, the expected and the actual value.
    - Robust: connection errors, timeouts, 5xx answers and transfers closed early are retried ``retries``
      times with exponential ``backoff`` (seconds); each retry resumes. A transfer still short after the last
      retry raises :class:`DownloadError` (the ``.part`` is kept so a later run resumes it).

    ``dest`` only ever appears complete and verified. With neither checksum, an existing ``dest`` is trusted.
    """
    dest = Path(dest)
    expected = {a: v.lower() for a, v in (("sha256", sha256), ("md5", md5)) if v}
    if dest.exists():
        if not expected:
            log.info("%s exists (no checksum to verify); not downloading", dest)
            return dest
        actual = {a: file_digest(dest, a) for a in expected}
        if actual == expected:
            log.info("%s exists and its checksum matches; not downloading", dest)
            return dest
        log.warning("%s exists but its checksum does not match; downloading it again", dest)
        dest.unlink()
        for algo in expected:
            _sidecar(dest, algo).unlink(missing_ok=True)

    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_suffix(dest.suffix + ".part")
    log.info("downloading %s -> %s", url, dest)
    last_problem = "no attempt made"
    for attempt in range(retries + 1):
        if attempt:
            delay = backoff * 2 ** (attempt - 1)
            log.warning("%s: %s; retry %d/%d in %.0f s", url, last_problem, attempt, retries, delay)
            time.sleep(delay)
        try:
            _transfer(url, part, timeout=timeout, progress=progress)
            break
        except urllib.error.HTTPError as err:
            if err.code not in _RETRYABLE_HTTP:
                raise DownloadError(f"{url}: HTTP {err.code} {err.reason}") from None
            last_problem = f"HTTP {err.code}"
        except (_Incomplete, urllib.error.URLError, http.client.HTTPException, ConnectionError,
                TimeoutError, socket.timeout) as err:
            last_problem = f"transfer interrupted ({err})"
    else:
        have = part.stat().st_size if part.exists() else 0
        raise DownloadError(
            f"{url}: {last_problem} after {retries + 1} attempts ({have} bytes kept in {part}; rerun to resume)"
        )

    all_algos = tuple(dict.fromkeys(("sha256", *expected)))
    actual = _hash_file(part, all_algos)
    for algo, want in expected.items():
        if actual[algo] != want:
            part.unlink()
            raise DownloadError(f"{url}: {algo} mismatch: expected {want}, got {actual[algo]}; deleted {part}")
    os.replace(part, dest)
    _record_digests(dest, actual)
    log.info("verified %s (sha256 %s)", dest, actual["sha256"])
    return dest
