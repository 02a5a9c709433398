"""Cross-attention capture for diffusers UNets and the token -> word mapping that turns it into maps.

How a diffusion model localizes a phrase (after Dombrowski et al., AAAI 2024; docs/models.md): noise the
*real* image to timestep ``t``, run the UNet once conditioned on its report, read the post-softmax
cross-attention (``attn2``) probabilities of every layer, average heads, bring layers to one resolution,
average over timesteps, layers and the tokens of the query words, upsample to the image.

Three parts, used in this order:

- Capture: ``capture_cross_attention(unet)`` swaps a ``CrossAttentionCaptureProcessor`` into every
  cross-attention layer (self-attention keeps its SDPA processor) and restores the original processors
  on exit. The processor computes the probabilities explicitly with ``attn.get_attention_scores`` and
  records their head average per layer in a ``CrossAttentionStore``. Only post-softmax probabilities
  of attn2 are materialized, by the one softmax that also weights the values.
- Extraction: ``extract_cross_attention`` sends all (image, timestep) pairs through the UNet as one
  batch (optionally in chunks of rows) and returns, per image, the (tokens, h, w) attention averaged
  over layers and timesteps. The store then keeps running sums per image and layer on the UNet's
  device instead of every row's maps, so memory does not grow with the number of timesteps.
- Token mapping: ``word_token_spans`` maps prompt words to token positions for WordPiece, CLIP BPE
  and SentencePiece tokenizers (offset mapping, or aligned decoded pieces for slow tokenizers);
  ``query_token_indices`` and ``token_group_weights`` select the tokens of each token group
  (``cxrbench.model.TOKEN_GROUPS``); ``token_group_maps`` applies them and upsamples.
"""

from __future__ import annotations

import functools
import math
import re
import unicodedata
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


#: Above this many images in one forward, accumulating adds rows one by one instead of by a matrix product.
_MAX_IMAGES_PER_PRODUCT = 8


