"""3D ResNet feature extractor: MedicalNet loading path and the documented random-init fallback."""

from pathlib import Path

import numpy as np
import pytest
import torch

from meddiff.errors import WeightsMissingError
from meddiff.metrics.features import (
    _architecture,
    _build_resnet,
    crop_corners,
    load_feature_extractor,
    patch_features,
)


def _volume(shape=(24, 32, 40), seed=0) -> np.ndarray:
    return np.random.default_rng(seed).uniform(-1, 1, shape).astype(np.float32)


def _save_medicalnet_like(path: Path, seed: int = 123) -> dict[str, torch.Tensor]:
    """A checkpoint laid out like the Tencent release: {"state_dict": {"module.conv1.weight": ...}} plus a
    segmentation head the feature extractor must ignore, saved without pickled objects (weights_only)."""
    torch.manual_seed(seed)
    net = _build_resnet("resnet10")
    for m in net.modules():  # non-trivial BatchNorm statistics so loading them matters
        if isinstance(m, torch.nn.BatchNorm3d):
            m.running_mean.uniform_(-0.1, 0.1)
            m.running_var.uniform_(0.5, 2.0)
    # Files from old PyTorch versions lack BatchNorm's num_batches_tracked entries.
    state = {f"module.{k}": v for k, v in net.state_dict().items() if not k.endswith("num_batches_tracked")}
    state["module.conv_seg.0.weight"] = torch.zeros(32, 512, 3, 3, 3)
    torch.save({"state_dict": state}, path)
    return net.state_dict()


def test_fallback_is_deterministic_named_and_leaves_global_rng_alone():
    torch.manual_seed(7)
    before = torch.rand(1)
    torch.manual_seed(7)
    a = load_feature_extractor(None)
    after = torch.rand(1)
    b = load_feature_extractor(None)
    assert torch.equal(before, after)
    assert "random init" in a.name and "MedicalNet weights not supplied" in a.name
    assert not a.pretrained
    v = _volume()
    fa, fb = a(v), b(v)
    assert fa.shape == (512,)
    np.testing.assert_array_equal(fa, fb)


def test_loads_medicalnet_state_dict_with_module_prefix(tmp_path):
    path = tmp_path / "resnet_10_23dataset.pth"
    saved = _save_medicalnet_like(path)
    ext = load_feature_extractor(str(path))
    assert ext.pretrained and "ResNet-10" in ext.name and path.name in ext.name
    loaded = ext.network.state_dict()
    for key in ("conv1.weight", "layer4.0.conv2.weight", "layer2.0.bn1.running_var"):
        assert torch.equal(loaded[key], saved[key])
    v = _volume()
    assert not np.allclose(ext(v), load_feature_extractor(None)(v))


def test_missing_weights_name_the_config_key(tmp_path):
    with pytest.raises(WeightsMissingError, match="evaluation.medicalnet_weights") as err:
        load_feature_extractor(tmp_path / "resnet_10_23dataset.pth")
    assert "resnet_10_23dataset.pth" in str(err.value) and "MedicalNet" in str(err.value)


def test_unusable_files_are_refused(tmp_path):
    bad = tmp_path / "not_weights.pth"
    bad.write_text("hello")
    with pytest.raises(WeightsMissingError, match="not_weights.pth"):
        load_feature_extractor(bad)
    wrong = tmp_path / "other_net.pth"
    torch.save({"state_dict": {"module.encoder.weight": torch.zeros(3)}}, wrong)
    with pytest.raises(WeightsMissingError, match="other_net.pth"):
        load_feature_extractor(wrong)


def test_architecture_is_read_from_the_keys(tmp_path):
    keys50 = dict.fromkeys(_build_resnet("resnet50").state_dict(), torch.zeros(1))
    assert _architecture(keys50, tmp_path / "x.pth") == "resnet50"
    keys10 = dict.fromkeys(_build_resnet("resnet10").state_dict(), torch.zeros(1))
    assert _architecture(keys10, tmp_path / "x.pth") == "resnet10"


def test_small_volumes_and_feature_maps():
    ext = load_feature_extractor(None)
    maps = ext.feature_maps(_volume((16, 16, 16)))
    assert [m.shape[0] for m in maps] == [64, 64, 128, 256, 512]
    assert all(m.ndim == 4 for m in maps)
    assert ext(_volume((10, 12, 20))).shape == (512,)  # padded up to 16 per side


def test_features_are_invariant_to_intensity_scale_through_zscore():
    ext = load_feature_extractor(None)
    v = _volume()
    np.testing.assert_allclose(ext(v), ext(3 * v + 1), rtol=1e-4, atol=1e-5)


def test_patch_features_are_deterministic_and_shape_dependent():
    ext = load_feature_extractor(None)
    vols = [_volume((40, 40, 40), 0), _volume((40, 48, 40), 1)]
    f1 = patch_features(ext, vols, crop_size=16, crops_per_volume=4, seed=0)
    f2 = patch_features(ext, vols, crop_size=16, crops_per_volume=4, seed=0)
    assert f1.shape == (8, 512)
    np.testing.assert_array_equal(f1, f2)
    assert crop_corners((40, 40, 40), 16, 4, seed=0) == crop_corners((40, 40, 40), 16, 4, seed=0)
    assert crop_corners((40, 40, 40), 16, 4, seed=0) != crop_corners((40, 40, 40), 16, 4, seed=1)
    assert all(0 <= c <= 24 for corner in crop_corners((40, 40, 40), 16, 20) for c in corner)
