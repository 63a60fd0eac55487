"""Corpus converters: raw or tokenized corpora -> fixed-length zstd MDS shards."""
