"""The leaderboard's reader-facing text, shared by the markdown and HTML pages.

Paragraphs are plain text in which ``backticks`` mark code and ``*asterisks*`` emphasis (markdown's own
syntax, so the markdown page uses them as they are); :func:`paragraph_to_html` escapes a paragraph and turns
those spans into ``<code>`` and ``<em>`` elements.
"""

from __future__ import annotations

import html
import re

#: Named when the pages were rendered without the command that made them (the Python API).
GENERATED_BY = "cxrbench leaderboard"

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
    "mean +- t(0.975, n-1) * sd / sqrt(n) over the per-seed values (seed-to-seed variation). Each interval "
    "is then cut at the metric's range (AUC-ROC, pointing game, mIoU, MS-SSIM and conditional AUROC lie in "
    "[0, 1], FID is at least 0): the true value lies in that range, so the cut interval covers it whenever "
    "the uncut one does, and an end at 0.000 or 1.000 is such a cut. Ranks use the means only: entries "
    "whose intervals overlap may not truly differ.",
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
    "a generator is measured against; it has no attention, so no localization. *random training image* "
    "answers every request with a real training image drawn at random by the request's seed, ignoring the "
    "prompt: its FID is the real-vs-real floor, the FID two disjoint real sets of the track's sizes score, "
    "under which an FID difference means nothing; its conditional AUROC is chance.",
    "FID and KID depend on the sample sizes: every value is computed on the track's held-out real images "
    "against its generated images (prompts x samples per prompt), and each result states both numbers in "
    "the metric's note. Compare FIDs within a track only.",
)

#: Introduces the token-diagnostics table of each track.
TOKEN_DIAGNOSTICS = (
    "Localization of the attention of each token group, side by side: the finding word(s), the end-of-text "
    "(EOS) token, the other prompt words and all prompt tokens together (AUC-ROC and pointing game, "
    "95% intervals as above). The seed paper explains the trade-off this way: a learnable text encoder "
    "moves localization out of the finding word into the EOS and context tokens."
)

#: Title of the table that sets cxrbench's GMM-based metrics beside the seed pipeline's.
GMM_SEED_TITLE = "GMM-based metrics: converged fit vs the seed pipeline"

#: Introduces that table.
GMM_SEED_TEXT = (
    "The finding word's GMM-based metrics as cxrbench computes them (`loc_word_<metric>`: a two-component "
    "Gaussian mixture fitted until its threshold stops moving) beside the same metrics from the seed "
    "paper's pipeline, step by step (`loc_word_<metric>_seed`: scikit-learn's default fit on the raw "
    "map, orphan pixels removed, the box rectangle around all foreground pixels), each with its 95% interval as above. IoU, mIoU "
    "and box IoU: higher is better. Centre distance: lower is better; cxrbench's is in image diagonals, "
    "the seed pipeline's in pixels of the image (the seed code's unit), so the two are not on one scale."
)

#: Title of the table of metrics that installed plugins register.
PLUGIN_METRICS_TITLE = "Metrics from plugins"

#: Introduces that table.
PLUGIN_METRICS_TEXT = (
    "Metrics registered by installed plugins rather than by cxrbench, each named with the distribution "
    "that registered it (its `source`) and the plugin's description of it, listed under the table. They "
    "play no part in the ranking. Each value is the mean over seeds with its 95% interval as above; the "
    "arrow is the better direction the plugin declares."
)

#: Under the trade-off plot.
FIGURE_CAPTION = (
    "Fidelity against localization, one panel per track, axes fitted to the entries' means. The FID axis "
    "is reversed, so the best corner is the top right. Blue: entries on the Pareto frontier (red step "
    "line), grey: dominated entries; light bars: 95% intervals, cut at the frame where a triangle points "
    "on; dotted: chance localization (AUC-ROC 0.5); dashed and dash-dotted grey: baselines. A letter "
    "stands for a name that does not fit beside its point; the key under the panel says whose it is, and "
    "lists reference lines that fall outside the frame."
)


def fid_sample_sizes(track: object) -> str | None:
    """The sample sizes a track's FID and KID are computed on, from its definition (``None`` when its
    dataset does not fix the number of test studies)."""
    n_real = track.dataset.params.get("n_test")
    if n_real is None:
        return None
    n_generated = track.prompts_for_generation * track.samples_per_prompt
    return (f"FID and KID of this track: {n_real} held-out real images against {n_generated} generated "
            f"({track.prompts_for_generation} prompts x {track.samples_per_prompt} samples).")


def no_results(command: str) -> str:
    return (
        "No results yet. Add result files (`cxrbench run ...` writes them) to the results folder and "
        f"regenerate with `{command}`."
    )


def regenerate_command(results: str, out: str, reports: tuple[str, ...] = ()) -> str:
    """The ``cxrbench leaderboard`` command line with these paths (as the user typed them)."""
    return f"cxrbench leaderboard --results {results} --out {out}" + "".join(f" --report {r}" for r in reports)


_CODE_SPAN = re.compile(r"`([^`]+)`")
_EMPHASIS = re.compile(r"\*([^*\s][^*]*)\*")


def paragraph_to_html(text: str) -> str:
    """Escape ``text`` for HTML; render its backtick spans as ``<code>`` and ``*spans*`` as ``<em>``."""
    parts = _CODE_SPAN.split(html.escape(text, quote=True))
    return "".join(f"<code>{part}</code>" if i % 2 else _EMPHASIS.sub(r"<em>\1</em>", part)
                   for i, part in enumerate(parts))
