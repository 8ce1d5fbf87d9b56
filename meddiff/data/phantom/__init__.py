"""The embedded demo CT cohort: synthetic head & neck, chest, abdomen and whole-body scans in HU with
ground-truth anatomy and lesion masks, written as NIfTI like a downloaded dataset.

:mod:`~meddiff.data.phantom.cohort` generates cases and writes the cohort; ``patient`` draws the random
adult; ``canvas`` holds the render grid and drawing primitives; ``body``, ``head``, ``thorax``, ``vessels``,
``abdomen``, ``skeleton`` and ``lesions`` paint the anatomy; ``tissues`` turns tissues into HU. This module
re-exports the names used outside the subpackage.
"""

from meddiff.data.phantom.cohort import (
    LESION_CLASSES,
    ORIENTATIONS,
    PHANTOM_REGIONS,
    ScanGeometry,
    generate_case,
    oriented_image,
    write_cohort,
)
from meddiff.data.phantom.lesions import CONSPICUOUS_TUMOURS, SUBTLE_TUMOURS

__all__ = [
    "CONSPICUOUS_TUMOURS",
    "LESION_CLASSES",
    "ORIENTATIONS",
    "PHANTOM_REGIONS",
    "SUBTLE_TUMOURS",
    "ScanGeometry",
    "generate_case",
    "oriented_image",
    "write_cohort",
]
