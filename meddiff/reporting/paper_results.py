"""Every number quoted from the paper (Yu et al., MedDiff-FM), in one place, with one label for its source.

Quotes, never computed here: rows built from them carry ``source =`` :data:`SOURCE_PAPER`, rows a run measured
:data:`SOURCE_RUN`. Table 3 (ablation) and Table 4 (synthesis vs DDPM and MAISI) are on the paper's test sets of
its pre-training data, Table 5 on Mayo 2016 (improvements over low dose), Table 6 on BMAD liver (the baselines as
the paper reports them from BMAD), Table 7 on RPLHR-CT (the baselines as the paper reports them from TVSRN [78]),
Tables 8 and 9 on the 20% test splits of MSD-Lung, MSD-Liver, MED-LN and ABD-LN.
"""

from __future__ import annotations

import pandas as pd

SOURCE_PAPER = "paper (cited)"
SOURCE_RUN = "this run"

_METRICS = ("MS-SSIM", "LPIPS", "FID", "MMD", "Dice")

# Paper Table 3 (ablation; incremental components on the patch-level DDPM baseline), quoted verbatim.
_TABLE3 = {
    "HaN": [
        ("patch-level baseline", 0.7227, 0.0185, 0.1973, 0.0513, 0.7491),
        ("+ multi-level integration", 0.7867, 0.0125, 0.1564, 0.0301, 0.8843),
        ("+ position", 0.8049, 0.0132, 0.1101, 0.0293, 0.8923),
        ("+ position embedding", 0.8034, 0.0110, 0.1074, 0.0275, 0.8949),
    ],
    "Chest": [
        ("patch-level baseline", 0.7799, 0.0175, 0.3121, 0.1219, 0.4909),
        ("+ multi-level integration", 0.8344, 0.0116, 0.1961, 0.0753, 0.6372),
        ("+ position", 0.8443, 0.0121, 0.1069, 0.0652, 0.6997),
        ("+ position embedding", 0.8480, 0.0130, 0.0749, 0.0648, 0.7076),
    ],
    "Abdomen": [
        ("patch-level baseline", 0.6009, 0.0242, 0.2792, 0.0489, 0.6998),
        ("+ multi-level integration", 0.7256, 0.0148, 0.2130, 0.0325, 0.8318),
        ("+ position", 0.7255, 0.0157, 0.2402, 0.0390, 0.8503),
        ("+ position embedding", 0.7439, 0.0136, 0.2595, 0.0303, 0.8524),
    ],
    "Overall": [
        ("patch-level baseline", 0.7011, 0.0201, 0.1096, 0.0740, 0.6466),
        ("+ multi-level integration", 0.7823, 0.0130, 0.0819, 0.0460, 0.7844),
        ("+ position", 0.7916, 0.0137, 0.0667, 0.0445, 0.8141),
        ("+ position embedding", 0.7984, 0.0125, 0.0655, 0.0409, 0.8183),
    ],
}

# Paper Table 4 (conditional CT volume synthesis vs. DDPM and MAISI), quoted verbatim.
_TABLE4 = {
    "HaN": [
        ("DDPM", 0.7227, 0.0185, 0.1973, 0.0513, 0.7491),
        ("MAISI", 0.6963, 0.0150, 0.1572, 0.0414, 0.8164),
        ("MedDiff-FM", 0.8034, 0.0110, 0.1074, 0.0275, 0.8949),
    ],
    "Chest": [
        ("DDPM", 0.7799, 0.0175, 0.3121, 0.1219, 0.4909),
        ("MAISI", 0.7063, 0.0240, 0.1731, 0.0326, 0.6490),
        ("MedDiff-FM", 0.8480, 0.0130, 0.0749, 0.0648, 0.7076),
    ],
    "Abdomen": [
        ("DDPM", 0.6009, 0.0242, 0.2792, 0.0489, 0.6998),
        ("MAISI", 0.6905, 0.0134, 0.1373, 0.0304, 0.8169),
        ("MedDiff-FM", 0.7439, 0.0136, 0.2595, 0.0303, 0.8524),
    ],
    "Overall": [
        ("DDPM", 0.7011, 0.0201, 0.1096, 0.0740, 0.6466),
        ("MAISI", 0.6977, 0.0175, 0.0764, 0.0348, 0.7608),
        ("MedDiff-FM", 0.7984, 0.0125, 0.0655, 0.0409, 0.8183),
    ],
}


