"""Preprocessing throughput: ``meddiff preprocess`` of one case against a MONAI transform chain on the same
volume (``python -m benchmarks`` prints the ratio).

The MONAI chain does the core of our work: LoadImage, Orientation to LPS, Spacing to the target spacing
(bilinear image, nearest mask), ScaleIntensityRange to the region window. Ours additionally validates the
CT and the mask grid, splits regions by landmarks and writes the cache atomically, so a ratio near 1 means
those extras are cheap.
"""

from __future__ import annotations

import statistics
import tempfile
import time
from pathlib import Path

from monai.transforms import Compose, LoadImaged, Orientationd, ScaleIntensityRanged, Spacingd

from meddiff.config import Config
from meddiff.data.preprocess import preprocess_case, region_window


def monai_chain(cfg: Config, region: str) -> Compose:
    window = region_window(cfg.preprocess, region)
    lo, hi = window.level - window.width / 2, window.level + window.width / 2
    return Compose(
        [
            LoadImaged(keys=["image", "label"], ensure_channel_first=True),
            Orientationd(keys=["image", "label"], axcodes="LPS"),
            Spacingd(keys=["image", "label"], pixdim=cfg.preprocess.spacing_mm, mode=("bilinear", "nearest")),
            ScaleIntensityRanged(keys=["image"], a_min=lo, a_max=hi, b_min=-1.0, b_max=1.0, clip=True),
        ]
    )


def preprocessing_ratio(cfg: Config, image: Path, label: Path, region: str, work: Path, repeats: int = 3) -> dict:
    """Row of the report: seconds of ours / seconds of MONAI's chain on ``image`` (median of interleaved runs)."""
    chain = monai_chain(cfg, region)
    ours, theirs = [], []
    for _ in range(repeats):
        start = time.perf_counter()
        chain({"image": str(image), "label": str(label)})
        theirs.append(time.perf_counter() - start)
        out = Path(tempfile.mkdtemp(dir=work, prefix="pre-"))
        start = time.perf_counter()
        preprocess_case(image, label, out / "case", case="bench", dataset="bench", regions=[region], cfg=cfg.preprocess)
        ours.append(time.perf_counter() - start)
    o, t = statistics.median(ours), statistics.median(theirs)
    return {
        "benchmark": "our preprocessing / MONAI chain (seconds per case)",
        "ratio": o / t,
        "goal": "<= 1.5 (ours also validates, splits regions, writes the cache)",
        "ok": o / t <= 1.5,
        "detail": f"ours {o:.2f} s, MONAI LoadImage+Orientation+Spacing+ScaleIntensityRange {t:.2f} s; "
        f"{image.name} ({region}) at {cfg.preprocess.spacing_mm} mm, median of {repeats}",
    }
