"""Token -> word mapping (cxrbench.attention.word_token_spans) for CLIP BPE, WordPiece and SentencePiece.

Every tokenizer is built here from a handful of vocabulary entries, so the tests need no files from
elsewhere. The vocabularies split "effusion" into two pieces and leave "pleural" whole (or the other
way round), so a word made of several tokens is always covered.
"""

from __future__ import annotations

import json
import string
from pathlib import Path

import pytest

from cxrbench.attention import query_token_indices, word_token_spans

PROMPT = "Small right pleural effusion."
LENGTH = 12


def _word_tokens(spans, prompt: str, text: str) -> tuple[int, ...]:
    (span,) = [w for w in spans.words if prompt[w.start:w.end] == text]
    return span.tokens


def write_clip_vocab(folder: Path, words: dict[str, list[str]]) -> Path:
    """vocab.json + merges.txt of a CLIP BPE that turns each word into the given pieces.

    Pieces end in ``</w>`` at the end of a word, as in CLIP; every letter and '.' / ',' is in the
    vocabulary on its own, so any lowercase text tokenizes.
    """
    folder.mkdir(parents=True, exist_ok=True)
    alphabet = string.ascii_lowercase + ".,"
    vocab: dict[str, int] = {}
    for symbol in [*alphabet, *(c + "</w>" for c in alphabet)]:
        vocab.setdefault(symbol, len(vocab))
    merges = []
    for pieces in words.values():
        for piece in pieces:
            symbols = list(piece.removesuffix("</w>"))
            if piece.endswith("</w>"):
                symbols[-1] += "</w>"
            merged = symbols[0]
            for symbol in symbols[1:]:
                merges.append(f"{merged} {symbol}")
                merged += symbol
                vocab.setdefault(merged, len(vocab))
    for special in ("<|startoftext|>", "<|endoftext|>"):
        vocab[special] = len(vocab)
    (folder / "vocab.json").write_text(json.dumps(vocab))
    (folder / "merges.txt").write_text("#version: 0.2\n" + "\n".join(merges) + "\n")
    return folder


CLIP_WORDS = {"small": ["small</w>"], "right": ["right</w>"], "pleural": ["pleural</w>"],
              "effusion": ["eff", "usion</w>"]}


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    from transformers import CLIPTokenizer

    folder = write_clip_vocab(tmp_path_factory.mktemp("clip"), CLIP_WORDS)
    # As Stable Diffusion's tokenizer: pads with the end-of-text token.
    return CLIPTokenizer.from_pretrained(str(folder), model_max_length=LENGTH, pad_token="<|endoftext|>")


@pytest.fixture(scope="module")
def bert(tmp_path_factory):
    from transformers import BertTokenizerFast

    folder = tmp_path_factory.mktemp("bert")
    tokens = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "small", "right", "pl", "##eur", "##al",
              "effusion", "."]
    (folder / "vocab.txt").write_text("\n".join(tokens) + "\n")
    return BertTokenizerFast.from_pretrained(str(folder))


@pytest.fixture(scope="module")
def sentencepiece():
    """A T5-style Unigram tokenizer (Metaspace pre-tokenizer, ``</s>`` appended) from a vocabulary list."""
    from transformers import T5Tokenizer

    pieces = ["\u2581", "\u2581Small", "\u2581right", "pleu", "ral", "\u2581eff", "usion", ".",
              *string.ascii_letters]
    vocab = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0)] + [(p, -1.0) for p in pieces]
    return T5Tokenizer(vocab=vocab, extra_ids=0)


def _pieces(tokenizer, prompt: str = PROMPT) -> list[str]:
    ids = tokenizer(prompt, max_length=LENGTH, truncation=True, padding="max_length")["input_ids"]
    return tokenizer.convert_ids_to_tokens(ids)


