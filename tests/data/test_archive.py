"""Safe extraction: malicious archives are refused before anything lands on disk; good ones appear atomically."""

from __future__ import annotations

import gzip
import io
import stat
import tarfile
import zipfile
from pathlib import Path

import pytest

from meddiff.data import archive as archive_mod
from meddiff.data.archive import MARKER, archive_kind, extract_archive
from meddiff.errors import UnsafeArchiveError


def write_tar(path: Path, members: list[tarfile.TarInfo | tuple[str, bytes]], mode: str = "w:gz") -> Path:
    with tarfile.open(path, mode) as tf:
        for item in members:
            if isinstance(item, tarfile.TarInfo):
                tf.addfile(item)
            else:
                name, data = item
                info = tarfile.TarInfo(name)
                info.size = len(data)
                tf.addfile(info, io.BytesIO(data))
    return path


def link(name: str, target: str, kind: bytes) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = target
    return info


def assert_nothing_written(tmp_path: Path, target: Path, outside: list[Path]) -> None:
    assert not target.exists(), "a refused archive must not create the target"
    assert not list(target.parent.glob(f".{target.name}.*")), "temporary extraction folder left behind"
    for path in outside:
        assert not path.exists(), f"{path} was written outside the target"


GOOD = [("ds/a.txt", b"alpha"), ("ds/sub/b.nii.gz", gzip.compress(b"volume"))]


@pytest.mark.parametrize("suffix,mode", [(".tar", "w:"), (".tar.gz", "w:gz"), (".tgz", "w:gz"),
                                         (".tar.bz2", "w:bz2"), (".tar.xz", "w:xz")])
def test_tar_flavours_extract(tmp_path, suffix, mode):
    archive = write_tar(tmp_path / f"good{suffix}", GOOD, mode)
    target = tmp_path / "out"

    entries = extract_archive(archive, target)

    assert entries == [target / "ds"]
    assert (target / "ds" / "a.txt").read_bytes() == b"alpha"
    assert gzip.decompress((target / "ds" / "sub" / "b.nii.gz").read_bytes()) == b"volume"


def test_zip_extracts(tmp_path):
    archive = tmp_path / "good.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for name, data in GOOD:
            zf.writestr(name, data)

    extract_archive(archive, tmp_path / "out")

    assert (tmp_path / "out" / "ds" / "a.txt").read_bytes() == b"alpha"


def test_nifti_gz_is_not_an_archive(tmp_path):
    assert archive_kind("image.nii.gz") is None
    assert archive_kind("Task06_Lung.tar") == "tar" and archive_kind("x.TGZ") == "tar.gz"
    image = tmp_path / "image.nii.gz"
    image.write_bytes(gzip.compress(b"volume"))
    with pytest.raises(UnsafeArchiveError, match="not a recognised archive"):
        extract_archive(image, tmp_path / "out")
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    "member_factory,problem",
    [
        (lambda tmp: ("../escaped.txt", b"x"), "traversal"),
        (lambda tmp: ("ds/../../escaped.txt", b"x"), "traversal"),
        (lambda tmp: (str(tmp / "escaped.txt"), b"x"), "absolute"),
        (lambda tmp: link("ds/etc", "/etc", tarfile.SYMTYPE), "symlink"),
        (lambda tmp: link("ds/link", str(tmp / "outside"), tarfile.SYMTYPE), "symlink"),
        (lambda tmp: link("ds/passwd", "../../escaped.txt", tarfile.LNKTYPE), "hardlink"),
        (lambda tmp: link("ds/fifo", "", tarfile.FIFOTYPE), "FIFO"),
        (lambda tmp: link("ds/dev", "", tarfile.CHRTYPE), "device"),
    ],
    ids=["dotdot", "nested-dotdot", "absolute", "symlink-to-etc", "symlink-escape", "hardlink-escape", "fifo",
         "chardev"],
)
def test_malicious_tar_is_refused_and_nothing_written(tmp_path, member_factory, problem):
    work = tmp_path / "work"
    work.mkdir()
    (tmp_path / "outside").mkdir()
    member = member_factory(tmp_path)
    # A harmless member first, the malicious one next, and a write through the (tmp-only) link last.
    archive = write_tar(tmp_path / "evil.tar.gz", [("ds/ok.txt", b"ok"), member, ("ds/link/owned", b"x")])
    target = work / "out"

    with pytest.raises(UnsafeArchiveError) as err:
        extract_archive(archive, target)

    name = member[0] if isinstance(member, tuple) else member.name
    assert str(archive) in str(err.value) and repr(name) in str(err.value) and problem in str(err.value)
    outside = [tmp_path / "escaped.txt", work / "escaped.txt", tmp_path / "outside" / "owned"]
    assert_nothing_written(tmp_path, target, outside)


