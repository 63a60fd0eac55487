"""Corpus converters: raw or tokenized corpora -> fixed-length zstd MDS shards.

Example::

    >>> from converters import convert
    >>> meta = convert(["../shared/data/corpora/pile-mini"], "/tmp/pile", seq_len=1024)  # doctest: +SKIP
    >>> meta["counts"]["tokens"]                                                      # doctest: +SKIP
    5859234
"""

from converters.pipeline import ConvertError, convert

__all__ = ["convert", "ConvertError"]
