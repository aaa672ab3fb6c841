"""What `rexbench list` shows: rankers, explainers (with compatibility), metrics and suites."""
from __future__ import annotations

from pathlib import Path

SUITES_DIR = Path(__file__).resolve().parent


def suite_files() -> list[Path]:
    return sorted(SUITES_DIR.glob("*.toml"))


def listing() -> dict:
    from explainers import EXPLAINERS
    from metrics import METRICS
    from rankers import RANKERS
    from rankers.params import schema_json

    explainers = []
    for name, cls in EXPLAINERS.items():
        bad = {r.name: f"needs {', '.join(a for a in cls.requires if a not in r.cls.provides)}"
               for r in RANKERS.values() if not set(cls.requires) <= set(r.cls.provides)}
        explainers.append({"name": name, "requires": list(cls.requires), "stochastic": cls.stochastic,
                           "incompatible": bad, "params": schema_json(cls.params)})
    return {
        "explainers": explainers,
        "metrics": [{"name": m.name, "direction": m.direction, "range": list(m.range), "unit": m.unit,
                     "curve": m.curve, "params": schema_json(m.params)} for m in METRICS.values()],
        "suites": [{"name": p.stem, "path": str(p)} for p in suite_files()],
    }