@pytest.mark.parametrize("name", ["../zipslip.txt", "/abs/zipslip.txt", "ds/../../zipslip.txt", "..\\zipslip.txt"])
def test_zip_slip_is_refused(tmp_path, name):
    work = tmp_path / "work"
    work.mkdir()
    archive = tmp_path / "evil.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("ds/ok.txt", b"ok")
        zf.writestr(zipfile.ZipInfo(name), b"x")
    target = work / "out"

    with pytest.raises(UnsafeArchiveError, match="zipslip"):
        extract_archive(archive, target)

    assert_nothing_written(tmp_path, target, [tmp_path / "zipslip.txt", work / "zipslip.txt"])


def test_zip_symlink_is_refused(tmp_path):
    archive = tmp_path / "evil.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        info = zipfile.ZipInfo("ds/etc")
        info.create_system = 3
        info.external_attr = (stat.S_IFLNK | 0o777) << 16
        zf.writestr(info, "/etc")

    with pytest.raises(UnsafeArchiveError, match="symlink"):
        extract_archive(archive, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_corrupt_archive_is_refused_without_partial_target(tmp_path):
    good = write_tar(tmp_path / "good.tar.gz", GOOD + [("ds/big.bin", bytes(range(256)) * 400)])
    truncated = tmp_path / "cut.tar.gz"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])

    with pytest.raises(UnsafeArchiveError, match="corrupt or truncated"):
        extract_archive(truncated, tmp_path / "out")
    assert_nothing_written(tmp_path, tmp_path / "out", [])


def test_interrupted_extraction_leaves_nothing_that_looks_finished(tmp_path, monkeypatch):
    archive = write_tar(tmp_path / "good.tar.gz", GOOD)
    real_extractall = tarfile.TarFile.extractall

    def dying_extractall(self, path, *args, **kwargs):
        real_extractall(self, path, *args, **kwargs)
        raise KeyboardInterrupt  # killed after writing files, before the rename into place

    monkeypatch.setattr(tarfile.TarFile, "extractall", dying_extractall)
    with pytest.raises(KeyboardInterrupt):
        extract_archive(archive, tmp_path / "out")
    assert_nothing_written(tmp_path, tmp_path / "out", [])


def test_rerun_skips_and_changed_archive_is_reextracted(tmp_path, monkeypatch):
    archive = write_tar(tmp_path / "data.tar.gz", GOOD)
    target = tmp_path / "out"
    extract_archive(archive, target)
    assert (target / MARKER).is_file()

    def must_not_unpack(*args, **kwargs):
        raise AssertionError("archive was unpacked again")

    with monkeypatch.context() as m:
        m.setattr(archive_mod, "_unpack", must_not_unpack)
        assert extract_archive(archive, target) == [target / "ds"]

    write_tar(archive, [("ds/a.txt", b"new alpha")])
    extract_archive(archive, target)
    assert (target / "ds" / "a.txt").read_bytes() == b"new alpha"


def test_existing_target_is_merged_not_replaced(tmp_path):
    target = tmp_path / "dataset"
    (target / "downloads").mkdir(parents=True)
    (target / "downloads" / "keep.me").write_text("archive")
    part1 = write_tar(tmp_path / "part1.tar.gz", [("ds/a.txt", b"a")])
    part2 = write_tar(tmp_path / "part2.tar.gz", [("ds/b.txt", b"b")])

    extract_archive(part1, target)
    extract_archive(part2, target)

    assert (target / "downloads" / "keep.me").read_text() == "archive"
    assert (target / "ds" / "a.txt").read_bytes() == b"a" and (target / "ds" / "b.txt").read_bytes() == b"b"
    assert not list(tmp_path.glob(".dataset.*"))
