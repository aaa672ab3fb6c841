"""Name -> ranker class registry (`@register_ranker`), in the style of lm-eval-harness."""
from __future__ import annotations

from dataclasses import dataclass

from .capabilities import check_declared
from .errors import unknown_name


@dataclass(frozen=True)
class RankerSpec:
    name: str
    cls: type
    kind: str  # "lexical" | "interaction" | "transformer" | "baseline"
    trainable: bool


RANKERS: dict[str, RankerSpec] = {}


def register_ranker(name: str, kind: str, trainable: bool = True):
    """Class decorator: register a `Ranker` subclass under `name`."""

    def deco(cls):
        check_declared(cls.capabilities, f"ranker {name}")
        cls.name, cls.kind = name, kind
        RANKERS[name] = RankerSpec(name, cls, kind, trainable)
        return cls

    return deco


def ranker_spec(name: str) -> RankerSpec:
    if name not in RANKERS:
        raise unknown_name("ranker", name, RANKERS)
    return RANKERS[name]
