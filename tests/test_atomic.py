import os

import pytest

from meddiff.atomic import atomic_dir, atomic_path, write_text


def test_atomic_path_publishes_only_on_success(tmp_path):
    target = tmp_path / "out.nii.gz"
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            assert tmp.name.endswith(".nii.gz") and tmp.parent == tmp_path
            tmp.write_text("half")
            raise RuntimeError("killed")
    assert list(tmp_path.iterdir()) == []
    write_text(target, "done")
    assert target.read_text() == "done"
    assert [p.name for p in tmp_path.iterdir()] == ["out.nii.gz"]
    assert os.stat(target).st_mode & 0o044, "outputs are readable by others, like any file"


def test_atomic_dir_replaces_a_folder_whole(tmp_path):
    target = tmp_path / "case"
    with atomic_dir(target) as tmp:
        (tmp / "a.npy").write_text("old")
    with pytest.raises(KeyboardInterrupt):
        with atomic_dir(target) as tmp:
            (tmp / "b.npy").write_text("new")
            raise KeyboardInterrupt
    assert sorted(p.name for p in target.iterdir()) == ["a.npy"]
    with atomic_dir(target) as tmp:
        (tmp / "b.npy").write_text("new")
    assert sorted(p.name for p in target.iterdir()) == ["b.npy"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["case"]
