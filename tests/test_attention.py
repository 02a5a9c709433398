"""Cross-attention capture, extraction and token -> word mapping (cxrbench.attention)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from cxrbench.attention import (
    CrossAttentionCaptureProcessor,
    average_layers,
    capture_cross_attention,
    cross_attention_layers,
    extract_cross_attention,
    query_token_indices,
    token_group_maps,
    token_group_weights,
    word_token_spans,
)
from cxrbench.diffusion.unet import build_unet

TEXT_DIM = 8
TOKENS = 6


@pytest.fixture(scope="module")
def unet():
    torch.manual_seed(0)
    model = build_unet(in_channels=4, cross_attention_dim=TEXT_DIM, block_out_channels=(16, 32),
                       layers_per_block=1, attention_heads=2, norm_num_groups=8)
    return model.eval()


@pytest.fixture(scope="module")
def tokenizer():
    from cxrbench.diffusion.text import load_text_encoder

    return load_text_encoder()[0]


def _inputs(batch: int = 3, height: int = 8, width: int = 8):
    g = torch.Generator().manual_seed(1)
    sample = torch.randn((batch, 4, height, width), generator=g)
    text = torch.randn((batch, TOKENS, TEXT_DIM), generator=g)
    mask = torch.ones((batch, TOKENS), dtype=torch.long)
    mask[:, 4:] = 0  # the last two tokens are padding
    timesteps = torch.tensor([10, 500, 900][:batch])
    return sample, timesteps, text, mask


@pytest.mark.slow
def test_capture_output_matches_default_processor_and_rows_are_distributions(unet):
    sample, t, text, mask = _inputs()
    with torch.no_grad():
        reference = unet(sample, t, encoder_hidden_states=text, encoder_attention_mask=mask).sample
        with capture_cross_attention(unet) as store:
            captured = unet(sample, t, encoder_hidden_states=text, encoder_attention_mask=mask).sample
    torch.testing.assert_close(captured, reference, rtol=1e-4, atol=1e-5)
    for layer, (probabilities,) in store.maps.items():
        assert probabilities.shape[0] == 3 and probabilities.shape[2] == TOKENS
        torch.testing.assert_close(probabilities.sum(-1), torch.ones(probabilities.shape[:2]))
        assert probabilities[..., 4:].abs().max() == 0.0, f"{layer}: padding took attention"
        h, w = store.shapes[layer]
        assert h * w == probabilities.shape[1]


@pytest.mark.slow
def test_only_cross_attention_layers_are_captured(unet):
    sample, t, text, mask = _inputs()
    cross = cross_attention_layers(unet)
    assert cross and all(path.endswith("attn2.processor") for path in cross)
    with torch.no_grad(), capture_cross_attention(unet) as store:
        installed = unet.attn_processors
        unet(sample, t, encoder_hidden_states=text, encoder_attention_mask=mask)
    for path, processor in installed.items():
        assert isinstance(processor, CrossAttentionCaptureProcessor) == (path in cross)
    assert set(store.maps) == {path.removesuffix(".processor") for path in cross}


@pytest.mark.slow
def test_processors_are_restored_after_the_context_and_after_an_error(unet):
    before = unet.attn_processors
    with capture_cross_attention(unet):
        pass
    assert all(unet.attn_processors[k] is v for k, v in before.items())
    with pytest.raises(RuntimeError, match="boom"):
        with capture_cross_attention(unet):
            raise RuntimeError("boom")
    assert all(unet.attn_processors[k] is v for k, v in before.items())


@pytest.mark.slow
def test_layer_grid_follows_a_non_square_input(unet):
    sample, t, text, mask = _inputs(batch=2, height=8, width=16)
    with torch.no_grad(), capture_cross_attention(unet) as store:
        unet(sample, t[:2], encoder_hidden_states=text[:2], encoder_attention_mask=mask[:2])
    assert set(store.shapes.values()) == {(8, 16), (4, 8)}
    assert store.aggregate().shape == (2, TOKENS, 8, 16)


def test_average_layers_resizes_each_layer_and_counts_it_once():
    fine = torch.ones((1, 2, 4, 4))
    coarse = torch.full((1, 2, 2, 2), 3.0)
    out = average_layers({"a": fine, "b": coarse})
    assert out.shape == (1, 2, 4, 4)
    torch.testing.assert_close(out, torch.full((1, 2, 4, 4), 2.0))


@pytest.mark.slow
def test_batched_timestep_extraction_equals_one_forward_per_timestep(unet):
    from diffusers import DDPMScheduler

    scheduler = DDPMScheduler(num_train_timesteps=1000)
    sample, _, text, mask = _inputs()
    timesteps = (820, 500, 180, 100)
    args = (unet, sample, text, timesteps, scheduler, [11, 12, 13])
    batched = extract_cross_attention(*args, encoder_attention_mask=mask)
    sequential = extract_cross_attention(*args, encoder_attention_mask=mask, rows_per_forward=1)
    assert batched.shape == (3, TOKENS, 8, 8)
    assert (batched - sequential).abs().max() <= 1e-5
    # an image's maps depend on its own noise seed, not on the other images of the batch
    alone = extract_cross_attention(unet, sample[1:2], text[1:2], timesteps, scheduler, [12],
                                    encoder_attention_mask=mask[1:2])
    assert (alone[0] - batched[1]).abs().max() <= 1e-5
    other_noise = extract_cross_attention(unet, sample[1:2], text[1:2], timesteps, scheduler, [99],
                                          encoder_attention_mask=mask[1:2])
    assert (other_noise[0] - batched[1]).abs().max() > 1e-4


def _word(prompt: str, spans, text: str):
    (span,) = [w for w in spans.words if prompt[w.start:w.end] == text]
    return span


@pytest.mark.slow
def test_a_word_split_into_word_pieces_maps_to_all_of_them(tokenizer):
    prompt = "Small left pleural effusion. No pneumothorax."
    spans = word_token_spans(tokenizer, prompt, 32)
    ids = tokenizer(prompt, max_length=32, truncation=True, padding="max_length")["input_ids"]
    pieces = tokenizer.convert_ids_to_tokens(ids)
    for text in ("pleural", "pneumothorax", "left"):
        span = _word(prompt, spans, text)
        assert "".join(pieces[i].removeprefix("##") for i in span.tokens) == text
    assert len(_word(prompt, spans, "pneumothorax").tokens) > 1
    assert pieces[spans.end_token] == tokenizer.sep_token
    assert spans.length == 32 and 0 not in spans.prompt_tokens and spans.end_token not in spans.prompt_tokens


@pytest.mark.slow
def test_query_words_match_as_case_insensitive_substrings(tokenizer):
    prompt = "Bilateral Effusions are seen. No pneumothorax."
    spans = word_token_spans(tokenizer, prompt, 32)
    groups = query_token_indices(prompt, ("effusion",), spans)
    assert groups == (_word(prompt, spans, "Effusions").tokens,)
    two = query_token_indices(prompt, ("bilateral", "effusion"), spans)
    assert two == (_word(prompt, spans, "Bilateral").tokens, _word(prompt, spans, "Effusions").tokens)


@pytest.mark.slow
def test_no_matching_word_falls_back_to_all_prompt_tokens(tokenizer):
    prompt = "Heart size is normal."
    spans = word_token_spans(tokenizer, prompt, 16)
    (group,) = query_token_indices(prompt, ("pneumothorax",), spans)
    ids = tokenizer(prompt, max_length=16, truncation=True, padding="max_length")["input_ids"]
    real = [i for i, token in enumerate(ids) if token != tokenizer.pad_token_id]
    assert list(group) == real[1:-1]  # everything between [CLS] and [SEP], punctuation included


@pytest.mark.slow
def test_token_group_weights_average_tokens_per_word_then_words(tokenizer):
    prompt = "Left pleural effusion. Heart normal."
    spans = word_token_spans(tokenizer, prompt, 24)
    weights = token_group_weights(prompt, ("pleural", "effusion"), spans)
    assert set(weights) == {"word", "eos", "other_words", "all_tokens"}
    for name, w in weights.items():
        assert w.shape == (24,) and w.sum() == pytest.approx(1.0), name
    pleural = _word(prompt, spans, "pleural").tokens
    effusion = _word(prompt, spans, "effusion").tokens
    assert weights["word"][list(pleural)].sum() == pytest.approx(0.5)
    assert weights["word"][list(effusion)].sum() == pytest.approx(0.5)
    assert weights["eos"][spans.end_token] == 1.0
    assert weights["other_words"][list(pleural) + list(effusion)].sum() == 0.0
    assert weights["other_words"][list(_word(prompt, spans, "Heart").tokens)].sum() == pytest.approx(1 / 3)


def test_token_group_maps_combine_token_columns_and_upsample():
    attention = torch.arange(4, dtype=torch.float32)[:, None, None].expand(4, 2, 2).clone()
    weights = {"word": np.array([0, 0.5, 0.5, 0], np.float32), "eos": np.array([0, 0, 0, 1], np.float32)}
    maps = token_group_maps(attention, weights, (6, 6))
    assert maps["word"].shape == (6, 6) and maps["word"].dtype == np.float32
    np.testing.assert_allclose(maps["word"], 1.5)
    np.testing.assert_allclose(maps["eos"], 3.0)
