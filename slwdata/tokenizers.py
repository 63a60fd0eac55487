"""Tokenizers by name: ``load_tokenizer(name) -> Tokenizer``.

Every tokenizer exposes ``encode_batch(texts) -> list[list[int]]``, ``decode(ids) -> str``,
``eos_id``, ``vocab_size``, ``name`` and ``kind``. Text is always encoded as *ordinary*
text: a document that contains the string ``"<|endoftext|>"`` gets the tokens of those
characters, never the special EOS id (only the converter appends EOS, once per document).

Names understood by :func:`load_tokenizer`:

- ``"bytes"``: UTF-8 bytes as ids 0-255, EOS 256; needs no files.
- a tiktoken encoding name (``"gpt2"``, ``"r50k_base"``, ``"cl100k_base"``, ...). ``gpt2`` works
  offline: when tiktoken cannot download it, the local file ``$SLWDATA_GPT2_TIKTOKEN`` or
  ``../shared/data/tokenizers/gpt2.tiktoken`` (beside the repository) is used.
- a path to a ``.tiktoken`` rank file (GPT-2 split pattern, ``<|endoftext|>`` = number of ranks).
- ``hf:NAME_OR_PATH`` or a local directory holding ``tokenizer.json``: a Hugging Face tokenizer
  (needs ``transformers`` or ``tokenizers``).

Example::

    >>> tok = load_tokenizer("gpt2")
    >>> tok.encode_batch(["Hello world"])
    [[15496, 995]]
    >>> tok.eos_id, tok.vocab_size
    (50256, 50257)
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Sequence

__all__ = [
    "Tokenizer",
    "ByteTokenizer",
    "TiktokenTokenizer",
    "HFTokenizer",
    "load_tokenizer",
    "TokenizerError",
    "GPT2_PATTERN",
    "default_gpt2_file",
]

# The GPT-2 / r50k_base pre-tokenization split pattern (as in tiktoken_ext.openai_public).
GPT2_PATTERN = r"""'(?:[sdmt]|ll|ve|re)| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""


def _user_error_base() -> type[Exception]:
    try:
        from slwdata.errors import UserError

        return UserError
    except Exception:  # pragma: no cover - cli is always present in this repo
        return ValueError


class TokenizerError(_user_error_base()):  # type: ignore[misc]
    """The tokenizer could not be found or loaded (message says what to do)."""


def default_gpt2_file() -> Path | None:
    """The local GPT-2 rank file: ``$SLWDATA_GPT2_TIKTOKEN`` or ``../shared`` beside the repo."""
    env = os.environ.get("SLWDATA_GPT2_TIKTOKEN")
    if env:
        return Path(env)
    candidate = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "tokenizers" / "gpt2.tiktoken"
    return candidate if candidate.exists() else None


class Tokenizer:
    """Common interface. ``spec`` is a small picklable dict that rebuilds the same tokenizer
    in another process without touching the network (``load_tokenizer(spec)``)."""

    name: str
    kind: str
    eos_id: int
    vocab_size: int
    spec: dict[str, Any]

    def encode_batch(self, texts: Sequence[str], num_threads: int = 1) -> list[list[int]]:
        raise NotImplementedError

    def encode(self, text: str) -> list[int]:
        return self.encode_batch([text])[0]

    def decode(self, ids: Sequence[int]) -> str:
        raise NotImplementedError

    def describe(self) -> dict[str, Any]:
        """The identity recorded in ``slwdata.json``."""
        return {"name": self.name, "kind": self.kind, "vocab_size": self.vocab_size}

    def fingerprint(self) -> str:
        """A hash of what determines the ids (vocabulary, merges, split pattern): two tokenizers
        with the same fingerprint encode every text the same way."""
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name!r} vocab={self.vocab_size} eos={self.eos_id}>"


class ByteTokenizer(Tokenizer):
    """UTF-8 bytes are the ids (0-255); EOS is 256. Example: ``"hi"`` -> ``[104, 105]``."""

    def __init__(self) -> None:
        self.name, self.kind, self.eos_id, self.vocab_size = "bytes", "bytes", 256, 257
        self.spec = {"kind": "bytes"}

    def encode_batch(self, texts: Sequence[str], num_threads: int = 1) -> list[list[int]]:
        # "replace" keeps lone surrogates (legal in JSON strings) from aborting a document.
        return [list(t.encode("utf-8", "replace")) for t in texts]

    def decode(self, ids: Sequence[int]) -> str:
        return bytes(int(i) for i in ids if 0 <= int(i) < 256).decode("utf-8", "replace")

    def fingerprint(self) -> str:
        return "bytes-utf8-eos256"


