"""The joint fidelity/localization leaderboard: ranking, Pareto front and rendering.

``build_leaderboard(records)`` groups result records (``cxrbench.results``) by track and model, aggregates
seeds and ranks each track (Pareto rank on ``fid_domain`` lower-better and ``loc_word_auc_roc``
higher-better, ties broken by a joint score); ``render_leaderboard(records, out_dir)`` writes README.md,
index.html, leaderboard.csv, tradeoff.svg and tradeoff.png; ``check_leaderboard(records, out_dir)`` says
which committed files are stale. See docs/leaderboard.md.

Modules: ``board`` (data and seed aggregation, intervals cut at each metric's range), ``ranking`` (Pareto
rank, joint score), ``columns`` (metrics shown, their ranges and number formats), ``explanation``
(reader-facing text), ``links`` (what the pages link to), ``view`` (what both pages show, computed once),
``templating`` (the Jinja2 environments of the templates in ``templates/``), ``markdown``, ``html_page``
(the two pages, rendering the view), ``csv_table``, ``plot`` (one renderer each), ``labels`` (where the
plot's labels go) and ``render`` (writing and checking the files).
"""

from cxrbench.leaderboard.board import (
    Entry,
    FailedRun,
    Leaderboard,
    MetricSummary,
    TrackBoard,
    build_leaderboard,
    seed_interval,
)
from cxrbench.leaderboard.csv_table import CSV_COLUMNS
from cxrbench.leaderboard.ranking import joint_scores, pareto_ranks
from cxrbench.leaderboard.render import CHECKED_FILES, OUTPUT_FILES, check_leaderboard, render_leaderboard

__all__ = [
    "CHECKED_FILES",
    "CSV_COLUMNS",
    "OUTPUT_FILES",
    "Entry",
    "FailedRun",
    "Leaderboard",
    "MetricSummary",
    "TrackBoard",
    "build_leaderboard",
    "check_leaderboard",
    "joint_scores",
    "pareto_ranks",
    "render_leaderboard",
    "seed_interval",
]
