"""slwdata: Sequence Length Warmup at scale.

The top-level package stays importable without torch: pacing is plain arithmetic.
Heavier pieces live in submodules (``slwdata.dataset``, ``slwdata.composer``).
"""

__version__ = "0.1.0"
