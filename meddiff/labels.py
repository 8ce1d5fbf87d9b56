"""The project's one label space: TotalSegmentator's ``total`` task (classes 1..117) plus the
thresholded body (class 118), as in the paper (4.1.2). 0 is background (outside the body).

The body class holds every body voxel that no TotalSegmentator class claims: voxels above
``masks.body_threshold_hu`` (default -500 HU) in the largest connected component, holes filled.
"""

from __future__ import annotations

import functools

REGIONS: tuple[str, ...] = ("han", "chest", "abdomen")
"""Region classes of the region condition c_r, in class-embedding order."""

REGION_NAMES = {"han": "head & neck", "chest": "chest", "abdomen": "abdomen"}

BODY = 118
NUM_CLASSES = 119  # background + 117 TotalSegmentator classes + body
NULL_LABEL = NUM_CLASSES  # the "no anatomy given" token used for condition dropout / unconditional sampling


@functools.cache
def class_names() -> dict[int, str]:
    """Index -> name for all 118 foreground classes (TotalSegmentator ``total`` + ``body``)."""
    from totalsegmentator.map_to_binary import class_map

    names = dict(class_map["total"])
    if len(names) != 117 or max(names) != 117:
        raise RuntimeError(f"unexpected TotalSegmentator class map: {len(names)} classes")
    names[BODY] = "body"
    return names


@functools.cache
def class_index() -> dict[str, int]:
    """Name -> index, the inverse of :func:`class_names`."""
    return {name: idx for idx, name in class_names().items()}


def indices(*names_or_prefixes: str) -> list[int]:
    """Indices of classes whose name equals, or starts with ``prefix_`` for, any argument.

    ``indices("kidney")`` gives kidney_left, kidney_right and both kidney cysts; ``indices("rib")`` all ribs.
    """
    out = []
    for idx, name in class_names().items():
        if any(name == p or name.startswith(p + "_") for p in names_or_prefixes):
            out.append(idx)
    if not out:
        raise KeyError(f"no class matches {names_or_prefixes}")
    return sorted(out)


# Organs whose Dice the paper reports per region (4.1.3), as groups of label-space classes.
DICE_ORGANS: dict[str, dict[str, tuple[str, ...]]] = {
    "han": {"brain": ("brain",), "skull": ("skull",)},
    "chest": {"lung": ("lung",), "heart": ("heart",), "aorta": ("aorta",)},
    "abdomen": {
        "spleen": ("spleen",),
        "kidney": ("kidney_left", "kidney_right"),  # not the cysts (kidney_cyst_*)
        "gallbladder": ("gallbladder",),
        "liver": ("liver",),
        "stomach": ("stomach",),
        "pancreas": ("pancreas",),
        "small_bowel": ("small_bowel",),
        "duodenum": ("duodenum",),
        "colon": ("colon",),
    },
}

# Coarse groups every mask backend finds, the weights-free threshold backend included. The demo's anatomy
# maps come from that backend, so its synthesis Dice is measured on these (reported apart from the paper's
# organ list, which needs TotalSegmentator).
BONE_PREFIXES = ("skull", "vertebrae", "rib", "sternum", "hip", "femur", "humerus", "scapula", "clavicula", "sacrum")
COARSE_GROUPS: dict[str, tuple[str, ...]] = {"lung": ("lung",), "bone": BONE_PREFIXES}