def test_clip_bpe_maps_words_and_finds_the_first_end_of_text(clip):
    pieces = _pieces(clip)
    assert pieces[:8] == ["<|startoftext|>", "small</w>", "right</w>", "pleural</w>", "eff", "usion</w>",
                          ".</w>", "<|endoftext|>"]
    assert pieces[8:] == ["<|endoftext|>"] * 4  # padding is the end-of-text token too
    spans = word_token_spans(clip, PROMPT, LENGTH)
    assert _word_tokens(spans, PROMPT, "Small") == (1,)  # CLIP lowercases; offsets still point at "Small"
    assert _word_tokens(spans, PROMPT, "pleural") == (3,)
    assert _word_tokens(spans, PROMPT, "effusion") == (4, 5)
    assert spans.end_token == 7
    assert spans.prompt_tokens == (1, 2, 3, 4, 5, 6) and spans.real_tokens == tuple(range(8))
    assert spans.length == LENGTH


def test_wordpiece_maps_word_pieces_and_finds_sep(bert):
    pieces = _pieces(bert)
    assert pieces[:9] == ["[CLS]", "small", "right", "pl", "##eur", "##al", "effusion", ".", "[SEP]"]
    spans = word_token_spans(bert, PROMPT, LENGTH)
    assert _word_tokens(spans, PROMPT, "pleural") == (3, 4, 5)
    assert _word_tokens(spans, PROMPT, "effusion") == (6,)
    assert spans.end_token == 8 and pieces[spans.end_token] == "[SEP]"
    assert spans.prompt_tokens == tuple(range(1, 8))


def test_sentencepiece_maps_pieces_and_a_lone_word_start_marker(sentencepiece):
    pieces = _pieces(sentencepiece)
    assert pieces[:9] == ["\u2581Small", "\u2581right", "\u2581", "pleu", "ral", "\u2581eff", "usion", ".",
                          "</s>"]
    spans = word_token_spans(sentencepiece, PROMPT, LENGTH)
    assert _word_tokens(spans, PROMPT, "Small") == (0,)  # no start token: the first word is position 0
    assert _word_tokens(spans, PROMPT, "pleural") == (2, 3, 4)
    assert _word_tokens(spans, PROMPT, "effusion") == (5, 6)
    assert spans.end_token == 8 and pieces[spans.end_token] == "</s>"


@pytest.mark.parametrize("name", ["clip", "bert", "sentencepiece"])
def test_decoding_pieces_gives_the_offset_mapping_result(name, request, monkeypatch):
    """The slow-tokenizer path (decode every token and align it) agrees with the offsets."""
    import cxrbench.attention as attention

    tokenizer = request.getfixturevalue(name)
    prompt = "Small right pleural effusions, right Pleural effusion."
    with_offsets = word_token_spans(tokenizer, prompt, 20)
    monkeypatch.setattr(attention, "_offset_char_spans", lambda *args: None)
    decoded = word_token_spans(tokenizer, prompt, 20)
    assert decoded == with_offsets
    assert len(query_token_indices(prompt, ("pleural", "effusion"), decoded)) == 4


def test_a_slow_tokenizer_without_offsets_is_aligned_by_decoding():
    from transformers import ByT5Tokenizer  # pure-Python byte tokenizer: no offset mapping

    tokenizer = ByT5Tokenizer()
    spans = word_token_spans(tokenizer, PROMPT, 40)
    # One token per byte; the space before a word goes with it, as SentencePiece's word-start marker.
    assert _word_tokens(spans, PROMPT, "pleural") == tuple(range(11, 19))
    assert _word_tokens(spans, PROMPT, "effusion") == tuple(range(19, 28))
    assert spans.end_token == len(PROMPT) and spans.length == 40


def test_truncation_keeps_the_remaining_pieces_and_the_end_token(clip, bert):
    spans = word_token_spans(clip, PROMPT, 6)  # <start> small right pleural eff <end>
    assert _word_tokens(spans, PROMPT, "effusion") == (4,)
    assert spans.end_token == 5
    spans = word_token_spans(bert, PROMPT, 5)  # [CLS] small right pl [SEP]
    assert _word_tokens(spans, PROMPT, "pleural") == (3,)
    assert _word_tokens(spans, PROMPT, "effusion") == ()
    assert spans.end_token == 4


def test_an_empty_prompt_has_no_words_and_an_end_token(clip, bert, sentencepiece):
    for tokenizer, end in ((clip, 1), (bert, 1), (sentencepiece, 0)):
        spans = word_token_spans(tokenizer, "", LENGTH)
        assert spans.words == () and spans.prompt_tokens == () and spans.end_token == end
