"""Demo anomaly cases: phantoms resampled like the training cache, cropped to the liver, tumours only."""

import sys
import types
from dataclasses import dataclass

import numpy as np
import pytest
import SimpleITK as sitk

from meddiff.config import Window
from meddiff.data.anomaly_cases import DEMO_SEED_OFFSET, AnomalyCase, demo_anomaly_cases, liver_z_range
from meddiff.data.phantom import CONSPICUOUS_TUMOURS
from meddiff.errors import InputImageError
from meddiff.labels import BODY, class_index

LIVER = class_index()["liver"]
ABDOMEN = Window(60, 360)


@dataclass
class _FakePhantomCase:
    image: sitk.Image
    labels: sitk.Image
    lesions: sitk.Image
    region: str


def _fake_generate_case(calls):
    """A 40x40x60 phantom at (2, 2, 2.5) mm stored head-first (z direction flipped: index 0 = most superior).
    Liver in index rows 10..29 (HU 60); a liver tumour (1, HU -20) at index rows 10..13, i.e. the liver's
    superior end; a lung nodule (2) far from the liver that must not count."""

    def generate_case(region, seed, *, lesions, spacing_jitter=True, liver_tumours=None):
        assert liver_tumours is CONSPICUOUS_TUMOURS
        calls.append((region, seed, lesions))
        hu = np.full((60, 40, 40), -1000, np.int16)
        hu[:, 5:35, 5:35] = 0
        lab = np.zeros(hu.shape, np.uint8)
        lab[:, 5:35, 5:35] = BODY
        lab[10:30, 10:30, 10:30] = LIVER
        hu[10:30, 10:30, 10:30] = 60
        les = np.zeros(hu.shape, np.uint8)
        if lesions:
            les[10:14, 16:24, 16:24] = 1
            hu[10:14, 16:24, 16:24] = -20
            les[50:54, 16:24, 16:24] = 2
        imgs = []
        for arr in (hu, lab, les):
            img = sitk.GetImageFromArray(arr)
            img.SetSpacing((2.0, 2.0, 2.5))
            img.SetDirection((1, 0, 0, 0, 1, 0, 0, 0, -1))
            img.SetOrigin((0.0, 0.0, 200.0))
            imgs.append(img)
        return _FakePhantomCase(*imgs, region)

    return generate_case


@pytest.fixture
def fake_phantom(monkeypatch):
    calls = []
    module = types.ModuleType("meddiff.data.phantom")
    module.generate_case = _fake_generate_case(calls)
    module.CONSPICUOUS_TUMOURS = CONSPICUOUS_TUMOURS
    monkeypatch.setitem(sys.modules, "meddiff.data.phantom", module)
    return calls


def test_demo_cases_resampled_oriented_cropped_and_tumour_only(fake_phantom):
    cases = demo_anomaly_cases(1, 2, seed=5, spacing_mm=(4.0, 4.0, 5.0), window=ABDOMEN, z_margin_mm=10.0)
    assert [c.case for c in cases] == ["anomaly_demo_000", "anomaly_demo_001", "anomaly_demo_002"]
    assert fake_phantom == [("abdomen", 5 + DEMO_SEED_OFFSET + i, i >= 1) for i in range(3)]
    healthy, lesioned = cases[0], cases[1]
    assert not healthy.lesion_mask.any() and lesioned.lesion_mask.any()
    for c in cases:
        assert c.spacing == (4.0, 4.0, 5.0) and c.region == "abdomen" and c.window == ABDOMEN
        assert c.image.dtype == np.float32 and -1.0 <= c.image.min() and c.image.max() <= 1.0
        assert c.image.shape[1:] == (20, 20)  # 40 voxels x 2 mm / 4 mm
        liver_z = np.flatnonzero((c.labels == LIVER).any(axis=(1, 2)))
        # 50 mm of liver at 5 mm = 10 slices, plus 10 mm = 2 slices of margin on each side.
        assert liver_z[0] == 2 and c.image.shape[0] - 1 - liver_z[-1] == 2
    # Only the liver tumour counts (the lung nodule is also outside the cropped z range).
    assert lesioned.lesion_mask.sum() > 0
    np.testing.assert_allclose(np.median(lesioned.image[lesioned.lesion_mask]), (-20 + 120) / 360 * 2 - 1, atol=1e-4)
    # LPS: z index 0 is most inferior, so the tumour at the liver's superior end lies at the top of the liver.
    lesion_z = np.flatnonzero(lesioned.lesion_mask.any(axis=(1, 2)))
    assert lesion_z.min() > np.flatnonzero((lesioned.labels == LIVER).any(axis=(1, 2))).mean()
    assert healthy.image[0, 0, 0] == pytest.approx(-1.0)  # air


def test_liver_z_range_and_missing_liver():
    labels = np.zeros((10, 2, 2), np.uint8)
    labels[4:6] = LIVER
    assert liver_z_range(labels, margin=2) == (2, 8)
    assert liver_z_range(labels, margin=9) == (0, 10)
    with pytest.raises(InputImageError, match="no liver"):
        liver_z_range(np.zeros((3, 2, 2), np.uint8), margin=1)


def test_anomaly_case_rejects_mismatched_arrays():
    with pytest.raises(InputImageError, match="one shape"):
        AnomalyCase("x", np.zeros((2, 3, 3), np.float32), np.zeros((2, 3, 4), np.uint8),
                    np.zeros((2, 3, 3), bool), (1.0, 1.0, 1.0), ABDOMEN, "abdomen")


def test_real_phantom_gives_healthy_and_tumour_livers():
    pytest.importorskip("meddiff.data.phantom")
    cases = demo_anomaly_cases(1, 1, seed=0, spacing_mm=(5.0, 5.0, 5.0), window=ABDOMEN)
    healthy, lesioned = cases
    assert not healthy.lesion_mask.any()
    assert lesioned.lesion_mask.any(), "the lesioned abdomen phantom should carry a liver tumour"
    # The tumour lies in the liver (or is enclosed by it): the organ mask the task uses covers it.
    from meddiff.tasks.anomaly import organ_mask_from_labels

    organ = organ_mask_from_labels(lesioned.labels, [LIVER])
    assert organ[lesioned.lesion_mask].mean() > 0.9
