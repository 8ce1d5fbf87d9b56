"""Every quoted row of paper_results appears, with the paper's digits, in the paper's own text of that table."""

import math
import os
import re
from pathlib import Path

import pandas as pd
import pytest

from meddiff.reporting import paper_results as pr

# the paper text is not in the repository (copyright): ../shared/paper beside the checkout, as on CI
PAPER = Path(os.environ.get("MEDDIFF_PAPER_TEXT",
                           Path(__file__).resolve().parents[3] / "shared/paper/meddiff-fm-paper.txt"))  # fmt: skip

# table: (quoted rows, column that opens a group of rows or None, {metric column: decimals printed in the paper})
_GEN = {"MS-SSIM": 4, "LPIPS": 4, "FID": 4, "MMD": 4}
TABLES = {
    3: (lambda: pr.table34_rows(3), "Region", {**_GEN, "Dice": 4}),
    4: (lambda: pr.table34_rows(4), "Region", {**_GEN, "Dice": 4}),
    6: (pr.table6_rows, None, dict.fromkeys(pr.TABLE6_COLUMNS, 4)),
    7: (pr.table7_rows, None, {"PSNR": 3, "SSIM": 3}),
    8: (pr.table8_rows, "Dataset", {**_GEN, "Dice": 2}),
    9: (pr.table9_rows, "Dataset", {"Dice": 2}),
}


def paper_table_lines(text: str, table: int) -> list[str]:
    """The data lines of ``Table <table>:`` in the paper text (after caption and header, up to a blank line or a
    figure), with citation markers such as `` [78]`` (after a space or no-break space) removed."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(f"Table {table}:"))
    body = []
    for line in lines[start + 2:]:
        if not line.strip() or line.startswith("Refer to caption"):
            break
        body.append(re.sub(r"\s\[\d+\]", "", line))
    return body


def quoted_lines(rows: pd.DataFrame, group: str | None, decimals: dict[str, int]) -> list[str]:
    """The rows as the paper prints them: the group label on its first row only, NaN as '-'."""
    out, previous = [], None
    for _, row in rows.iterrows():
        cells = [f"{row[c]:.{d}f}" if not math.isnan(row[c]) else "-" for c, d in decimals.items()]
        label = [row[group]] if group and row[group] != previous else []
        previous = row[group] if group else None
        out.append(" ".join([*label, row["Method"], *cells]))
    return out


@pytest.mark.skipif(not PAPER.is_file(), reason=f"paper text not at {PAPER} (set MEDDIFF_PAPER_TEXT)")
@pytest.mark.parametrize("table", sorted(TABLES))
def test_quoted_rows_are_the_papers_verbatim(table):
    rows, group, decimals = TABLES[table]
    quoted = rows()
    assert set(quoted.columns) >= {"Method", *decimals} and (group is None or group in quoted.columns)
    assert quoted_lines(quoted, group, decimals) == paper_table_lines(PAPER.read_text(encoding="utf-8"), table)


def test_quoted_rows_are_labelled_as_the_papers():
    for table in (7, 8, 9):
        assert set(TABLES[table][0]()["source"]) == {pr.SOURCE_PAPER}
    t8 = pr.table8_rows().set_index(["Dataset", "Method"])
    real = t8.loc[("MED-LN", "Real")]
    assert real["Dice"] == 0.28 and real[list(_GEN)].isna().all()  # the paper's '-': not applicable to real images
    assert t8.loc[("MED-LN", "MedDiff-FM (fine-tune)"), "MMD"] == 0.0183


def test_a_mistyped_quote_fails_the_check():
    rows, group, decimals = TABLES[8]
    wrong = rows()
    wrong.loc[5, "LPIPS"] = 0.0541  # MSD-Liver Med-DDPM: the paper says 0.0540
    text = "Table 8: caption\nheader\n" + "\n".join(quoted_lines(rows(), group, decimals)) + "\n"
    assert quoted_lines(wrong, group, decimals) != paper_table_lines(text, 8)
