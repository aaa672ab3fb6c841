"""Declared parameter schemas: every ranker, explainer, metric and suite key states its
type, range and default, and every entry point (suite files, `--param`, `rexbench list`)
validates against the same declaration before any work starts."""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Mapping

from .errors import BadInput

_TYPE_NAMES = {int: "int", float: "float", bool: "bool", str: "str", list: "list", dict: "table"}


@dataclass(frozen=True)
class Param:
    """One parameter: accepted `types`, `default`, inclusive bounds `lo`/`hi` (numbers),
    allowed `choices`, whether None is allowed (`nullable`), and a short `doc`."""

    types: tuple[type, ...]
    default: Any = None
    lo: float | None = None
    hi: float | None = None
    choices: tuple | None = None
    nullable: bool = False
    doc: str = ""
    each: "Param | None" = None  # lists: every element is checked against this
    allow_empty: bool = False  # lists: [] is a valid value (else "expected a non-empty list")

    def check(self, where: str, value: Any) -> Any:
        """`value` validated (an int where a float is expected becomes a float); else BadInput."""
        if value is None:
            if self.nullable:
                return None
            raise BadInput(f"{where}: a value is required ({self.describe()})")
        ok = any(isinstance(value, t) and not (t in (int, float) and isinstance(value, bool)) for t in self.types)
        if not ok and float in self.types and isinstance(value, int) and not isinstance(value, bool):
            value, ok = float(value), True
        if not ok:
            raise BadInput(f"{where}: expected {self.type_name()}, got {type(value).__name__} {value!r}")
        if isinstance(value, float) and not math.isfinite(value):
            raise BadInput(f"{where}: expected a finite number, got {value!r}")
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            if (self.lo is not None and value < self.lo) or (self.hi is not None and value > self.hi):
                raise BadInput(f"{where}: {value!r} is out of range {self.range_text()}")
        if isinstance(value, list):
            if self.each is not None:
                value = [self.each.check(f"{where}[{i}]", v) for i, v in enumerate(value)]
            if not value and not self.allow_empty:
                raise BadInput(f"{where}: expected a non-empty list")
        if self.choices is not None and value not in self.choices:
            raise BadInput(f"{where}: {value!r}; allowed: {', '.join(map(str, self.choices))}")
        return value

    def type_name(self) -> str:
        return " or ".join(_TYPE_NAMES.get(t, t.__name__) for t in self.types) + (" or null" if self.nullable else "")

    def range_text(self) -> str:
        lo = "-inf" if self.lo is None else f"{self.lo:g}"
        hi = "inf" if self.hi is None else f"{self.hi:g}"
        return f"[{lo}, {hi}]"

    def describe(self) -> str:
        parts = [self.type_name()]
        if self.lo is not None or self.hi is not None:
            parts.append(f"in {self.range_text()}")
        if self.choices is not None:
            parts.append(f"one of {', '.join(map(str, self.choices))}")
        return ", ".join(parts)

    def to_json(self) -> dict:
        return {"type": self.type_name(), "default": self.default, "range": [self.lo, self.hi],
                "choices": None if self.choices is None else list(self.choices), "doc": self.doc}


def Int(default: int | None, lo: int | None = None, hi: int | None = None, nullable: bool = False,
        doc: str = "") -> Param:
    return Param((int,), default, lo, hi, nullable=nullable, doc=doc)


@dataclass(frozen=True)
class IntOrAuto(Param):
    """An int in [lo, hi], or the string "auto" (resolved later, e.g. per device)."""

    def check(self, where: str, value: Any) -> Any:
        if value == "auto":
            return value
        if isinstance(value, str):
            raise BadInput(f"{where}: expected int or 'auto', got {value!r}")
        return Param.check(self, where, value)

    def type_name(self) -> str:
        return "int or 'auto'"


def Float(default: float | None, lo: float | None = None, hi: float | None = None, doc: str = "") -> Param:
    return Param((float,), default, lo, hi, doc=doc)


def Bool(default: bool, doc: str = "") -> Param:
    return Param((bool,), default, doc=doc)


def Choice(default: str, choices: tuple[str, ...], doc: str = "") -> Param:
    return Param((str,), default, choices=choices, doc=doc)


def Str(default: str | None, nullable: bool = False, doc: str = "") -> Param:
    return Param((str,), default, nullable=nullable, doc=doc)


def check_params(where: str, schema: Mapping[str, Param], values: Mapping[str, Any]) -> dict:
    """Validate `values` against `schema`: unknown keys and bad values are a BadInput naming
    `where`, the key and what is allowed. Returns the validated values (defaults not added)."""
    if not isinstance(values, Mapping):
        raise BadInput(f"{where}: expected a table of parameters")
    out = {}
    for k, v in values.items():
        if k not in schema:
            raise BadInput(f"{where}: unknown parameter {k!r}; allowed: {', '.join(sorted(schema)) or '(none)'}")
        out[k] = schema[k].check(f"{where}.{k}", v)
    return out


def resolved(schema: Mapping[str, Param], values: Mapping[str, Any]) -> dict:
    """Defaults of `schema` overlaid with `values` (all parameters after defaults)."""
    return {**{k: p.default for k, p in schema.items()}, **values}


def schema_json(schema: Mapping[str, Param]) -> dict:
    return {k: p.to_json() for k, p in schema.items()}


#: the trainable rankers' counterfactual training (issue 32): part of every batch has words removed at random
REMOVAL_TRAINING = Float(0.0, lo=0.0, hi=0.95, doc="share of each training batch whose two documents lose a "
                         "uniform-random share of their words by the ranker's own removal operator, the pair's hinge "
                         "loss kept (counterfactual training: partial documents are in distribution when curves "
                         "remove words); the operator trained with is part of the checkpoint's identity; 0 = off")

#: ranker parameters added after runs were first recorded, at the value that means "off" (the computation of
#: every earlier run): left out of a run's fingerprint at that value, so a run recorded before they existed
#: still resumes and calibrates, and a run that sets them is told apart
ADDED_OFF = {"removal_training": 0.0, "kernels": "rbf"}
