"""PNG figures: montage, overlay, side-by-side."""

import numpy as np
import pytest
from matplotlib.image import imread

from meddiff.reporting.figures import orthogonal_montage, orthogonal_views, overlay_figure, side_by_side


def _phantom(shape=(30, 40, 50)) -> np.ndarray:
    z, y, x = np.indices(shape)
    vol = np.full(shape, -1000.0)
    body = ((y - shape[1] / 2) ** 2 / (shape[1] / 2.2) ** 2 + (x - shape[2] / 2) ** 2 / (shape[2] / 2.2) ** 2) < 1
    vol[body] = 40.0
    vol[body & (z > shape[0] * 0.6)] = 300.0  # a bright superior part
    return vol


def _png_ok(path):
    img = imread(path)
    assert img.shape[0] > 100 and img.shape[1] > 100
    assert img[..., :3].std() > 0.05  # not blank
    return img


def test_orthogonal_views_put_superior_up_with_physical_aspect():
    vol = _phantom()
    views = {name: (img, aspect, up) for name, img, aspect, up in orthogonal_views(vol, (0.5, 0.5, 2.0))}
    assert views["axial"][0].shape == (40, 50) and views["axial"][1] == 1.0 and not views["axial"][2]
    assert views["coronal"][0].shape == (30, 50) and views["coronal"][1] == 4.0 and views["coronal"][2]
    assert views["sagittal"][0].shape == (30, 40) and views["sagittal"][2]


def test_montage_written(tmp_path):
    out = tmp_path / "fig" / "montage.png"
    orthogonal_montage({"real": (_phantom(), (1, 1, 2)), "MedDiff-FM": (_phantom() + 20, (1, 1, 2))}, out,
                       window=(-160, 240), title="abdomen")
    img = _png_ok(out)
    assert img.shape[0] > img.shape[1] * 0.5  # two rows of panels


def test_overlay_and_side_by_side_written(tmp_path):
    vol = _phantom()
    overlay = np.zeros_like(vol)
    mask = np.zeros(vol.shape, bool)
    mask[10, 15:25, 20:30] = True
    overlay[mask] = 1.0
    overlay_figure({"case 1": (vol, overlay, mask), "case 2": (vol, overlay * 0.5, None)}, tmp_path / "ov.png",
                   window=(-160, 240), title="anomaly maps")
    _png_ok(tmp_path / "ov.png")
    side_by_side({"low dose": vol[15], "denoised": vol[15], "full dose": vol[15]}, tmp_path / "sbs.png",
                 window=(-160, 240), title="denoising")
    _png_ok(tmp_path / "sbs.png")


def test_no_file_left_on_error(tmp_path):
    out = tmp_path / "bad.png"
    with pytest.raises(ValueError):
        orthogonal_montage({"slice": (np.zeros((4, 4)), (1, 1, 1))}, out, window=(0, 1), title="x")
    with pytest.raises(ValueError):
        overlay_figure({"x": (_phantom(), np.zeros((2, 2, 2)), None)}, out, window=(0, 1), title="x")
    with pytest.raises(ValueError):  # an unknown colour map fails while drawing, after validation
        overlay_figure({"x": (_phantom(), np.zeros_like(_phantom()), None)}, out, window=(0, 1), title="x",
                       overlay_cmap="no-such-cmap")
    assert list(tmp_path.iterdir()) == []


def test_no_partial_file_when_saving_fails(tmp_path, monkeypatch):
    from matplotlib.figure import Figure

    def broken_savefig(self, fname, **kwargs):
        with open(fname, "wb") as fh:
            fh.write(b"\x89PNG half")  # a partly written file
        raise OSError("disk full")

    monkeypatch.setattr(Figure, "savefig", broken_savefig)
    with pytest.raises(OSError):
        side_by_side({"a": np.zeros((20, 20))}, tmp_path / "x.png", window=(0, 1), title="x")
    assert list(tmp_path.iterdir()) == []
