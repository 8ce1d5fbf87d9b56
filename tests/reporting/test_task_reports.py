"""Notes of the task tables say how the anomaly map was post-processed."""

from meddiff.config import AnomalyConfig
from meddiff.reporting.task_reports import _anomaly_postprocessing

PAPER = AnomalyConfig(dataset="bmad_liver", timestep=950, organ="liver", smoothing_sigma_mm=0.0, threshold=0.5,
                      cases=0, slices_per_volume=0)  # fmt: skip


def test_table6_note_names_each_deviation_from_the_paper():
    assert _anomaly_postprocessing(PAPER) == "Map post-processing: none (as in the paper)."
    demo = AnomalyConfig(**{**PAPER.__dict__, "smoothing_sigma_mm": 6.0, "remove_organ_offset": True})
    note = _anomaly_postprocessing(demo)
    assert "median" in note and "6 mm" in note and note.count("not in the paper") == 2
