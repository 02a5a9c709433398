"""Cross-attention capture for diffusers UNets and the token -> word mapping that turns it into maps.

How a diffusion model localizes a phrase (DESIGN.md, after Dombrowski et al., AAAI 2024): noise the
*real* image to timestep ``t``, run the UNet once conditioned on its report, read the post-softmax
cross-attention (``attn2``) probabilities of every layer, average heads, bring layers to one resolution,
average over timesteps, layers and the tokens of the query words, upsample to the image.

Three parts, used in this order:

- Capture: ``capture_cross_attention(unet)`` swaps a ``CrossAttentionCaptureProcessor`` into every
  cross-attention layer (self-attention keeps its SDPA processor) and restores the original processors
  on exit. The processor computes the probabilities explicitly with ``attn.get_attention_scores`` and
  records their head average per layer in a ``CrossAttentionStore``.
- Extraction: ``extract_cross_attention`` sends all (image, timestep) pairs through the UNet as one
  batch (optionally in chunks of rows) and returns, per image, the (tokens, h, w) attention averaged
  over layers and timesteps.
- Token mapping: ``word_token_spans`` maps prompt words to token positions with the fast tokenizer's
  offset mapping; ``query_token_indices`` and ``token_group_weights`` select the tokens of each token
  group (``cxrbench.model.TOKEN_GROUPS``); ``token_group_maps`` applies them and upsamples.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from cxrbench.errors import CxrbenchError

#: Words of a prompt: maximal runs of letters, digits and underscores (split on whitespace/punctuation).
WORD_PATTERN = re.compile(r"\w+")


# --------------------------------------------------------------------------------------------- capture


@dataclass
class CrossAttentionStore:
    """Head-averaged cross-attention probabilities recorded per layer.

    ``maps[layer]`` holds one float tensor (batch, query_pixels, tokens) per forward pass through that
    layer, in call order; ``shapes[layer]`` is the layer's spatial grid (h, w) with h * w = query_pixels.
    ``input_size`` is the (H, W) of the UNet input, used to recover a layer's grid when the layer only
    sees flattened hidden states. Set ``recording`` to False to run the UNet without storing anything.
    """

    maps: dict[str, list[torch.Tensor]] = field(default_factory=dict)
    shapes: dict[str, tuple[int, int]] = field(default_factory=dict)
    input_size: tuple[int, int] | None = None
    recording: bool = True

    def record(self, layer: str, probabilities: torch.Tensor, grid: tuple[int, int] | None) -> None:
        """Store one layer's head-averaged probabilities (batch, query_pixels, tokens)."""
        query_pixels = probabilities.shape[1]
        if grid is None:
            grid = _grid_for(query_pixels, self.input_size)
        self.shapes[layer] = grid
        self.maps.setdefault(layer, []).append(probabilities.detach().float())

    def clear(self) -> None:
        """Forget everything recorded so far (the recorded grids stay valid for the next batch)."""
        self.maps.clear()

    def layer_maps(self) -> dict[str, torch.Tensor]:
        """Each layer's maps as (batch, tokens, h, w); several forwards are concatenated along batch."""
        out = {}
        for layer, chunks in self.maps.items():
            probs = torch.cat(chunks, dim=0)
            h, w = self.shapes[layer]
            out[layer] = probs.reshape(probs.shape[0], h, w, probs.shape[2]).permute(0, 3, 1, 2)
        return out

    def aggregate(self, size: tuple[int, int] | None = None) -> torch.Tensor:
        """The layer average (batch, tokens, h, w) at ``size`` (default: the finest layer's grid)."""
        return average_layers(self.layer_maps(), size)


def average_layers(layer_maps: dict[str, torch.Tensor], size: tuple[int, int] | None = None) -> torch.Tensor:
    """Bring every layer's (batch, tokens, h, w) map to ``size`` bilinearly and average the layers.

    Each layer counts once, whatever its resolution. ``size`` defaults to the finest layer grid.
    """
    if not layer_maps:
        raise CxrbenchError("no cross-attention was recorded: the UNet has no cross-attention layers, or the "
                            "forward pass ran outside capture_cross_attention")
    if size is None:
        size = max((m.shape[-2:] for m in layer_maps.values()), key=lambda s: s[0] * s[1])
    size = (int(size[0]), int(size[1]))
    total = None
    for maps in layer_maps.values():
        if tuple(maps.shape[-2:]) != size:
            maps = F.interpolate(maps, size=size, mode="bilinear", align_corners=False)
        total = maps if total is None else total + maps
    return total / len(layer_maps)