def table34_rows(table: int) -> pd.DataFrame:
    """The paper's Table 3 or Table 4 as a DataFrame with columns
    Region, Method, MS-SSIM, LPIPS, FID, MMD, Dice (MS-SSIM and Dice higher is better, the rest lower)."""
    source = {3: _TABLE3, 4: _TABLE4}.get(table)
    if source is None:
        raise ValueError(f"only Tables 3 and 4 are quoted, not {table}")
    rows = [dict(Region=region, Method=m, **dict(zip(_METRICS, vals, strict=True)))
            for region, entries in source.items() for m, *vals in entries]
    return pd.DataFrame(rows)


# Table 5 of the paper: (method, category, PSNR gain dB, SSIM gain) over each method's LDCT baseline.
# The LDCT baseline itself in [-160, 240] HU (paper 4.3.2): 23.10 dB, SSIM 0.757.
_LDCT_PAPER = (23.10, 0.757)
_TABLE5 = (
    ("RED-CNN", "supervised", 4.55, 0.051),
    ("CTformer", "supervised", 4.66, 0.052),
    ("NLM", "unsupervised", 2.44, 0.032),
    ("BM3D", "unsupervised", 2.73, 0.033),
    ("Noise2Sim", "unsupervised", 4.22, 0.050),
    ("Dn-Dp", "unsupervised", 4.40, 0.049),
    ("MedDiff-FM", "unsupervised", 4.19, 0.059),
)


def table5_rows() -> pd.DataFrame:
    """The paper's Table 5 (improvements over LDCT on Mayo 2016), labelled ``source =`` :data:`SOURCE_PAPER`.

    Quotes, not computed here. The first row is the paper's LDCT baseline in [-160, 240] HU (absolute
    PSNR / SSIM, 4.3.2; the methods' own baselines in other windows are not given); the other rows carry
    only the improvements of Table 5.
    """
    ldct = {"method": "LDCT", "category": "baseline", "psnr": _LDCT_PAPER[0], "ssim": _LDCT_PAPER[1],
            "delta_psnr": 0.0, "delta_ssim": 0.0, "source": SOURCE_PAPER}  # fmt: skip
    rows = [
        {"method": m, "category": c, "delta_psnr": p, "delta_ssim": s, "source": SOURCE_PAPER} for m, c, p, s in _TABLE5
    ]
    return pd.DataFrame([ldct, *rows])


TABLE6_COLUMNS = ("Image AUROC", "Pixel AUROC", "PRO", "Dice")
_TABLE6_CITED = {
    "DRAEM": (0.6995, 0.8745, 0.7929, 0.0938),
    "MKD": (0.6072, 0.9606, 0.9108, 0.1492),
    "RD4AD": (0.6038, 0.9601, 0.9029, 0.1072),
    "STFPM": (0.6175, 0.9118, 0.9062, 0.0887),
    "PaDiM": (0.5078, 0.9094, 0.7679, 0.0450),
    "PatchCore": (0.6028, 0.9643, 0.8775, 0.1049),
    "CFA": (0.6200, 0.9724, 0.9275, 0.1493),
    "CFLOW": (0.5080, 0.9241, 0.8311, 0.0758),
    "SimpleNet": (0.7228, 0.9751, 0.9107, 0.1226),
    "MedDiff-FM": (0.8525, 0.9760, 0.9663, 0.2744),
}


def table6_rows() -> pd.DataFrame:
    """Table 6 of the paper on BMAD liver (baselines as the paper reports them from BMAD, and the paper's
    MedDiff-FM), one row per method."""
    rows = [{"Method": m, **dict(zip(TABLE6_COLUMNS, v)), "source": SOURCE_PAPER} for m, v in _TABLE6_CITED.items()]
    return pd.DataFrame(rows, columns=["Method", *TABLE6_COLUMNS, "source"])


# Paper Table 7, "Super-resolution performance on the RPLHR-CT dataset." (PSNR in dB and SSIM, both higher is
# better; thick 5 mm -> thin 1 mm CT), quoted verbatim.
TABLE7_COLUMNS = ("PSNR", "SSIM")
_TABLE7_CITED = {
    "Bicubic": (33.508, 0.902),
    "ResVox": (37.946, 0.932),
    "MPU-Net": (37.140, 0.924),
    "SAINT": (38.019, 0.933),
    "DA-VSR": (36.672, 0.924),
    "TVSRN": (38.609, 0.936),
    "MedDiff-FM": (37.654, 0.929),
}


