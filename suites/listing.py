"""What `rexbench list` shows: rankers, explainers (with compatibility), metrics and suites."""
from __future__ import annotations

from pathlib import Path

SUITES_DIR = Path(__file__).resolve().parent


def suite_path(name: str) -> Path:
    """A suite file path as given, or the bundled suite of that name (`quick`, `cranfield`)."""
    p = Path(name)
    if p.exists() or p.suffix == ".toml":
        return p
    return SUITES_DIR / f"{name}.toml"


def suite_files() -> list[Path]:
    return sorted(SUITES_DIR.glob("*.toml"))


def listing() -> dict:
    from explainers import EXPLAINERS
    from metrics import METRICS
    from rankers import RANKERS
    from rankers.capabilities import CAPABILITIES
    from rankers.params import schema_json

    explainers = []
    for name, cls in EXPLAINERS.items():
        bad = {r.name: why for r in RANKERS.values() for ok, why in [cls.compatible(r.cls)] if not ok}
        explainers.append({"name": name, "requires": [r if isinstance(r, str) else list(r) for r in cls.requires],
                           "stochastic": cls.stochastic, "incompatible": bad, "params": schema_json(cls.params)})
    return {
        "rankers": [{"name": s.name, "kind": s.kind, "trainable": s.trainable, "analyzer": s.cls.analyzer,
                     "capabilities": list(s.cls.capabilities), "removal": s.cls.removal_semantics,
                     "params": schema_json(s.cls.params)}
                    for s in RANKERS.values()],
        "capabilities": [{"name": k, "meaning": v} for k, v in CAPABILITIES.items()],
        "explainers": explainers,
        "metrics": [{"name": m.name, "direction": m.direction, "range": list(m.range), "unit": m.unit,
                     "curve": m.curve, "params": schema_json(m.params)} for m in METRICS.values()],
        "suites": [{"name": p.stem, "path": str(p)} for p in suite_files()],
    }
