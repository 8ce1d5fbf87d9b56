"""3D feature extractor for FID, MMD and the LPIPS-style distance (paper 4.1.3: "a 3D pre-trained ResNet from
MedicalNet").

With MedicalNet weights (``evaluation.medicalnet_weights``), the network is MONAI's ResNet built to match the
file (ResNet-10/18/34/50/... detected from the state-dict keys) with MedicalNet's stem (7-voxel conv1 with
stride 2), no classification head. Note that MONAI's ResNet downsamples layer3/layer4 with stride 2, whereas
MedicalNet's segmentation network used dilated convolutions there; the weights are identical in shape and
MONAI's own MedicalNet loader (``ResNetFeatures``) makes the same choice.

Without weights, the documented fallback is the same ResNet-10 architecture with a fixed-seed random
initialisation. Random-feature networks are a known stand-in for pretrained feature extractors when weights are
unavailable: they rank distribution shifts consistently, but absolute FID/MMD/LPIPS-style values computed with
them are NOT comparable to the paper's (or to values from MedicalNet weights). The extractor's ``name`` says
which one was used, and tables must print it.

Input normalisation: MedicalNet was trained on per-volume z-scored intensities, so every input is z-scored
(mean 0, standard deviation 1 over the whole array) before the network. The network is fully convolutional;
inputs are not resized. Arrays with a side below 16 voxels are edge-padded to 16.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from monai.networks import nets
from monai.networks.nets.resnet import ResNet, resnet_params

from meddiff.errors import WeightsMissingError

log = logging.getLogger(__name__)

MIN_SIDE = 16
"""Smallest side (voxels) fed to the network; smaller inputs are edge-padded to it."""

FALLBACK_SEED = 0
MEDICALNET_HINT = (
    "get the MedicalNet weights resnet_10_23dataset.pth from the Tencent MedicalNet release "
    "(github.com/Tencent/MedicalNet, pretrained models in its README; the same file is in the Hugging Face "
    "repository TencentMedicalNet/MedicalNet-Resnet10) "
    "and set the config key evaluation.medicalnet_weights to its local path, or set it to null to use the "
    "documented random-init fallback extractor"
)


def _build_resnet(arch: str) -> ResNet:
    """MONAI ResNet ``arch`` ("resnet10", "resnet50", ...) with MedicalNet's stem and without a head."""
    _block, _layers, shortcut_type, bias_downsample, _ = resnet_params[arch]
    factory = getattr(nets, arch)
    return factory(
        pretrained=False,
        spatial_dims=3,
        n_input_channels=1,
        conv1_t_size=7,
        conv1_t_stride=2,
        shortcut_type=shortcut_type,
        bias_downsample=bias_downsample,
        feed_forward=False,
    )


def zscore(volume: np.ndarray) -> np.ndarray:
    """Per-volume z-score (MedicalNet's input normalisation); a constant volume becomes zeros."""
    v = np.asarray(volume, dtype=np.float32)
    std = float(v.std())
    return (v - float(v.mean())) / std if std > 0 else np.zeros_like(v)


