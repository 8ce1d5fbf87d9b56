"""Safe, atomic, idempotent extraction of ``.zip`` / ``.tar`` / ``.tar.gz`` / ``.tgz`` / ``.tar.bz2`` /
``.tar.xz`` archives.

Every member is checked before anything is written: absolute names, ``..`` components, backslashes,
drive letters, links of any kind (symbolic or hard; datasets never need them and they are the usual escape
route) and device/FIFO members make the whole archive be refused with :class:`UnsafeArchiveError`.
Tar extraction additionally uses Python's ``filter="data"``. The archive is unpacked into a hidden
temporary folder beside ``target`` and moved into place only when complete; a marker file
``<target>/.extracted`` records the sha256 of each archive extracted there, so reruns skip.

A ``.nii.gz`` is a compressed image, not an archive: it is never unpacked.
"""

from __future__ import annotations

import json
import logging
import lzma
import os
import re
import shutil
import stat
import tarfile
import tempfile
import zipfile
import zlib
from pathlib import Path, PurePosixPath

from meddiff.atomic import write_text
from meddiff.data.download import file_digest
from meddiff.errors import UnsafeArchiveError

log = logging.getLogger(__name__)

MARKER = ".extracted"
_SUFFIX_KINDS = {
    ".tar.gz": "tar.gz", ".tgz": "tar.gz", ".tar.bz2": "tar.bz2", ".tbz2": "tar.bz2",
    ".tar.xz": "tar.xz", ".txz": "tar.xz", ".tar": "tar", ".zip": "zip",
}
_TAR_MODES = {"tar": "r:", "tar.gz": "r:gz", "tar.bz2": "r:bz2", "tar.xz": "r:xz"}


def archive_kind(path: str | Path) -> str | None:
    """``"zip"``, ``"tar"``, ``"tar.gz"``, ``"tar.bz2"`` or ``"tar.xz"`` from the file name, else ``None``
    (e.g. for ``image.nii.gz``)."""
    name = Path(path).name.lower()
    for suffix, kind in _SUFFIX_KINDS.items():
        if name.endswith(suffix):
            return kind
    return None


def _check_name(archive: Path, name: str) -> None:
    """Refuse member names that could land outside the extraction folder."""
    problem = None
    if not name or "\x00" in name:
        problem = "empty or NUL-containing name"
    elif "\\" in name:
        problem = "backslash in name (Windows-style path)"
    elif name.startswith("/") or re.match(r"^[A-Za-z]:", name):
        problem = "absolute path"
    elif ".." in PurePosixPath(name).parts:
        problem = "'..' path traversal"
    elif PurePosixPath(name).parts[:1] == (MARKER,):
        problem = f"member would overwrite the {MARKER} marker"
    if problem:
        raise UnsafeArchiveError(f"{archive}: refusing member {name!r}: {problem}")


def _check_tar_member(archive: Path, member: tarfile.TarInfo) -> None:
    _check_name(archive, member.name)
    if member.issym() or member.islnk():
        kind = "symlink" if member.issym() else "hardlink"
        raise UnsafeArchiveError(
            f"{archive}: refusing member {member.name!r}: {kind} to {member.linkname!r} (links are never extracted)"
        )
    if member.ischr() or member.isblk() or member.isfifo():
        raise UnsafeArchiveError(f"{archive}: refusing member {member.name!r}: device or FIFO")
    if not (member.isfile() or member.isdir()):
        raise UnsafeArchiveError(f"{archive}: refusing member {member.name!r}: unsupported member type {member.type!r}")


def _check_zip_member(archive: Path, info: zipfile.ZipInfo) -> None:
    _check_name(archive, info.filename)
    mode = info.external_attr >> 16  # Unix mode bits, when the zip was made on Unix (0 otherwise)
    if stat.S_ISLNK(mode):
        raise UnsafeArchiveError(f"{archive}: refusing member {info.filename!r}: symlink (links are never extracted)")
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode) or stat.S_ISFIFO(mode) or stat.S_ISSOCK(mode):
        raise UnsafeArchiveError(f"{archive}: refusing member {info.filename!r}: device, FIFO or socket")


