"""The nearest-report baseline: for each prompt, a real training image whose report is most like it.

``fit`` keeps the training images and a TF-IDF representation of their reports; ``generate`` returns, for
each prompt, the training image whose report has the highest cosine similarity to the prompt (one of the
tied best, chosen by the image's seed). It draws nothing, so its numbers are references for a generator:

- fidelity: its images are real, so its FID is what a generator reaches by copying the training set (the
  remaining distance is the one between the training and the held-out test images, plus the sampling of a
  finite set of images);
- diversity and conditioning: it memorizes, so its MS-SSIM within a prompt and its conditional AUROC show
  what retrieving a training image by its report alone gives;
- localization: none, since it has no attention (the leaderboard shows "-").

It enters the protocol as a model (``nearest-report``) with the ``generate`` capability only, so the core
scores its images exactly as a diffusion model's; its ``baseline`` label makes the leaderboard show it as
a reference row instead of ranking it.

Text representation (numpy only): lowercase word tokens (``[a-z]+``), unigrams and bigrams of adjacent
tokens, vocabulary = the terms of the training reports; a term's weight is its count in the report times
the smoothed idf ``log((1 + n) / (1 + df)) + 1`` (``n`` reports, ``df`` of them holding the term); every
row is L2-normalized. Prompt terms outside the vocabulary are ignored.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from cxrbench.box_prior import resize_map
from cxrbench.data.schema import Sample
from cxrbench.model import GENERATE, FitContext, Model, SamplerConfig, TrainingBudget

__all__ = ["NearestReportModel", "report_terms", "TIE_TOLERANCE"]

#: Training reports whose cosine similarity is within this of the best are tied candidates.
TIE_TOLERANCE = 1e-9
_WORD = re.compile(r"[a-z]+")


def report_terms(text: str) -> Counter[str]:
    """Counts of the unigrams and bigrams (``"left pneumothorax"``) of ``text``'s lowercase word tokens."""
    words = _WORD.findall(text.lower())
    return Counter([*words, *(f"{a} {b}" for a, b in zip(words, words[1:]))])


class NearestReportModel(Model):
    """Fidelity baseline: the training image whose report is most similar (TF-IDF cosine) to the prompt.

    Ties (reports repeat) are broken by ``np.random.default_rng(seed).integers(len(candidates))`` with the
    image's own seed, so one (prompt, seed) gives one image in any batch, and the samples of one prompt
    spread over its tied training images. A prompt with no known term ties every training image.
    """

    model_id = "nearest-report"
    capabilities = frozenset({GENERATE})
    baseline = "nearest training image"
    description = "Baseline: the training image whose report is most similar (TF-IDF cosine) to the prompt."

    def fit(self, train: Sequence[Sample], budget: TrainingBudget, context: FitContext) -> None:
        size = (context.image_size, context.image_size)
        images = [np.clip(resize_map(np.asarray(s.image, dtype=np.float32), size), 0.0, 1.0) for s in train]
        self.images = np.stack(images).astype(np.float32) if images else np.zeros((0, *size), np.float32)
        counts = [report_terms(s.report) for s in train]
        self.vocabulary = np.asarray(sorted({term for c in counts for term in c}), dtype=str)
        self._index = {term: i for i, term in enumerate(self.vocabulary.tolist())}
        n = len(counts)
        df = np.zeros(len(self._index), dtype=np.float64)
        for c in counts:
            df[[self._index[t] for t in c]] += 1
        self.idf = np.log((1.0 + n) / (1.0 + df)) + 1.0
        # The reports x terms matrix, sparse and stored by term (compressed columns): the reports holding
        # term t are report_ids[term_ptr[t]:term_ptr[t + 1]], with their weights in the same slice of weights.
        terms, reports, weights = [], [], []
        for r, c in enumerate(counts):
            positions, values = self._tfidf(c)
            terms.append(positions)
            reports.append(np.full(len(positions), r, dtype=np.int64))
            weights.append(values)
        terms_all = np.concatenate([np.zeros(0, np.int64), *terms])
        order = np.argsort(terms_all, kind="stable")
        self.term_ptr = np.concatenate([[0], np.cumsum(np.bincount(terms_all, minlength=len(self._index)))])
        self.report_ids = np.concatenate([np.zeros(0, np.int64), *reports])[order]
        self.weights = np.concatenate([np.zeros(0, np.float64), *weights])[order]

    def _tfidf(self, counts: Counter[str]) -> tuple[np.ndarray, np.ndarray]:
        """The L2-normalized TF-IDF vector of term ``counts`` as (term positions, weights); terms outside the
        vocabulary are ignored, and no known term gives empty arrays."""
        known = sorted((self._index[t], k) for t, k in counts.items() if t in self._index)
        positions = np.asarray([position for position, _ in known], dtype=np.int64)
        values = np.asarray([k for _, k in known], dtype=np.float64) * self.idf[positions]
        norm = np.linalg.norm(values)
        return positions, (values / norm if norm > 0 else values)

    def similarities(self, prompt: str) -> np.ndarray:
        """Cosine similarity of ``prompt`` to every training report, in training order."""
        similarity = np.zeros(len(self.images), dtype=np.float64)
        for term, weight in zip(*self._tfidf(report_terms(prompt))):
            start, stop = self.term_ptr[term], self.term_ptr[term + 1]
            similarity[self.report_ids[start:stop]] += weight * self.weights[start:stop]
        return similarity

    def candidates(self, prompt: str) -> np.ndarray:
        """Indices of the training images tied for the most similar report (all of them for a zero vector)."""
        if len(self.images) == 0:
            raise RuntimeError("nearest-report was fitted on no training images")
        similarity = self.similarities(prompt)
        return np.flatnonzero(similarity >= similarity.max() - TIE_TOLERANCE)

    def generate(self, prompts: Sequence[str], seeds: Sequence[int], image_size: int,
                 sampler: SamplerConfig) -> np.ndarray:
        out = np.empty((len(prompts), image_size, image_size), dtype=np.float32)
        for i, (prompt, seed) in enumerate(zip(prompts, seeds)):
            candidates = self.candidates(prompt)
            chosen = candidates[int(np.random.default_rng(seed).integers(len(candidates)))]
            out[i] = np.clip(resize_map(self.images[chosen], (image_size, image_size)), 0.0, 1.0)
        return out

    def save(self, directory: Path) -> bool:
        directory.mkdir(parents=True, exist_ok=True)
        np.savez(directory / "nearest_report.npz", images=self.images, vocabulary=self.vocabulary,
                 idf=self.idf, term_ptr=self.term_ptr, report_ids=self.report_ids, weights=self.weights)
        return True

    def load(self, directory: Path) -> bool:
        path = directory / "nearest_report.npz"
        if not path.exists():
            return False
        with np.load(path) as data:
            self.images, self.vocabulary, self.idf = data["images"], data["vocabulary"], data["idf"]
            self.term_ptr, self.report_ids = data["term_ptr"], data["report_ids"]
            self.weights = data["weights"]
        self._index = {term: i for i, term in enumerate(self.vocabulary.tolist())}
        return True