def _grid_for(query_pixels: int, input_size: tuple[int, int] | None) -> tuple[int, int]:
    """The (h, w) with h * w = query_pixels whose aspect ratio is closest to the UNet input's."""
    aspect = 1.0 if input_size is None else input_size[0] / input_size[1]
    best = None
    for h in range(1, query_pixels + 1):
        if query_pixels % h:
            continue
        w = query_pixels // h
        error = abs(math.log(h / w) - math.log(aspect))
        if best is None or error < best[0]:
            best = (error, (h, w))
    return best[1]


class CrossAttentionCaptureProcessor:
    """A diffusers attention processor that computes post-softmax probabilities explicitly.

    It returns what diffusers' ``AttnProcessor`` returns (the same math as the SDPA processor) and, when
    ``store`` is set and recording, stores the probabilities averaged over heads as (batch,
    query_pixels, tokens) under ``layer``. Masked key positions (an ``encoder_attention_mask`` turned
    into a -10000 bias by the UNet) get probability 0 in float32.
    """

    def __init__(self, store: CrossAttentionStore | None, layer: str) -> None:
        self.store = store
        self.layer = layer

    def __call__(
        self,
        attn: Any,
        hidden_states: torch.Tensor,
        encoder_hidden_states: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        temb: torch.Tensor | None = None,
        *args: Any,
        **kwargs: Any,
    ) -> torch.Tensor:
        residual = hidden_states
        if attn.spatial_norm is not None:
            hidden_states = attn.spatial_norm(hidden_states, temb)

        input_ndim = hidden_states.ndim
        grid = None
        if input_ndim == 4:
            batch_size, channels, height, width = hidden_states.shape
            grid = (height, width)
            hidden_states = hidden_states.view(batch_size, channels, height * width).transpose(1, 2)

        context = hidden_states if encoder_hidden_states is None else encoder_hidden_states
        batch_size, key_length, _ = context.shape
        attention_mask = attn.prepare_attention_mask(attention_mask, key_length, batch_size)
        if attn.group_norm is not None:
            hidden_states = attn.group_norm(hidden_states.transpose(1, 2)).transpose(1, 2)

        query = attn.to_q(hidden_states)
        if encoder_hidden_states is None:
            encoder_hidden_states = hidden_states
        elif attn.norm_cross:
            encoder_hidden_states = attn.norm_encoder_hidden_states(encoder_hidden_states)
        key = attn.to_k(encoder_hidden_states)
        value = attn.to_v(encoder_hidden_states)

        query = attn.head_to_batch_dim(query)
        key = attn.head_to_batch_dim(key)
        value = attn.head_to_batch_dim(value)
        # (batch * heads, query_pixels, tokens), batch-major (see Attention.head_to_batch_dim)
        probabilities = attn.get_attention_scores(query, key, attention_mask)
        if self.store is not None and self.store.recording:
            per_head = probabilities.view(batch_size, attn.heads, *probabilities.shape[1:])
            self.store.record(self.layer, per_head.mean(dim=1), grid)

        hidden_states = torch.bmm(probabilities, value)
        hidden_states = attn.batch_to_head_dim(hidden_states)
        hidden_states = attn.to_out[0](hidden_states)
        hidden_states = attn.to_out[1](hidden_states)
        if input_ndim == 4:
            hidden_states = hidden_states.transpose(-1, -2).reshape(batch_size, channels, height, width)
        if attn.residual_connection:
            hidden_states = hidden_states + residual
        return hidden_states / attn.rescale_output_factor


def cross_attention_layers(unet: torch.nn.Module) -> list[str]:
    """Processor paths (``...attn2.processor``) of the UNet's cross-attention layers, in module order."""
    paths = []
    for path in unet.attn_processors:
        module = unet.get_submodule(path.removesuffix(".processor"))
        if getattr(module, "is_cross_attention", False):
            paths.append(path)
    return paths


@contextmanager
def capture_cross_attention(unet: torch.nn.Module) -> Iterator[CrossAttentionStore]:
    """Install capture processors on the cross-attention layers of ``unet``; yield their store.

    Self-attention layers keep their processors. The original processors are restored on exit, also
    when the body raises. Example::

        with capture_cross_attention(unet) as store:
            unet(noisy, t, encoder_hidden_states=text).sample
        maps = store.aggregate()            # (batch, tokens, h, w)
    """
    originals = dict(unet.attn_processors)
    cross = set(cross_attention_layers(unet))
    store = CrossAttentionStore()
    processors = dict(originals)
    for path in cross:
        processors[path] = CrossAttentionCaptureProcessor(store, path.removesuffix(".processor"))

    def remember_input_size(module: torch.nn.Module, args: tuple, kwargs: dict) -> None:
        sample = args[0] if args else kwargs.get("sample")
        if sample is not None:
            store.input_size = (int(sample.shape[-2]), int(sample.shape[-1]))

    hook = unet.register_forward_pre_hook(remember_input_size, with_kwargs=True)
    try:
        unet.set_attn_processor(processors)  # consumes the dict it is given
        yield store
    finally:
        hook.remove()
        unet.set_attn_processor(dict(originals))