@dataclass
class CrossAttentionStore:
    """Head-averaged cross-attention probabilities recorded per layer.

    ``maps[layer]`` holds one float tensor (batch, query_pixels, tokens) per forward pass through that
    layer, in call order; ``shapes[layer]`` is the layer's spatial grid (h, w) with h * w = query_pixels.
    ``input_size`` is the (H, W) of the UNet input, used to recover a layer's grid when the layer only
    sees flattened hidden states. Set ``recording`` to False to run the UNet without storing anything.

    Accumulating instead (``accumulate(num_images)``, then ``set_rows`` with the image of every batch
    row before each forward): ``sums[layer]`` (num_images, query_pixels, tokens) adds up each image's
    rows, heads averaged, in float32 on the UNet's device, and ``maps`` stays empty; ``accumulated``
    averages the layers. When a forward holds the rows of a few images (the timesteps of each), one
    matrix product per layer does the head average and the sum over each image's rows (a scatter-add
    over every row is several times slower on CPUs); with many images per forward, rows are added one
    by one.
    """

    maps: dict[str, list[torch.Tensor]] = field(default_factory=dict)
    shapes: dict[str, tuple[int, int]] = field(default_factory=dict)
    input_size: tuple[int, int] | None = None
    recording: bool = True
    sums: dict[str, torch.Tensor] = field(default_factory=dict)
    num_images: int = 0
    #: The image of every row of the current forward (accumulating), else None.
    rows: torch.Tensor | None = None
    _targets: torch.Tensor | None = field(default=None, repr=False)
    _weights: dict[int, torch.Tensor] = field(default_factory=dict, repr=False)

    def _grid(self, layer: str, query_pixels: int, grid: tuple[int, int] | None) -> None:
        self.shapes[layer] = grid if grid is not None else _grid_for(query_pixels, self.input_size)

    def record(self, layer: str, probabilities: torch.Tensor, grid: tuple[int, int] | None) -> None:
        """Store one layer's head-averaged probabilities (batch, query_pixels, tokens)."""
        self.record_heads(layer, probabilities[:, None], grid)

    def record_heads(self, layer: str, per_head: torch.Tensor, grid: tuple[int, int] | None) -> None:
        """Store one layer's probabilities (batch, heads, query_pixels, tokens), averaged over heads."""
        batch, heads, query_pixels, tokens = per_head.shape
        self._grid(layer, query_pixels, grid)
        per_head = per_head.detach()
        if self.rows is None:
            self.maps.setdefault(layer, []).append(per_head.mean(dim=1).float())
            return
        total = self.sums.get(layer)
        if total is None:
            total = torch.zeros((self.num_images, query_pixels, tokens), dtype=torch.float32,
                                device=per_head.device)
            self.sums[layer] = total
        if not self._weights:
            total.index_add_(0, self.rows, per_head.float().mean(dim=1))
            return
        weights = self._weights.get(heads)
        if weights is None:  # (images in this forward, batch * heads): 1 / heads where row b is that image's
            weights = self._weights[-1].repeat_interleave(heads, dim=1) / heads
            self._weights[heads] = weights
        with torch.autocast(per_head.device.type, enabled=False):  # sums stay float32 under autocast
            summed = weights @ per_head.reshape(batch * heads, query_pixels * tokens).float()
        total.index_add_(0, self._targets, summed.view(-1, query_pixels, tokens))

    def accumulate(self, num_images: int) -> None:
        """Switch to running sums over ``num_images`` images (forgetting what was recorded)."""
        self.maps.clear()
        self.sums.clear()
        self.num_images = int(num_images)
        self.rows = None

    def set_rows(self, rows: torch.Tensor) -> None:
        """The image (0 .. num_images - 1) of every batch row of the next forward, on the UNet's device."""
        targets, inverse = torch.unique(rows, return_inverse=True)
        self.rows, self._targets, self._weights = rows, targets, {}
        if len(targets) <= _MAX_IMAGES_PER_PRODUCT:
            onehot = torch.zeros((len(targets), len(rows)), dtype=torch.float32, device=rows.device)
            onehot[inverse, torch.arange(len(rows), device=rows.device)] = 1.0
            self._weights[-1] = onehot

    def accumulated(self, size: tuple[int, int] | None = None) -> torch.Tensor:
        """The layer average of the running sums, (num_images, tokens, h, w) at ``size`` (default: the
        finest layer's grid); divide by the rows per image for the mean."""
        layers = {}
        for layer, total in self.sums.items():
            h, w = self.shapes[layer]
            layers[layer] = total.reshape(total.shape[0], h, w, total.shape[2]).permute(0, 3, 1, 2)
        return average_layers(layers, size)

    def clear(self) -> None:
        """Forget everything recorded so far (the recorded grids stay valid for the next batch)."""
        self.maps.clear()
        self.sums.clear()

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


