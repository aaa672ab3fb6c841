"""Rankers behind one interface, registered by name (see `rankers.base.Ranker`)."""
from .base import Encoded, Ranker
from .errors import BadInput
from .registry import RANKERS, ranker_spec, register_ranker
from . import bm25  # noqa: F401  (registers)

__all__ = ["BadInput", "CallableRanker", "Encoded", "RANKERS", "Ranker", "ranker_spec", "register_ranker"]
from . import neural  # noqa: F401,E402  (registers knrm, matchpyramid, random)
from . import biencoder, crossencoder  # noqa: F401,E402  (register biencoder, crossencoder; load HF lazily)
from . import generative  # noqa: F401,E402  (registers seq2seq, causal_lm)
from . import late_interaction  # noqa: F401,E402  (registers late_interaction)
from . import callable  # noqa: F401,E402  (registers callable)
from .callable import CallableRanker  # noqa: E402
