import numpy as np
import SimpleITK as sitk

from meddiff.config import Window
from meddiff.evaluation.synthesis import CLIPPED_BONE_HU, coarse_dice, undo_window_clipping


def test_window_bounds_become_air_and_bone_for_the_segmenter():
    window = Window(level=60, width=360)  # abdomen: [-120, 240] HU
    rng = np.random.default_rng(0)
    hu = np.full((5, 5, 9), 50.0, dtype=np.float32)
    # outside air: clamped at the floor like a sample, with sampling noise (up to ~+36 HU) above it
    hu[:, :, :3] = np.maximum(-120.0 + rng.normal(0, 12, (5, 5, 3)), -120.0)
    hu[:, :, 3] = -100.0  # fat, above the floor
    hu[:, :, 6:] = 240.0  # bone clipped at the ceiling
    image = sitk.GetImageFromArray(hu)
    image.SetSpacing((2.0, 2.0, 3.0))
    out = sitk.GetArrayFromImage(undo_window_clipping(image, window))
    assert (out[1:-1, 1:-1, 1] == -1024.0).all()
    assert (out[:, :, 3] == -100.0).all() and (out[:, :, 4] == 50.0).all()
    assert (out[1:-1, 1:-1, 7] == CLIPPED_BONE_HU).all()
    hu_wide = sitk.GetImageFromArray(np.full((3, 3, 3), 240.0, dtype=np.float32))
    chest = Window(level=-500, width=1800)  # ceiling 400 HU: bone is seen as it is
    assert (sitk.GetArrayFromImage(undo_window_clipping(hu_wide, chest)) == 240.0).all()
    assert undo_window_clipping(image, window).GetSpacing() == (2.0, 2.0, 3.0)


def test_coarse_dice_counts_body_lung_and_bone_groups():
    from meddiff.labels import BODY, class_index

    lung, bone = class_index()["lung_upper_lobe_left"], class_index()["skull"]
    ref = np.array([0, BODY, BODY, lung, lung, bone])
    pred = np.array([0, BODY, lung, lung, 0, class_index()["vertebrae_T12"]])
    d = coarse_dice(ref, pred)
    assert d["body"] == 2 * 4 / (5 + 4)
    assert d["lung"] == 2 * 1 / (2 + 2)
    assert d["bone"] == 1.0  # skull vs vertebra: both bone