def table7_rows() -> pd.DataFrame:
    """Table 7 of the paper on RPLHR-CT, one row per method: Method, PSNR (dB), SSIM, source."""
    rows = [{"Method": m, **dict(zip(TABLE7_COLUMNS, v)), "source": SOURCE_PAPER} for m, v in _TABLE7_CITED.items()]
    return pd.DataFrame(rows, columns=["Method", *TABLE7_COLUMNS, "source"])


# Paper Table 8, "Quantitative comparison of lesion generation performance across four datasets with different kinds
# of lesions.", quoted verbatim; columns as in _METRICS. The paper prints "-" for the generative metrics of the Real
# row (None here, NaN in the DataFrame) and gives Dice to two decimals only.
_TABLE8 = {
    "MSD-Lung": [
        ("Real", None, None, None, None, 0.74),
        ("Med-DDPM", 0.4932, 0.0473, 0.2808, 0.0592, 0.24),
        ("MedDiff-FM (from scratch)", 0.6606, 0.0135, 0.2059, 0.1018, 0.16),
        ("MedDiff-FM (fine-tune)", 0.6731, 0.0136, 0.2332, 0.0998, 0.28),
    ],
    "MSD-Liver": [
        ("Real", None, None, None, None, 0.71),
        ("Med-DDPM", 0.3030, 0.0540, 0.4795, 0.1202, 0.25),
        ("MedDiff-FM (from scratch)", 0.5991, 0.0151, 0.1304, 0.0679, 0.40),
        ("MedDiff-FM (fine-tune)", 0.6121, 0.0138, 0.1690, 0.0727, 0.48),
    ],
    "MED-LN": [
        ("Real", None, None, None, None, 0.28),
        ("Med-DDPM", 0.7002, 0.0170, 0.1023, 0.0508, 0.01),
        ("MedDiff-FM (from scratch)", 0.7946, 0.0059, 0.3057, 0.0538, 0.01),
        ("MedDiff-FM (fine-tune)", 0.7982, 0.0074, 0.1195, 0.0183, 0.22),
    ],
    "ABD-LN": [
        ("Real", None, None, None, None, 0.51),
        ("Med-DDPM", 0.4430, 0.0336, 0.2574, 0.0708, 0.39),
        ("MedDiff-FM (from scratch)", 0.5267, 0.0304, 0.1765, 0.0570, 0.32),
        ("MedDiff-FM (fine-tune)", 0.5802, 0.0211, 0.2425, 0.0594, 0.50),
    ],
}

def table8_rows() -> pd.DataFrame:
    """The paper's Table 8 (lesion generation) with columns Dataset, Method, MS-SSIM, LPIPS, FID, MMD, Dice, source
    (MS-SSIM and Dice higher is better, the rest lower). Dice is that of nnU-Net models trained on real lesions,
    segmenting the lesions of the images (4.1.3); the Real rows carry only Dice (the generative metrics are NaN)."""
    rows = [dict(Dataset=d, Method=m, **dict(zip(_METRICS, vals, strict=True)), source=SOURCE_PAPER)
            for d, entries in _TABLE8.items() for m, *vals in entries]  # fmt: skip
    return pd.DataFrame(rows, columns=["Dataset", "Method", *_METRICS, "source"])


# Paper Table 9, "Quantitative comparison of lesion inpainting performance.", quoted verbatim: Dice per method.
_TABLE9_METHODS = ("Real", "DiffTumor", "MedDiff-FM (from scratch)", "MedDiff-FM (fine-tune)")
_TABLE9 = {
    "MSD-Lung": (0.74, 0.44, 0.42, 0.77),
    "MSD-Liver": (0.71, 0.67, 0.71, 0.71),
    "MED-LN": (0.28, 0.01, 0.30, 0.34),
    "ABD-LN": (0.51, 0.45, 0.51, 0.53),
}


def table9_rows() -> pd.DataFrame:
    """The paper's Table 9 (lesion inpainting) with columns Dataset, Method, Dice, source (Dice higher is better,
    nnU-Net lesion Dice as in Table 8)."""
    rows = [dict(Dataset=d, Method=m, Dice=dice, source=SOURCE_PAPER)
            for d, dices in _TABLE9.items() for m, dice in zip(_TABLE9_METHODS, dices, strict=True)]  # fmt: skip
    return pd.DataFrame(rows, columns=["Dataset", "Method", "Dice", "source"])
