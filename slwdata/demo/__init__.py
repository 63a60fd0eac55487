"""The demo around the core: ``slwdata quickstart`` and what only it and the benchmarks use.

``corpus`` (a small corpus from this Python's standard library), ``models`` (a tiny GPT, plain
and as a Composer model), ``report`` (the quickstart's tables and plots) and ``quickstart``
itself. Nothing in the core (``pacing``, ``truncate``, ``dataset``, ``composer``, ``converters``)
imports from here.

Example::

    from slwdata.demo.models import ComposerGPT
    model = ComposerGPT("tiny", vocab_size=257, block_size=128)
"""
