"""slwdata.tokenizers: offline GPT-2, ordinary encoding of special strings, bytes, errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from slwdata.shards import dtype_for_vocab
from slwdata.tokenizers import TokenizerError, load_tokenizer

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
GPT2_FILE = SHARED / "data" / "tokenizers" / "gpt2.tiktoken"


def test_gpt2_known_answers_offline():
    tok = load_tokenizer("gpt2")
    assert tok.encode_batch(["Hello world", "The quick brown fox jumps over the lazy dog."]) == [
        [15496, 995],
        [464, 2068, 7586, 21831, 18045, 625, 262, 16931, 3290, 13],
    ]
    assert (tok.eos_id, tok.vocab_size) == (50256, 50257)
    assert tok.decode([15496, 995]) == "Hello world"
    assert dtype_for_vocab(tok.vocab_size) == "uint16"


def test_endoftext_in_text_is_ordinary_text_not_eos():
    tok = load_tokenizer("gpt2")
    ids = tok.encode("a<|endoftext|>b")
    assert 50256 not in ids
    assert tok.decode(ids) == "a<|endoftext|>b"
    assert len(ids) > 3
    bt = load_tokenizer("bytes")
    assert 256 not in bt.encode("<|endoftext|>")


def test_tiktoken_file_and_env_override(monkeypatch, tmp_path):
    tok = load_tokenizer(str(GPT2_FILE))
    assert tok.encode("Hello world") == [15496, 995] and tok.eos_id == 50256
    # $SLWDATA_GPT2_TIKTOKEN is used for 'gpt2' when tiktoken cannot download.
    monkeypatch.setenv("SLWDATA_GPT2_TIKTOKEN", str(tmp_path / "missing.tiktoken"))
    import tiktoken

    def no_network(name):
        raise ConnectionError("offline")

    monkeypatch.setattr(tiktoken, "get_encoding", no_network)
    from slwdata import tokenizers as mod

    mod._TIKTOKEN_CACHE.clear()
    with pytest.raises(TokenizerError, match="missing.tiktoken"):
        load_tokenizer("gpt2")
    monkeypatch.setenv("SLWDATA_GPT2_TIKTOKEN", str(GPT2_FILE))
    assert load_tokenizer("gpt2").encode("Hello world") == [15496, 995]
    mod._TIKTOKEN_CACHE.clear()


def test_spec_rebuilds_same_tokenizer():
    tok = load_tokenizer("gpt2")
    again = load_tokenizer(tok.spec)
    assert again.encode("Sequence length warmup") == tok.encode("Sequence length warmup")


def test_bytes_tokenizer():
    tok = load_tokenizer("bytes")
    assert tok.encode("hé") == [104, 195, 169]
    assert (tok.eos_id, tok.vocab_size) == (256, 257)
    assert tok.decode([104, 195, 169]) == "hé"


def test_unknown_tokenizer_is_a_clear_error():
    with pytest.raises(TokenizerError, match="unknown tokenizer 'no-such-tokenizer'"):
        load_tokenizer("no-such-tokenizer")
    with pytest.raises(TokenizerError, match="not found"):
        load_tokenizer("/nonexistent/x.tiktoken")


def test_large_vocab_uses_int32():
    assert dtype_for_vocab(65536) == "uint16"
    assert dtype_for_vocab(100277) == "int32"


def test_hf_local_tokenizer_json(tmp_path):
    tokenizers = pytest.importorskip("tokenizers")
    from tokenizers import models, pre_tokenizers

    vocab = {"<|endoftext|>": 0, "hello": 1, "world": 2, "[UNK]": 3}
    t = tokenizers.Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    t.pre_tokenizer = pre_tokenizers.Whitespace()
    t.save(str(tmp_path / "tokenizer.json"))
    tok = load_tokenizer(str(tmp_path))
    assert tok.kind == "hf" and tok.eos_id == 0
    assert tok.encode("hello world") == [1, 2]


def test_fingerprint_identifies_the_encoding(tmp_path):
    gpt2 = load_tokenizer("gpt2")
    assert load_tokenizer(str(GPT2_FILE)).fingerprint() == gpt2.fingerprint()
    # same file name stem, different merges: a different tokenizer
    lines = GPT2_FILE.read_text().splitlines()
    a, b = lines[300].split(), lines[301].split()
    lines[300], lines[301] = f"{a[0]} {b[1]}", f"{b[0]} {a[1]}"
    other = tmp_path / "gpt2.tiktoken"
    other.write_text("\n".join(lines) + "\n")
    assert load_tokenizer(str(other)).fingerprint() != gpt2.fingerprint()
    assert load_tokenizer("bytes").fingerprint() != gpt2.fingerprint()
