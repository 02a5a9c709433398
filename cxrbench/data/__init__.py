"""Datasets: every dataset yields ``Sample`` records (see ``schema.py``) by split, and a fingerprint."""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from cxrbench.data.schema import (
    ALL_LABELS,
    FINDING_CLASSES,
    NO_FINDING,
    QUERY_WORDS,
    Box,
    Finding,
    Sample,
    box_mask,
)


@runtime_checkable
class Dataset(Protocol):
    """What the protocol needs of a dataset."""

    name: str

    def split(self, split: str) -> list[Sample]:
        """All samples of ``split`` ("train" or "test"), in a fixed order."""
        ...

    def fingerprint(self) -> str:
        """A content hash of everything the split() calls return (images, reports, boxes)."""
        ...


def left_out(dataset: object) -> dict[str, int]:
    """What a dataset left out, and why: ``{reason: count}`` from its ``skipped`` counter (the real-data
    adapters keep one: rows, studies, findings and boxes), sorted by reason; empty for datasets without."""
    counts = getattr(dataset, "skipped", None) or {}
    return {str(reason): int(n) for reason, n in sorted(counts.items()) if n}


def describe_left_out(name: str, counts: dict[str, int]) -> str:
    """One line for the console: ``dataset NAME left out: 3 box removed by the centre crop; ...``."""
    if not counts:
        return f"dataset {name} left out nothing"
    return f"dataset {name} left out: " + "; ".join(f"{n} {reason}" for reason, n in counts.items())


__all__ = [
    "left_out", "describe_left_out",
    "ALL_LABELS", "FINDING_CLASSES", "NO_FINDING", "QUERY_WORDS", "Box", "Finding", "Sample", "box_mask", "Dataset",
]
