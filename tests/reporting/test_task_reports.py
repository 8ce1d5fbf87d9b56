"""Notes of the task tables say how the anomaly map was post-processed."""

from meddiff.config import AnomalyConfig
from meddiff.reporting.paper_results import SOURCE_PAPER, SOURCE_RUN, table6_rows
from meddiff.reporting.task_reports import _anomaly_postprocessing, table6

PAPER = AnomalyConfig(dataset="bmad_liver", timestep=950, organ="liver", smoothing_sigma_mm=0.0, threshold=0.5,
                      cases=0, slices_per_volume=0, remove_organ_offset=False)  # fmt: skip


def test_table6_note_names_each_deviation_from_the_paper():
    assert _anomaly_postprocessing(PAPER) == "Map post-processing: none (as in the paper)."
    demo = AnomalyConfig(**{**PAPER.__dict__, "smoothing_sigma_mm": 6.0, "remove_organ_offset": True})
    note = _anomaly_postprocessing(demo)
    assert "median" in note and "6 mm" in note and note.count("not in the paper") == 2


def test_table6_cites_the_paper_and_appends_this_run():
    cited = table6_rows()
    assert len(cited) == 10 and set(cited["source"]) == {SOURCE_PAPER}
    row = cited.set_index("Method").loc["MedDiff-FM"]
    assert (row["Image AUROC"], row["Pixel AUROC"], row["PRO"], row["Dice"]) == (0.8525, 0.9760, 0.9663, 0.2744)
    assert cited.set_index("Method").loc["SimpleNet", "Pixel AUROC"] == 0.9751
    table = table6({"image_auroc": 0.7, "pixel_auroc": 0.9, "pro": 0.8, "dice": 0.2}, method="MedDiff-FM (this run)")
    assert len(table) == 11 and table.iloc[-1]["Method"] == "MedDiff-FM (this run)"
    assert table.iloc[-1]["Dice"] == 0.2 and table.iloc[-1]["source"] == SOURCE_RUN