# ------------------------------------------------------------------------------------------ extraction


def extraction_noise(seed: int, num_timesteps: int, shape: Sequence[int]) -> torch.Tensor:
    """Fixed noise (num_timesteps, *shape) for one image: one draw per timestep from ``seed``."""
    generator = torch.Generator().manual_seed(int(seed))
    return torch.randn((num_timesteps, *shape), generator=generator)


def extract_cross_attention(
    unet: torch.nn.Module,
    clean_samples: torch.Tensor,
    encoder_hidden_states: torch.Tensor,
    timesteps: Sequence[int],
    noise_scheduler: Any,
    noise_seeds: Sequence[int],
    encoder_attention_mask: torch.Tensor | None = None,
    rows_per_forward: int | None = None,
) -> torch.Tensor:
    """Cross-attention of real images, averaged over layers and timesteps: (images, tokens, h, w).

    Each image (in the UNet's input space, shape (N, C, h, w)) is noised to every timestep with
    ``noise_scheduler.add_noise`` and noise from ``extraction_noise(noise_seeds[i], ...)``, so its maps
    do not depend on which images share the batch. All (image, timestep) rows go through the UNet as one
    batch, conditioned on the image's own text, no guidance; ``rows_per_forward`` splits the rows into
    chunks to bound memory (same result up to float rounding).
    """
    n = clean_samples.shape[0]
    if encoder_hidden_states.shape[0] != n or len(noise_seeds) != n:
        raise CxrbenchError(
            f"clean_samples, encoder_hidden_states and noise_seeds must have one entry per image, but got "
            f"{n}, {encoder_hidden_states.shape[0]} and {len(noise_seeds)}"
        )
    if not timesteps:
        raise CxrbenchError("timesteps must name at least one training-schedule timestep, but got none")
    num_t = len(timesteps)
    rows = n * num_t
    chunk = rows if rows_per_forward is None else max(1, int(rows_per_forward))
    device = clean_samples.device
    noise = torch.stack([extraction_noise(s, num_t, clean_samples.shape[1:]) for s in noise_seeds]).to(device)
    t_rows = torch.tensor(list(timesteps), dtype=torch.long, device=device).repeat(n)
    image_of_row = torch.arange(n, device=device).repeat_interleave(num_t)

    total: torch.Tensor | None = None
    with torch.no_grad(), capture_cross_attention(unet) as store:
        for start in range(0, rows, chunk):
            index = image_of_row[start:start + chunk]
            t = t_rows[start:start + chunk]
            clean = clean_samples[index]
            noisy = noise_scheduler.add_noise(clean, noise.flatten(0, 1)[start:start + chunk], t)
            mask = None if encoder_attention_mask is None else encoder_attention_mask[index]
            store.clear()
            unet(noisy, t, encoder_hidden_states=encoder_hidden_states[index], encoder_attention_mask=mask)
            maps = store.aggregate()
            if total is None:
                total = torch.zeros((n, *maps.shape[1:]), dtype=maps.dtype, device=maps.device)
            total.index_add_(0, index, maps)
    return total / num_t


# ------------------------------------------------------------------------------------- token mapping


@dataclass(frozen=True)
class WordSpan:
    """One prompt word: its character range ``prompt[start:end]`` and the token positions covering it."""

    start: int
    end: int
    tokens: tuple[int, ...]


@dataclass(frozen=True)
class PromptTokenSpans:
    """Where a prompt's words and special tokens sit in its padded token sequence of ``length``.

    ``prompt_tokens``: every non-padding token that is not a start/end marker (words and punctuation).
    ``end_token``: the end-of-text token ([SEP] for WordPiece, <|endoftext|> for CLIP, </s> for T5),
    None when the tokenizer adds none. ``real_tokens``: every non-padding token.
    """

    words: tuple[WordSpan, ...]
    prompt_tokens: tuple[int, ...]
    end_token: int | None
    real_tokens: tuple[int, ...]
    length: int