class TiktokenTokenizer(Tokenizer):
    """A tiktoken ``Encoding``; encodes with ``encode_ordinary`` (special strings stay text)."""

    def __init__(self, encoding: Any, name: str, spec: dict[str, Any]) -> None:
        self.enc = encoding
        self.name = name
        self.kind = "tiktoken"
        self.eos_id = int(encoding.eot_token)
        self.vocab_size = int(encoding.n_vocab)
        self.spec = spec

    def encode_batch(self, texts: Sequence[str], num_threads: int = 1) -> list[list[int]]:
        # tiktoken releases the GIL, so threads help when there are fewer work units than cores.
        if num_threads > 1 and len(texts) > 1:
            return self.enc.encode_ordinary_batch(list(texts), num_threads=num_threads)
        return [self.enc.encode_ordinary(t) for t in texts]

    def decode(self, ids: Sequence[int]) -> str:
        return self.enc.decode([int(i) for i in ids], errors="replace")

    def fingerprint(self) -> str:
        import hashlib

        if getattr(self, "_fingerprint", None) is None:
            h = hashlib.sha256(self.enc._pat_str.encode())
            ranks = self.enc._mergeable_ranks
            h.update(
                b"".join(
                    r.to_bytes(4, "little") + len(t).to_bytes(2, "little") + t
                    for t, r in sorted(ranks.items(), key=lambda kv: kv[1])
                )
            )
            h.update(repr(sorted(self.enc._special_tokens.items())).encode())
            self._fingerprint = h.hexdigest()[:16]
        return self._fingerprint


def _tiktoken_from_file(path: Path, name: str) -> TiktokenTokenizer:
    import tiktoken
    from tiktoken.load import load_tiktoken_bpe

    if not path.is_file():
        raise TokenizerError(f"tiktoken rank file not found: {path}")
    try:
        ranks = load_tiktoken_bpe(str(path))
    except Exception as exc:
        raise TokenizerError(f"cannot read tiktoken rank file {path}: {exc}") from exc
    enc = tiktoken.Encoding(
        name=name, pat_str=GPT2_PATTERN, mergeable_ranks=ranks, special_tokens={"<|endoftext|>": len(ranks)}
    )
    return TiktokenTokenizer(enc, name, {"kind": "tiktoken_file", "path": str(path), "name": name})


class HFTokenizer(Tokenizer):
    """A Hugging Face tokenizer (``transformers.AutoTokenizer`` or a ``tokenizers`` file).

    Note: Hugging Face tokenizers match their added special tokens inside text, so a
    document containing e.g. ``"</s>"`` may encode to the special id; tiktoken and
    ``bytes`` never do.
    """

    def __init__(self, name_or_path: str) -> None:
        self.name, self.kind = name_or_path, "hf"
        self.spec = {"kind": "hf", "name": name_or_path}
        self._tok: Any = None
        self._fast: Any = None
        errors = []
        try:
            from transformers import AutoTokenizer  # type: ignore

            self._tok = AutoTokenizer.from_pretrained(name_or_path)
        except Exception as exc:  # noqa: BLE001 - fall through to the lighter library
            errors.append(f"transformers: {exc}")
        if self._tok is None:
            try:
                from tokenizers import Tokenizer as FastTokenizer  # type: ignore

                p = Path(name_or_path)
                file = p / "tokenizer.json" if p.is_dir() else p
                self._fast = (
                    FastTokenizer.from_file(str(file))
                    if file.is_file()
                    else FastTokenizer.from_pretrained(name_or_path)
                )
            except Exception as exc:  # noqa: BLE001
                errors.append(f"tokenizers: {exc}")
                raise TokenizerError(
                    f"cannot load Hugging Face tokenizer {name_or_path!r} ("
                    + "; ".join(errors)
                    + "). Install 'transformers' or 'tokenizers' and give a local path if offline."
                ) from exc
        if self._tok is not None:
            eos = self._tok.eos_token_id
            self.vocab_size = int(len(self._tok))
        else:
            eos = None
            for cand in ("<|endoftext|>", "</s>", "<eos>", "[SEP]"):
                eos = self._fast.token_to_id(cand)
                if eos is not None:
                    break
            self.vocab_size = int(self._fast.get_vocab_size(with_added_tokens=True))
        if eos is None:
            raise TokenizerError(f"Hugging Face tokenizer {name_or_path!r} has no EOS token")
        self.eos_id = int(eos)
        self.vocab_size = max(self.vocab_size, self.eos_id + 1)

    def encode_batch(self, texts: Sequence[str], num_threads: int = 1) -> list[list[int]]:
        if self._tok is not None:
            return list(self._tok(list(texts), add_special_tokens=False)["input_ids"])
        return [e.ids for e in self._fast.encode_batch(list(texts), add_special_tokens=False)]

    def decode(self, ids: Sequence[int]) -> str:
        ids = [int(i) for i in ids]
        if self._tok is not None:
            return self._tok.decode(ids)
        return self._fast.decode(ids)

    def fingerprint(self) -> str:
        import hashlib

        backend = (
            self._tok.backend_tokenizer
            if self._tok is not None and hasattr(self._tok, "backend_tokenizer")
            else self._fast
        )
        if backend is not None:
            return hashlib.sha256(backend.to_str().encode()).hexdigest()[:16]
        return hashlib.sha256(repr(sorted(self._tok.get_vocab().items())).encode()).hexdigest()[:16]


