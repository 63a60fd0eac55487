"""Automated SLW tuning (the paper's Section 4): find ``s`` and ``T`` from short trials.

``slwdata tune CONFIG`` on the command line; in Python, :func:`search` over a trial callable
(a runner from :mod:`slwdata.tune.runners`, or your own).

Example::

    >>> from slwdata.tune import ExampleTrainerTrials, SearchSpace, search   # doctest: +SKIP
"""

from slwdata.tune.runners import ComposerFactoryTrials, ExampleTrainerTrials, TuneSetupError
from slwdata.tune.search import Curve, SearchSpace, TrialCache, TuneResult, first_fluctuation, search

__all__ = [
    "search",
    "SearchSpace",
    "Curve",
    "TuneResult",
    "TrialCache",
    "first_fluctuation",
    "ExampleTrainerTrials",
    "ComposerFactoryTrials",
    "TuneSetupError",
]