@functools.lru_cache(maxsize=256)
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
            self.store.record_heads(self.layer, per_head, grid)

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
    chunks to bound memory (same result up to float rounding: 3e-8 for the default track's UNet).
    Only running sums per image and layer are kept (float32, on the UNet's device), so memory does not
    grow with the number of timesteps; ``cxrbench bench extraction`` measures the speed-up over one
    forward per timestep (docs/performance.md).
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

    noise = noise.flatten(0, 1)
    with torch.no_grad(), capture_cross_attention(unet) as store:
        # Running sums per image and layer: the layer average and upsampling are linear, so they are
        # applied once to the sums instead of to every row.
        store.accumulate(n)
        for start in range(0, rows, chunk):
            index = image_of_row[start:start + chunk]
            t = t_rows[start:start + chunk]
            noisy = noise_scheduler.add_noise(clean_samples[index], noise[start:start + chunk], t)
            mask = None if encoder_attention_mask is None else encoder_attention_mask[index]
            store.set_rows(index)
            unet(noisy, t, encoder_hidden_states=encoder_hidden_states[index], encoder_attention_mask=mask)
        total = store.accumulated()
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

    Works for WordPiece (BERT ``##``), byte-level BPE (CLIP ``</w>``, GPT-2 ``Ġ``) and SentencePiece
    (``▁``; T5, LLaMA) tokenizers. Each content token gets a character range of the prompt: from the
    fast tokenizer's ``offset_mapping`` when it has one, otherwise by decoding the tokens one at a time
    and aligning them left to right with the prompt (case- and accent-insensitively, as CLIP and
    uncased BERT normalize). A token belongs to every word whose character range it overlaps, so a word
    split into several pieces maps to all of them; a piece that covers only whitespace (a lone
    SentencePiece ``▁``) belongs to the word that follows it.

    Start/end markers are found with the special-tokens mask, padding with the attention mask (a
    tokenizer without a pad token is padded here). The end-of-text token is the first
    ``eos_token_id`` after the prompt (CLIP ``<|endoftext|>``, which SD's tokenizer also pads with;
    T5 ``</s>``), else the first ``sep_token_id`` (BERT ``[SEP]``), else the first other marker after
    the prompt; None when the tokenizer adds none (LLaMA). Words cut off by truncation keep only the
    tokens that remain.
    """
    ids, attention, special, offsets = _encode_for_spans(tokenizer, prompt, max_length)
    real = [i for i, a in enumerate(attention) if a]
    content = [i for i in real if not special[i]]
    spans = _offset_char_spans(prompt, offsets, content) if offsets is not None else None
    if spans is None:
        spans = _decoded_char_spans(tokenizer, prompt, ids, content)
    spans = {i: _attach_whitespace_piece(prompt, *span) for i, span in spans.items()}
    words = []
    for match in WORD_PATTERN.finditer(prompt):
        start, end = match.span()
        tokens = tuple(i for i in content if spans[i][0] < end and spans[i][1] > start)
        words.append(WordSpan(start, end, tokens))
    return PromptTokenSpans(
        words=tuple(words),
        prompt_tokens=tuple(content),
        end_token=_end_token(tokenizer, ids, real, content, special),
        real_tokens=tuple(real),
        length=len(attention),
    )


def _encode_for_spans(
    tokenizer: Any, prompt: str, max_length: int
) -> tuple[list[int], list[int], list[int], list[tuple[int, int]] | None]:
    """(input_ids, attention_mask, special_tokens_mask, offsets or None), all ``max_length`` long."""
    kwargs: dict[str, Any] = {
        "max_length": max_length, "truncation": True, "return_special_tokens_mask": True,
        "padding": "max_length" if tokenizer.pad_token_id is not None else False,
    }
    try:
        encoded = tokenizer(prompt, return_offsets_mapping=True, **kwargs)
    except NotImplementedError:  # slow tokenizers of transformers 4.x refuse offsets
        encoded = tokenizer(prompt, **kwargs)
    ids = list(encoded["input_ids"])
    attention = list(encoded.get("attention_mask") or [1] * len(ids))
    special = encoded.get("special_tokens_mask")
    if special is None:
        special_ids = set(tokenizer.all_special_ids)
        special = [int(i in special_ids) for i in ids]
    special = list(special)
    offsets = encoded.get("offset_mapping")
    offsets = None if offsets is None else [tuple(o) for o in offsets]
    missing = max_length - len(ids)
    if missing > 0:  # no pad token: pad here, behind a zero attention mask
        ids += [0] * missing
        attention += [0] * missing
        special += [1] * missing
        offsets = None if offsets is None else offsets + [(0, 0)] * missing
    return ids, attention, special, offsets


def _offset_char_spans(
    prompt: str, offsets: Sequence[tuple[int, int]], content: Sequence[int]
) -> dict[int, tuple[int, int]] | None:
    """Character ranges of the content tokens from an offset mapping; None when it is unusable."""
    spans = {i: (int(offsets[i][0]), int(offsets[i][1])) for i in content}
    if any(not 0 <= s <= e <= len(prompt) for s, e in spans.values()):
        return None
    if prompt.strip() and content and all(s == e for s, e in spans.values()):
        return None  # a tokenizer that reports (0, 0) everywhere has no real offsets
    return spans


def _normalized(text: str) -> tuple[str, list[int]]:
    """``text`` lowercased without accents, and for each of its characters the index in ``text``."""
    chars, index = [], []
    for i, char in enumerate(text):
        for c in unicodedata.normalize("NFKD", char).lower():
            if not unicodedata.combining(c):
                chars.append(c)
                index.append(i)
    return "".join(chars), index


#: Word-boundary markers of subword vocabularies: CLIP end of word, SentencePiece and GPT-2 byte-level
#: word start (WordPiece's ``##`` continuation prefix is removed separately).
_PIECE_MARKERS = ("</w>", "\u2581", "\u0120")


def _piece_text(tokenizer: Any, token_id: int) -> str:
    """The prompt text one token stands for, without word-boundary markers or whitespace."""
    text = tokenizer.decode([token_id], skip_special_tokens=False, clean_up_tokenization_spaces=False)
    text = text.strip().removeprefix("##")
    for marker in _PIECE_MARKERS:
        text = text.replace(marker, "")
    return "".join(text.split())


def _decoded_char_spans(
    tokenizer: Any, prompt: str, ids: Sequence[int], content: Sequence[int]
) -> dict[int, tuple[int, int]]:
    """Character ranges of the content tokens by decoding each and aligning it with the prompt.

    Tokens are matched left to right after a cursor. Tokens whose text is not found (unknown-token
    markers, partial UTF-8 bytes) share out the text between their matched neighbours: one word or
    punctuation run each, in order, the last taking the rest.
    """
    norm, index = _normalized(prompt)
    spans: dict[int, tuple[int, int]] = {}
    unmatched: list[list[int]] = []  # runs of consecutive content tokens without a match
    cursor = 0
    previous_matched = True
    for i in content:
        key = _normalized(_piece_text(tokenizer, ids[i]))[0]
        found = norm.find(key, cursor) if key else -1
        if found < 0:
            if previous_matched:
                unmatched.append([])
            unmatched[-1].append(i)
            previous_matched = False
            continue
        stop = found + len(key)
        spans[i] = (index[found], index[stop - 1] + 1)
        cursor = stop
        previous_matched = True
    order = {i: k for k, i in enumerate(content)}
    for run in unmatched:
        before = [spans[i][1] for i in content[:order[run[0]]] if i in spans]
        after = [spans[i][0] for i in content[order[run[-1]] + 1:] if i in spans]
        gap_start, gap_end = (before[-1] if before else 0), (after[0] if after else len(prompt))
        units = [m.span() for m in _GAP_UNIT.finditer(prompt, gap_start, gap_end)]
        for k, i in enumerate(run):
            if k >= len(units):
                spans[i] = (gap_end, gap_end)
            elif k == len(run) - 1:
                spans[i] = (units[k][0], units[-1][1])
            else:
                spans[i] = units[k]
    return spans


#: What an unaligned token stands for: a word or a run of punctuation.
_GAP_UNIT = re.compile(r"\w+|[^\w\s]+")


def _attach_whitespace_piece(prompt: str, start: int, end: int) -> tuple[int, int]:
    """A range that covers only whitespace (or nothing) moves onto the next non-space character."""
    if prompt[start:end].strip():
        return start, end
    following = start
    while following < len(prompt) and prompt[following].isspace():
        following += 1
    return (following, following + 1) if following < len(prompt) else (start, end)


def _end_token(
    tokenizer: Any, ids: Sequence[int], real: Sequence[int], content: Sequence[int], special: Sequence[int]
) -> int | None:
    """Position of the end-of-text token: first eos, else first sep, else first other marker after
    the prompt (see ``word_token_spans``)."""
    after = [i for i in real if i > content[-1]] if content else list(real)
    for wanted in (tokenizer.eos_token_id, tokenizer.sep_token_id):
        if wanted is not None:
            for i in after:
                if ids[i] == wanted:
                    return i
    starts = {tokenizer.bos_token_id, tokenizer.cls_token_id} - {None}
    markers = [i for i in after if special[i] and ids[i] not in starts]
    return markers[0] if markers else None


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