def word_token_spans(tokenizer: Any, prompt: str, max_length: int) -> PromptTokenSpans:
    """Map the words of ``prompt`` to token positions, as the model tokenizes it (padded to max_length).

    Uses the fast tokenizer's ``offset_mapping``: a token belongs to every word whose character range it
    overlaps, so a word split into several subword pieces (WordPiece ``##``, BPE, SentencePiece ``▁``)
    maps to all of them. Start/end markers are found with ``special_tokens_mask``, padding with the
    attention mask. Words cut off by truncation keep only the tokens that remain.
    """
    try:
        encoded = tokenizer(
            prompt, max_length=max_length, truncation=True, padding="max_length",
            return_offsets_mapping=True, return_special_tokens_mask=True,
        )
    except NotImplementedError as exc:
        raise CxrbenchError(
            f"tokenizer must be a fast tokenizer with offset mappings, but got {type(tokenizer).__name__}"
        ) from exc
    offsets = encoded["offset_mapping"]
    special = encoded["special_tokens_mask"]
    attention = encoded["attention_mask"]
    real = [i for i, a in enumerate(attention) if a]
    content = [i for i in real if not special[i]]
    markers = [i for i in real if special[i]]
    # Markers after the last content token end the text; for an empty prompt the first one starts it.
    trailing = [i for i in markers if i > content[-1]] if content else markers[1:]
    words = []
    for match in WORD_PATTERN.finditer(prompt):
        start, end = match.span()
        tokens = tuple(i for i in content if offsets[i][0] < end and offsets[i][1] > start)
        words.append(WordSpan(start, end, tokens))
    return PromptTokenSpans(
        words=tuple(words),
        prompt_tokens=tuple(content),
        end_token=trailing[0] if trailing else None,
        real_tokens=tuple(real),
        length=len(attention),
    )


def _matches(word: str, query_words: Sequence[str]) -> bool:
    lowered = word.lower()
    return any(q.lower() in lowered for q in query_words if q)


def query_token_indices(
    prompt: str, query_words: Sequence[str], spans: PromptTokenSpans
) -> tuple[tuple[int, ...], ...]:
    """Token positions of the query words, one tuple per matching prompt word.

    A prompt word matches when one of ``query_words`` is a case-insensitive substring of it
    ("effusions" matches "effusion"; ``cxrbench.data.schema.QUERY_WORDS``). When no word matches (or
    truncation removed them), the single group of all prompt tokens except start/end is returned
    (all non-padding tokens for a prompt without any).
    """
    groups = tuple(
        w.tokens for w in spans.words if w.tokens and _matches(prompt[w.start:w.end], query_words)
    )
    if groups:
        return groups
    return (spans.prompt_tokens or spans.real_tokens,)


def _per_word_average(groups: Sequence[Sequence[int]], length: int) -> np.ndarray:
    """Weights that average tokens within each word, then average the words (sum to 1)."""
    weights = np.zeros(length, dtype=np.float32)
    for tokens in groups:
        for i in tokens:
            weights[i] += 1.0 / (len(tokens) * len(groups))
    return weights


def token_group_weights(
    prompt: str, query_words: Sequence[str], spans: PromptTokenSpans
) -> dict[str, np.ndarray]:
    """Token weights (length,) summing to 1 for each token group of ``cxrbench.model.TOKEN_GROUPS``.

    - ``word``: the query words (``query_token_indices``): subword tokens averaged per word, then words
      averaged; no match -> all prompt tokens except start/end.
    - ``eos``: the end-of-text token.
    - ``other_words``: the prompt words that are not query words, averaged the same way as ``word``.
    - ``all_tokens``: all prompt tokens except start/end, averaged.

    A group with no tokens (e.g. ``other_words`` of a one-word prompt) is left out; ``word`` never is.
    """
    length = spans.length
    query_groups = query_token_indices(prompt, query_words, spans)
    weights = {"word": _per_word_average(query_groups, length)}
    if spans.end_token is not None:
        eos = np.zeros(length, dtype=np.float32)
        eos[spans.end_token] = 1.0
        weights["eos"] = eos
    other = [w.tokens for w in spans.words if w.tokens and not _matches(prompt[w.start:w.end], query_words)]
    if other:
        weights["other_words"] = _per_word_average(other, length)
    if spans.prompt_tokens:
        weights["all_tokens"] = _per_word_average([spans.prompt_tokens], length)
    return weights


def token_group_maps(
    attention: torch.Tensor, weights: dict[str, np.ndarray], image_size: tuple[int, int]
) -> dict[str, np.ndarray]:
    """Combine one image's attention (tokens, h, w) with token weights; bilinear-upsample to image_size.

    Returns float32 (H, W) maps, one per group of ``weights`` (see ``token_group_weights``).
    """
    names = list(weights)
    matrix = torch.as_tensor(np.stack([weights[n] for n in names]), dtype=attention.dtype)
    matrix = matrix.to(attention.device)
    if matrix.shape[1] != attention.shape[0]:
        raise CxrbenchError(
            f"token weights must have one entry per attention token ({attention.shape[0]}), "
            f"but got {matrix.shape[1]}"
        )
    combined = torch.einsum("gk,khw->ghw", matrix, attention)
    upsampled = F.interpolate(combined[None], size=tuple(image_size), mode="bilinear", align_corners=False)[0]
    out = upsampled.cpu().numpy().astype(np.float32)
    return {name: out[i] for i, name in enumerate(names)}
