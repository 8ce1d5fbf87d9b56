"""BMAD liver loader on a tiny PNG fixture written in BMAD's layout."""

from pathlib import Path

import numpy as np
import pytest
import skimage.io

from meddiff.config import Window
from meddiff.data.bmad import grey_to_unit, load_bmad_liver
from meddiff.errors import DatasetMissingError, InputImageError
from meddiff.labels import class_index

ABDOMEN = Window(level=60, width=360)  # [-120, 240] HU


def _liver_slice(k: int, tumour: bool) -> tuple[np.ndarray, np.ndarray]:
    """8x8 slice: black background, a 4x4 'liver' of grey 100 + k; optional dark 'tumour' pixel of grey 0
    inside the liver (a hole the organ mask must fill)."""
    img = np.zeros((8, 8), np.uint8)
    img[2:6, 2:6] = 100 + k
    label = np.zeros((8, 8), np.uint8)
    if tumour:
        img[3, 3] = 0
        label[3, 3] = 255
    return img, label


def _write(path: Path, array: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    skimage.io.imsave(path, array, check_contrast=False)


@pytest.fixture
def bmad_root(tmp_path):
    """Volume 7: slices 8..12 with tumours on 9 and 10 (Ungood); volume 12: slices 1, 2 healthy."""
    liver = tmp_path / "BMAD" / "Liver"
    for vol, k, tumour in [(7, 8, False), (7, 9, True), (7, 10, True), (7, 11, False), (7, 12, False),
                           (12, 1, False), (12, 2, False)]:
        img, label = _liver_slice(k, tumour)
        cls = "Ungood" if tumour else "good"
        _write(liver / "test" / cls / "img" / f"{vol}_{k}.png", img)
        if tumour:
            _write(liver / "test" / cls / "label" / f"{vol}_{k}.png", label)
    img, _ = _liver_slice(0, False)
    _write(liver / "train" / "good" / "img" / "3_5.png", img)
    return tmp_path / "BMAD"


def test_stacks_slices_per_volume_in_slice_order(bmad_root):
    cases = load_bmad_liver(bmad_root, "test", slices_per_volume=3, window=ABDOMEN)
    # volume 7 (5 slices) -> chunks of 3 + 2; volume 12 -> one chunk of 2; volumes in natural order 7 < 12.
    assert [c.case for c in cases] == ["bmad_test_7_8-7_10", "bmad_test_7_11-7_12", "bmad_test_12_1-12_2"]
    assert [c.image.shape for c in cases] == [(3, 8, 8), (2, 8, 8), (2, 8, 8)]
    first = cases[0]
    # Slice order 8, 9, 10 although 9 and 10 sit in the Ungood folder: liver grey 108, 109, 110.
    expected = grey_to_unit(np.array([108, 109, 110]), ABDOMEN)
    np.testing.assert_allclose(first.image[:, 2, 2], expected, atol=1e-6)
    # Tumour masks land on the slices they belong to.
    assert first.lesion_mask.sum() == 2 and first.lesion_mask[1, 3, 3] and first.lesion_mask[2, 3, 3]
    assert not cases[1].lesion_mask.any() and not cases[2].lesion_mask.any()


def test_grey_levels_map_linearly_onto_the_abdomen_window(bmad_root):
    # grey 0 -> -120 HU -> -1 (air/background of the [-1, 1] space); 255 -> 240 HU -> +1; 127.5 -> 60 HU -> 0.
    np.testing.assert_allclose(grey_to_unit(np.array([0, 127.5, 255]), ABDOMEN), [-1.0, 0.0, 1.0], atol=1e-6)
    case = load_bmad_liver(bmad_root, "test", slices_per_volume=5, window=ABDOMEN)[0]
    assert case.image.min() == pytest.approx(-1.0)  # black background
    assert case.region == "abdomen"


def test_organ_mask_is_the_liver_with_tumour_holes_filled(bmad_root):
    case = load_bmad_liver(bmad_root, "test", slices_per_volume=5, window=ABDOMEN)[0]
    liver = class_index()["liver"]
    expected = np.zeros((8, 8), bool)
    expected[2:6, 2:6] = True
    for z in range(5):
        np.testing.assert_array_equal(case.labels[z] == liver, expected)  # includes the grey-0 tumour pixel
    assert set(np.unique(case.labels)) == {0, liver}


def test_train_split_and_max_volumes(bmad_root):
    cases = load_bmad_liver(bmad_root, "train", slices_per_volume=4, window=ABDOMEN)
    assert len(cases) == 1 and cases[0].image.shape == (1, 8, 8) and not cases[0].lesion_mask.any()
    assert len(load_bmad_liver(bmad_root, "test", slices_per_volume=1, window=ABDOMEN, max_volumes=2)) == 2


def test_missing_dataset_names_source_and_layout(tmp_path):
    with pytest.raises(DatasetMissingError, match=r"DorisBao/BMAD.*Liver/test/Ungood/label"):
        load_bmad_liver(tmp_path / "nowhere", slices_per_volume=4, window=ABDOMEN)


def test_missing_split_is_reported(bmad_root):
    with pytest.raises(DatasetMissingError, match="valid"):
        load_bmad_liver(bmad_root, "valid", slices_per_volume=4, window=ABDOMEN)


def test_ungood_slice_without_mask_is_an_error(bmad_root):
    (bmad_root / "Liver" / "test" / "Ungood" / "label" / "7_9.png").unlink()
    with pytest.raises(InputImageError, match="7_9.png"):
        load_bmad_liver(bmad_root, "test", slices_per_volume=4, window=ABDOMEN)


def test_mask_of_other_size_is_an_error(bmad_root):
    _write(bmad_root / "Liver" / "test" / "Ungood" / "label" / "7_9.png", np.zeros((4, 4), np.uint8))
    with pytest.raises(InputImageError, match="differs"):
        load_bmad_liver(bmad_root, "test", slices_per_volume=4, window=ABDOMEN)
