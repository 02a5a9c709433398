"""The leaderboard's reader-facing text, shared by the markdown and HTML pages.

Paragraphs are plain text in which ``backticks`` mark code; :func:`paragraph_to_html` escapes a paragraph
and turns those spans into ``<code>`` elements.
"""

from __future__ import annotations

import html
import re

#: The command that regenerates the committed leaderboard (CI runs it and diffs the output).
GENERATED_BY = "cxrbench leaderboard --results leaderboard/results --out leaderboard"

TITLE = "cxrbench leaderboard"

INTRODUCTION = (
    "Every entry is a text-to-image model of chest X-rays fine-tuned and evaluated under one track of the "
    "protocol (same data, compute budget and seeds for everyone). Two axes: image fidelity, the FID of "
    "generated against held-out real images in the feature space of the domain evaluator (`fid_domain`, "
    "lower is better), and localization, the pixel-wise AUC-ROC of the finding word's cross-attention map "
    "against the finding's boxes (`loc_word_auc_roc`, higher is better, 0.5 = chance)."
)

HOW_TO_READ: tuple[str, ...] = (
    "Ranking (within a track): Pareto rank first. An entry dominates another when it is at least as good on "
    "both axes and strictly better on one; Pareto rank 1 is the frontier no entry dominates, rank 2 the "
    "frontier of the rest, and so on. Entries lacking either axis are listed last and not ranked (`-`).",
    "Joint score (tie-break within a Pareto rank): each axis min-max normalized over the track's ranked "
    "entries to [0, 1] with 1 = best (lowest FID, highest AUC-ROC), then averaged. It depends on the set of "
    "entries: adding an entry can change the others' scores (never their Pareto ranks). An axis on which "
    "all entries are equal contributes 0.5.",
    "Intervals (95%): with one seed, that seed's bootstrap interval over test samples; with n >= 2 seeds, "
    "mean +- t(0.975, n-1) * sd / sqrt(n) over the per-seed values (seed-to-seed variation). Ranks use the "
    "means only: entries whose intervals overlap may not truly differ.",
    "Other columns: pointing game, CNR and mIoU (GMM threshold) of the finding word's map; EOS-token AUC-ROC "
    "(a value far from the finding word's, often below 0.5, means localization moved into the end-of-text "
    "token); MS-SSIM within each prompt's samples (lower = more diverse); conditional AUROC of the domain "
    "evaluator on the prompted finding. `-` means the model lacks the capability or the value is "
    "unavailable.",
    "Baselines (in italics, rank `baseline`) are scored by the same protocol but not ranked. *box prior "
    "(train)* answers every query with the training set's mean box mask of the finding's class, looking at "
    "neither image nor prompt: an attention map localizes beyond the data's spatial prior only where it "
    "beats this row. *nearest training image* answers every prompt with a real training image whose report "
    "is closest to it (TF-IDF cosine): its FID is what copying the training set scores, the fidelity floor "
    "a generator is measured against; it has no attention, so no localization.",
)

#: Introduces the token-diagnostics table of each track.
TOKEN_DIAGNOSTICS = (
    "Localization of the attention of each token group, side by side: the finding word(s), the end-of-text "
    "(EOS) token, the other prompt words and all prompt tokens together (AUC-ROC and pointing game, "
    "95% intervals as above). The seed paper explains the trade-off this way: a learnable text encoder "
    "moves localization out of the finding word into the EOS and context tokens."
)

NO_RESULTS = (
    "No results yet. Add result files (`cxrbench run ...` writes them) to `leaderboard/results/` and "
    f"regenerate with `{GENERATED_BY}`."
)

_CODE_SPAN = re.compile(r"`([^`]+)`")


def paragraph_to_html(text: str) -> str:
    """Escape ``text`` for HTML and render its backtick spans as ``<code>``."""
    return _CODE_SPAN.sub(lambda m: f"<code>{m.group(1)}</code>", html.escape(text, quote=True))