def _pad_to_min(volume: np.ndarray) -> np.ndarray:
    pad = [((MIN_SIDE - s) // 2, MIN_SIDE - s - (MIN_SIDE - s) // 2) if s < MIN_SIDE else (0, 0) for s in volume.shape]
    return np.pad(volume, pad, mode="edge") if any(p != (0, 0) for p in pad) else volume


class FeatureExtractor:
    """A frozen 3D ResNet used as a feature extractor.

    ``extractor(volume)`` -> (F,) global-average-pooled last-stage features (F = 512 for ResNet-10/18/34,
    2048 for ResNet-50 and deeper). ``extractor.feature_maps(volume)`` -> the five stage outputs (stem after
    ReLU, layer1..layer4), each (C, d, h, w), for the LPIPS-style distance.
    """

    def __init__(self, network: ResNet, name: str, *, pretrained: bool, device: str | torch.device = "cpu") -> None:
        if device == "auto":  # the config's device value: CUDA when available
            device = "cuda" if torch.cuda.is_available() else "cpu"
        self.device = torch.device(device)
        self.network = network.to(self.device).eval()
        for p in self.network.parameters():
            p.requires_grad_(False)
        self.name = name
        self.pretrained = pretrained

    def _prepare(self, volumes: Sequence[np.ndarray]) -> torch.Tensor:
        """K arrays (Z, Y, X) of one shape -> z-scored (K, 1, Z, Y, X) tensor on the device."""
        arrays = []
        for v in volumes:
            if np.ndim(v) != 3:
                raise ValueError(f"the feature extractor expects (Z, Y, X) volumes, got shape {np.shape(v)}")
            arrays.append(_pad_to_min(zscore(v)))
        return torch.from_numpy(np.stack(arrays)[:, None]).to(self.device)

    @torch.no_grad()
    def _stages(self, x: torch.Tensor) -> list[torch.Tensor]:
        net = self.network
        x = net.act(net.bn1(net.conv1(x)))
        out = [x]
        if not net.no_max_pool:
            x = net.maxpool(x)
        for layer in (net.layer1, net.layer2, net.layer3, net.layer4):
            x = layer(x)
            out.append(x)
        return out

    def feature_maps(self, volume: np.ndarray) -> list[torch.Tensor]:
        """Stage outputs for one (Z, Y, X) volume: a list of five (C, d, h, w) float tensors on the CPU."""
        return [f[0].float().cpu() for f in self._stages(self._prepare([volume]))]

    def batch_features(self, volumes: Sequence[np.ndarray]) -> np.ndarray:
        """(K, F) pooled features of K same-shaped (Z, Y, X) volumes, computed in one batch."""
        last = self._stages(self._prepare(volumes))[-1]
        return last.mean(dim=(2, 3, 4)).float().cpu().numpy()

    def __call__(self, volume: np.ndarray) -> np.ndarray:
        """(F,) global-average-pooled last-stage features of one (Z, Y, X) volume."""
        return self.batch_features([volume])[0]


def _architecture(state: dict[str, torch.Tensor], path: Path) -> str:
    """Which MONAI ResNet a (prefix-stripped) MedicalNet state dict belongs to, from its keys."""
    bottleneck = "layer1.0.conv3.weight" in state
    blocks = [len({k.split(".")[1] for k in state if k.startswith(f"layer{i}.")}) for i in range(1, 5)]
    for arch, (block, layers, *_rest) in resnet_params.items():
        if (block == "bottleneck") == bottleneck and list(layers) == blocks:
            return arch
    raise WeightsMissingError(
        f"{path}: not a MedicalNet 3D ResNet state dict (blocks per stage {blocks}, "
        f"{'bottleneck' if bottleneck else 'basic'} blocks); {MEDICALNET_HINT}"
    )


def _read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - torch.load raises many types (KeyError, UnpicklingError, ...) on bad files
        raise WeightsMissingError(f"{path}: cannot read MedicalNet weights ({err}); {MEDICALNET_HINT}") from None
    if isinstance(obj, dict) and isinstance(obj.get("state_dict"), dict):
        obj = obj["state_dict"]  # the Tencent release stores {"state_dict": ..., ...}
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise WeightsMissingError(f"{path}: does not hold a state dict of tensors; {MEDICALNET_HINT}")
    # MedicalNet was trained under DataParallel: keys are "module.conv1.weight", ...
    return {k.removeprefix("module."): v for k, v in obj.items()}


def load_medicalnet(path: str | Path, device: str | torch.device = "cpu") -> FeatureExtractor:
    """MedicalNet 3D ResNet from a local ``.pth`` file (loaded with ``weights_only=True``)."""
    path = Path(path)
    if not path.is_file():
        raise WeightsMissingError(f"{path}: MedicalNet weights not found; {MEDICALNET_HINT}")
    state = _read_state_dict(path)
    arch = _architecture(state, path)
    network = _build_resnet(arch)
    expected = network.state_dict().keys()
    # The segmentation head (conv_seg.*) and any classifier (fc.*) are not part of the feature extractor.
    state = {k: v for k, v in state.items() if k in expected or not k.startswith(("conv_seg.", "fc."))}
    try:
        network.load_state_dict(state, strict=True)
    except RuntimeError as err:
        first = str(err).splitlines()[0:2]
        raise WeightsMissingError(f"{path}: weights do not fit MONAI {arch}: {' '.join(first)}; {MEDICALNET_HINT}") from None
    depth = arch.removeprefix("resnet")
    log.info("feature extractor: MedicalNet ResNet-%s from %s", depth, path)
    return FeatureExtractor(network, f"MedicalNet ResNet-{depth} ({path.name})", pretrained=True, device=device)


def random_resnet10(seed: int = FALLBACK_SEED, device: str | torch.device = "cpu") -> FeatureExtractor:
    """The documented fallback: ResNet-10 with a fixed-seed random (Kaiming) initialisation.

    The global torch RNG state is left untouched. Values computed with it are not comparable to the paper's.
    """
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        network = _build_resnet("resnet10")
    name = f"ResNet10-3D random init (seed {seed}), MedicalNet weights not supplied"
    log.warning("feature extractor: %s; FID/MMD/LPIPS-style values are not comparable to the paper's", name)
    return FeatureExtractor(network, name, pretrained=False, device=device)


def load_feature_extractor(medicalnet_weights: str | Path | None, device: str | torch.device = "cpu") -> FeatureExtractor:
    """The extractor for ``evaluation.medicalnet_weights``: MedicalNet from that path, or the random-init
    ResNet-10 fallback when it is ``None``. A path that does not exist raises :class:`WeightsMissingError`.
    ``device``: "auto" (the config's default: CUDA when available), "cpu", "cuda" or a ``torch.device``."""
    if medicalnet_weights is None:
        return random_resnet10(FALLBACK_SEED, device)
    return load_medicalnet(medicalnet_weights, device)


def crop_corners(shape: Sequence[int], crop_size: int, count: int, seed: int = 0) -> list[tuple[int, int, int]]:
    """``count`` deterministic random crop corners (z, y, x) for a volume of ``shape``.

    The corners depend only on ``seed`` and ``shape``, so a real volume and the synthetic volume generated on
    its grid are cropped at the same places. A side shorter than ``crop_size`` is taken whole.
    """
    rng = np.random.default_rng([seed, *map(int, shape)])
    return [tuple(int(rng.integers(0, max(s - crop_size, 0) + 1)) for s in shape) for _ in range(count)]


def patch_features(
    extractor: FeatureExtractor,
    volumes: Sequence[np.ndarray],
    *,
    crop_size: int = 32,
    crops_per_volume: int = 8,
    seed: int = 0,
) -> np.ndarray:
    """(N * K, F) features of K deterministic random crops (``crop_size``^3) of each of N (Z, Y, X) volumes.

    Why crops: FID and MMD compare feature distributions, and a test split of 1-2 volumes gives 1-2 feature
    vectors, for which a covariance is undefined (FID) or rank 0. Crops give N * K samples (16 for 2 volumes),
    still far fewer than F = 512 features, so the covariance is rank-deficient and the FID is an estimate
    with a large bias — comparable between methods evaluated with the same crops, not with the paper's.
    """
    feats = []
    for volume in volumes:
        corners = crop_corners(volume.shape, crop_size, crops_per_volume, seed)
        crops = [volume[z : z + crop_size, y : y + crop_size, x : x + crop_size] for z, y, x in corners]
        feats.append(extractor.batch_features(crops))
    if not feats:
        raise ValueError("patch_features needs at least one volume")
    return np.concatenate(feats, axis=0)
