"""Contact sheets: a grid of samples with their finding boxes drawn and their reports underneath."""

from __future__ import annotations

import textwrap
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

from cxrbench.data.schema import ALL_LABELS, Sample
from cxrbench.errors import DataError

#: One colour per label in ALL_LABELS order (matplotlib's tab10 without grey).
LABEL_COLOURS: dict[str, str] = dict(zip(ALL_LABELS, (
    "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#bcbd22", "#17becf",
)))


def contact_sheet(
    samples: Sequence[Sample],
    path: str | Path,
    columns: int = 6,
    size: float = 2.4,
    wrap: int = 34,
    dpi: int = 110,
) -> Path:
    """Write a PNG grid of ``samples``: each image in grey (0 black, 1 white), its boxes, its report.

    Args:
        samples: the samples to show, in reading order.
        path: where the PNG goes; parent folders are created.
        columns: tiles per row.
        size: width of one tile in inches (the report text takes extra height below it).
        wrap: characters per line of report text.
        dpi: resolution of the PNG.

    Returns:
        The path written.

    Raises:
        ValueError: if ``samples`` is empty or ``columns`` is not positive.
    """
    if len(samples) == 0:
        raise ValueError("samples must hold at least one sample, but got an empty sequence")
    if columns < 1:
        raise ValueError(f"columns must be a positive integer, but got {columns!r}")
    columns = min(columns, len(samples))
    rows = -(-len(samples) // columns)
    text_lines = max(len(textwrap.wrap(s.report, wrap)) for s in samples)
    text_height = 0.13 * (text_lines + 1)
    tile_height = size + text_height
    fig = Figure(figsize=(columns * size, rows * tile_height), dpi=dpi)
    FigureCanvasAgg(fig)
    for i, sample in enumerate(samples):
        r, c = divmod(i, columns)
        left = c / columns
        bottom = 1.0 - (r * tile_height + size) / (rows * tile_height)
        ax = fig.add_axes((left + 0.004, bottom, 1.0 / columns - 0.008, size / (rows * tile_height)))
        image = np.asarray(sample.image)
        ax.imshow(image, cmap="gray", vmin=0.0, vmax=1.0, interpolation="nearest")
        for finding in sample.findings:
            colour = LABEL_COLOURS.get(finding.label, "#ffffff")
            for box in finding.boxes:
                ax.add_patch(Rectangle((box.x - 0.5, box.y - 0.5), box.w, box.h, fill=False, lw=1.2,
                                       edgecolor=colour))
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_title(", ".join(sample.labels), fontsize=7, pad=2)
        text = "\n".join(textwrap.wrap(sample.report, wrap))
        fig.text(left + 0.5 / columns, bottom - 0.02 / rows, text, ha="center", va="top", fontsize=6.5,
                 family="DejaVu Sans")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=dpi, facecolor="white")
    return path


def pick_per_label(samples: Sequence[Sample], per_label: int) -> list[Sample]:
    """Up to ``per_label`` single-label samples of each label in ``ALL_LABELS`` order, then up to
    ``per_label`` samples with two findings: one of everything, for a contact sheet."""
    picked: list[Sample] = []
    for label in ALL_LABELS:
        picked += [s for s in samples if s.labels == (label,)][:per_label]
    picked += [s for s in samples if len(s.labels) == 2][:per_label]
    return picked


def sheet_samples(name: str, factory: Callable[..., Any], per_label: int, image_size: int, seed: int,
                  root: str | None = None) -> tuple[list[Sample], dict[str, int]]:
    """The samples of a contact sheet of dataset ``name`` (built by its registered ``factory``) and what
    the dataset left out (``cxrbench.data.left_out``).

    A pool of ``max(per_label * 40, 80)`` studies is drawn and ``pick_per_label`` chooses from it. The real
    datasets (``cxrbench.data.adapters``) read the first studies by id of their train and test splits
    from ``root`` (None: their ``CXRBENCH_*_ROOT`` variable); the others are generated with ``n_train``,
    ``n_test`` and ``seed``. When no study has one or two labels, the first studies of the pool are shown.

    Raises:
        DataError: for a dataset that cannot be built with these options, or that has no study.
    """
    from cxrbench.data import left_out
    from cxrbench.data.adapters import DATASET_NAMES

    pool_size = max(per_label * 40, 80)
    if name in DATASET_NAMES:
        params: dict[str, Any] = {"image_size": image_size, "max_samples": pool_size, "root": root}
    else:
        if root is not None:
            raise DataError(f"dataset {name!r} is generated, not read from disk: it takes no --root")
        params = {"n_train": pool_size, "n_test": 0, "image_size": image_size, "seed": seed}
    try:
        dataset = factory(**params)
    except TypeError as exc:
        raise DataError(f"dataset {name!r} cannot be built with {sorted(params)} ({exc})") from None
    pool = dataset.split("train") + (dataset.split("test") if name in DATASET_NAMES else [])
    if not pool:
        raise DataError(f"dataset {name!r} has no study to show")
    samples = pick_per_label(pool, per_label) or list(pool[: max(per_label, 1) * 6])
    return samples, left_out(dataset)


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m cxrbench.data.show OUT.png``: a SynthCXR contact sheet (defaults: the one in docs/img)."""
    import argparse

    from cxrbench.data.synthcxr import SynthCXR

    parser = argparse.ArgumentParser(description="Write a contact sheet of SynthCXR training studies.")
    parser.add_argument("out", type=Path, help="PNG to write")
    parser.add_argument("--n-train", type=int, default=80, help="studies to draw from (default 80)")
    parser.add_argument("--image-size", type=int, default=128)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--per-label", type=int, default=2,
                        help="show this many studies of each label and of two findings (0: all studies in order)")
    parser.add_argument("--columns", type=int, default=5)
    args = parser.parse_args(argv)
    samples = SynthCXR(args.n_train, 0, args.image_size, args.seed).split("train")
    if args.per_label > 0:
        samples = pick_per_label(samples, args.per_label)
    print(contact_sheet(samples, args.out, columns=args.columns))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