_TIKTOKEN_CACHE: dict[str, Tokenizer] = {}


def _tiktoken_by_name(name: str) -> Tokenizer:
    import tiktoken

    try:
        enc = tiktoken.get_encoding(name)
        return TiktokenTokenizer(enc, name, {"kind": "tiktoken", "name": name})
    except Exception as exc:  # noqa: BLE001 - usually no network
        if name in ("gpt2", "r50k_base"):
            local = default_gpt2_file()
            if local is not None and local.is_file():
                return _tiktoken_from_file(local, name)
            if os.environ.get("SLWDATA_GPT2_TIKTOKEN"):
                raise TokenizerError(
                    f"tiktoken could not download the {name!r} encoding ({type(exc).__name__}) and "
                    f"SLWDATA_GPT2_TIKTOKEN points to a missing file: {local}"
                ) from exc
            raise TokenizerError(
                f"tiktoken could not download the {name!r} encoding ({type(exc).__name__}) and no "
                "local copy was found: set SLWDATA_GPT2_TIKTOKEN=/path/to/gpt2.tiktoken or pass "
                "--tokenizer /path/to/gpt2.tiktoken"
            ) from exc
        raise TokenizerError(
            f"tiktoken could not load the {name!r} encoding ({type(exc).__name__}: {exc}); "
            "when offline, pass a local .tiktoken file instead"
        ) from exc


def load_tokenizer(name: str | dict[str, Any] | Tokenizer) -> Tokenizer:
    """Return a tokenizer for a name, path, or a ``Tokenizer.spec`` dict (see module doc).

    Example::

        >>> load_tokenizer("bytes").encode_batch(["<|endoftext|>"])[0][:3]
        [60, 124, 101]
    """
    if isinstance(name, Tokenizer):
        return name
    if isinstance(name, dict):
        kind = name.get("kind")
        if kind == "bytes":
            return ByteTokenizer()
        if kind == "tiktoken_file":
            return _tiktoken_from_file(Path(name["path"]), name["name"])
        if kind == "tiktoken":
            return _tiktoken_by_name(name["name"])
        if kind == "hf":
            return HFTokenizer(name["name"])
        raise TokenizerError(f"unknown tokenizer spec {name!r}")
    if not isinstance(name, str) or not name:
        raise TokenizerError(f"tokenizer must be a non-empty name, got {name!r}")
    key = name
    if key in _TIKTOKEN_CACHE:
        return _TIKTOKEN_CACHE[key]
    if name == "bytes":
        tok: Tokenizer = ByteTokenizer()
    elif name.startswith("hf:"):
        tok = HFTokenizer(name[3:])
    elif name.endswith(".tiktoken"):
        p = Path(name).expanduser()
        tok = _tiktoken_from_file(p, p.name[: -len(".tiktoken")])
    else:
        try:
            import tiktoken

            known = set(tiktoken.list_encoding_names())
        except Exception:  # noqa: BLE001
            known = set()
        if name in known:
            tok = _tiktoken_by_name(name)
        elif Path(name).expanduser().exists():
            tok = HFTokenizer(str(Path(name).expanduser()))
        else:
            # No silent network lookup for arbitrary names: HF hub retries take minutes offline.
            raise TokenizerError(
                f"unknown tokenizer {name!r}: use 'bytes', a tiktoken encoding "
                f"({', '.join(sorted(known)) or 'tiktoken is not installed'}), a .tiktoken file, "
                f"'hf:NAME' for a Hugging Face hub tokenizer, or a local tokenizer directory"
            )
    _TIKTOKEN_CACHE[key] = tok
    return tok