def _unpack(archive: Path, kind: str, into: Path) -> None:
    """Check every member, then extract all of them into the (empty, temporary) folder ``into``."""
    try:
        if kind == "zip":
            with zipfile.ZipFile(archive) as zf:
                infos = zf.infolist()
                for info in infos:
                    _check_zip_member(archive, info)
                zf.extractall(into, members=infos)
            return
        with tarfile.open(archive, _TAR_MODES[kind]) as tf:
            members = tf.getmembers()
            for member in members:
                _check_tar_member(archive, member)
            if hasattr(tarfile, "data_filter"):
                tf.extractall(into, members=members, filter="data")
            else:  # Python < 3.11.4: our own checks above are the only guard
                tf.extractall(into, members=members)
    except tarfile.FilterError as err:
        name = getattr(getattr(err, "tarinfo", None), "name", "?")
        raise UnsafeArchiveError(f"{archive}: refusing member {name!r}: {err}") from None
    except (tarfile.TarError, zipfile.BadZipFile, EOFError, zlib.error, lzma.LZMAError, OSError) as err:
        if isinstance(err, OSError) and err.errno is not None:
            raise  # a real I/O problem (disk full, permissions), not a bad archive
        raise UnsafeArchiveError(f"{archive}: cannot be read as {kind} (corrupt or truncated): {err}") from None


def _merge(src: Path, dst: Path) -> None:
    """Move ``src`` onto ``dst`` with renames: folders present on both sides are merged (so multi-part
    archives sharing a top folder combine), anything else at ``dst`` is replaced."""
    if dst.is_dir() and not dst.is_symlink() and src.is_dir():
        for child in sorted(src.iterdir()):
            _merge(child, dst / child.name)
        return
    if dst.is_dir() and not dst.is_symlink():
        shutil.rmtree(dst)
    elif dst.exists() or dst.is_symlink():
        dst.unlink()
    os.replace(src, dst)


def _read_marker(target: Path) -> dict:
    try:
        data = json.loads((target / MARKER).read_text())
        return data if isinstance(data, dict) else {}
    except (FileNotFoundError, json.JSONDecodeError):
        return {}


def extraction_record(target: str | Path, archive_name: str) -> dict | None:
    """What ``<target>/.extracted`` says about the archive called ``archive_name`` (``{"sha256": ...,
    "entries": [...]}``), or ``None`` if it was never extracted there or its entries are gone."""
    target = Path(target)
    record = _read_marker(target).get(archive_name)
    if not isinstance(record, dict) or not all((target / e).exists() for e in record.get("entries", [])):
        return None
    return record


def _write_marker(folder: Path, records: dict) -> None:
    write_text(folder / MARKER, json.dumps(records, indent=1, sort_keys=True) + "\n")


def extract_archive(archive: str | Path, target: str | Path, *, kind: str | None = None) -> list[Path]:
    """Safely extract ``archive`` into the folder ``target``; return the top-level paths it created there.

    ``kind`` (``zip``/``tar``/``tar.gz``/``tar.bz2``/``tar.xz``) defaults to the one implied by the file
    name. If ``target`` does not exist it appears in one rename, complete; if it exists (other archives,
    a ``downloads/`` folder) the archive's top-level entries are renamed into it and same-named folders are
    merged. If ``<target>/.extracted`` already records this archive with the same sha256 and its entries
    exist, nothing is done.

    Raises :class:`UnsafeArchiveError` (naming the archive and the member) for absolute or ``..`` names,
    links, devices/FIFOs, and for unreadable archives; in that case nothing is written to ``target``.
    """
    archive, target = Path(archive), Path(target)
    kind = kind or archive_kind(archive)
    if kind not in _TAR_MODES and kind != "zip":
        raise UnsafeArchiveError(f"{archive}: not a recognised archive type (expected one of {sorted(_SUFFIX_KINDS)})")
    digest = file_digest(archive, "sha256")
    record = extraction_record(target, archive.name)
    if record and record.get("sha256") == digest:
        log.info("%s already extracted into %s; skipping", archive.name, target)
        return [target / e for e in record["entries"]]

    log.info("extracting %s into %s", archive, target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".extracting", dir=target.parent))
    try:
        _unpack(archive, kind, tmp)
        entries = sorted(p.name for p in tmp.iterdir())
        if not target.exists():
            _write_marker(tmp, {archive.name: {"sha256": digest, "entries": entries}})
            os.replace(tmp, target)
        else:
            for name in entries:
                _merge(tmp / name, target / name)
            records = _read_marker(target)
            records[archive.name] = {"sha256": digest, "entries": entries}
            _write_marker(target, records)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    log.info("extracted %s: %d top-level entries", archive.name, len(entries))
    return [target / e for e in entries]
