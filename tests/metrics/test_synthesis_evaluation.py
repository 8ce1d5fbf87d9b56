import numpy as np
import SimpleITK as sitk

from meddiff.config import Window
from meddiff.metrics.synthesis_evaluation import air_below_window, coarse_dice


def test_window_floor_becomes_air_for_the_segmenter():
    window = Window(level=60, width=360)  # abdomen: [-120, 240] HU
    hu = np.array([[[-120.0, -115.0, -100.0, 50.0]]], dtype=np.float32)
    image = sitk.GetImageFromArray(hu)
    image.SetSpacing((2.0, 2.0, 3.0))
    out = air_below_window(image, window)
    assert sitk.GetArrayFromImage(out).tolist() == [[[-1024.0, -1024.0, -100.0, 50.0]]]
    assert out.GetSpacing() == (2.0, 2.0, 3.0)


def test_coarse_dice_counts_body_lung_and_bone_groups():
    from meddiff.labels import BODY, class_index

    lung, bone = class_index()["lung_upper_lobe_left"], class_index()["skull"]
    ref = np.array([0, BODY, BODY, lung, lung, bone])
    pred = np.array([0, BODY, lung, lung, 0, class_index()["vertebrae_T12"]])
    d = coarse_dice(ref, pred)
    assert d["body"] == 2 * 4 / (5 + 4)
    assert d["lung"] == 2 * 1 / (2 + 2)
    assert d["bone"] == 1.0  # skull vs vertebra: both bone
