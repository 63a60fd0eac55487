"""The llm-foundry-faithful HF GPT-2 baseline in benchmarks/bench_convert.py: the tokenizer built
offline from gpt2.tiktoken gives tiktoken's ids, and its ConcatTokens rows equal the tiktoken ones."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
RANKS = REPO.parent / "shared" / "data" / "tokenizers" / "gpt2.tiktoken"

pytest.importorskip("transformers")
pytest.importorskip("tokenizers")
pytestmark = pytest.mark.skipif(not RANKS.exists(), reason=f"{RANKS} missing")


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("bench_convert", REPO / "benchmarks" / "bench_convert.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="module")
def hf(bench):
    return bench.build_hf_gpt2(RANKS)


TEXTS = [
    "Hello world",
    "The quick brown fox jumps over the lazy dog.",
    "I'm sure they'll say it's 12345 or 3.14159, isn't it?\n\n\tIndented  double  spaces   \n",
    "Unicode: naïve café, 東京, Ελληνικά, emoji 🙂🚀 and  trailing   ",
    "def f(x):\n    return x ** 2  # comment\n",
]


def test_hf_gpt2_matches_tiktoken(bench, hf):
    from slwdata.tokenizers import load_tokenizer

    tok = load_tokenizer("gpt2")
    assert hf("Hello world")["input_ids"] == [15496, 995]
    assert hf.eos_token_id == tok.eos_id == 50256
    for text in TEXTS:
        assert hf(text, truncation=False, padding=False)["input_ids"] == tok.enc.encode_ordinary(text), text
        assert hf.decode(tok.enc.encode_ordinary(text)) == text


def test_derive_merges_one_per_token(bench):
    from tiktoken.load import load_tiktoken_bpe

    ranks = load_tiktoken_bpe(str(RANKS))
    merges = bench._derive_merges(ranks)
    assert len(merges) == len(ranks) - 256
    by_rank = sorted((r, b) for b, r in ranks.items() if len(b) > 1)
    assert all(a + b == tok for (a, b), (_, tok) in zip(merges, by_rank))


def test_hf_baseline_rows_equal_tiktoken_baseline(bench, hf, tmp_path):
    from slwdata.tokenizers import load_tokenizer

    corpus = tmp_path / "corpus"
    corpus.mkdir()
    (corpus / "00.jsonl").write_text(
        "".join(json.dumps({"text": TEXTS[i % len(TEXTS)] * (i + 1)}) + "\n" for i in range(30))
    )
    tok = load_tokenizer("gpt2")
    n_tt = bench.baseline_concat_tokens(corpus, str(tmp_path / "tt"), tok, 32)
    n_hf = bench.baseline_concat_tokens_hf(corpus, str(tmp_path / "hf"), hf, 32)
    assert n_tt == n_hf > 10

    # Same rows in the same order -> MDSWriter writes byte-identical shards and index.
    files = sorted(p.name for p in (tmp_path / "tt").iterdir())
    assert files == sorted(p.name for p in (tmp_path / "hf").iterdir()) and "index.json" in files
    for name in files:
        assert (tmp_path / "tt" / name).read_bytes() == (tmp_path / "hf" / name).read_bytes(), name
