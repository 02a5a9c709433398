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


__all__ = [
    "ALL_LABELS", "FINDING_CLASSES", "NO_FINDING", "QUERY_WORDS", "Box", "Finding", "Sample", "box_mask", "Dataset",
]
