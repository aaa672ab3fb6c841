"""The rooms of the code (ARCHITECTURE.md) hold: imports run one way (rankers < explainers < metrics < suites;
inside suites: stats < data < run < report < the entry points), no module is longer than 500 lines, at most
six modules sit directly in suites/, and every suites sub-package's docstring says what it may import."""
import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
#: a room and the rooms it may import from (besides itself and the standard library / third parties)
MAY_IMPORT = {
    "rankers": set(),
    "explainers": {"rankers"},
    "metrics": {"rankers", "explainers"},
    "suites.stats": {"rankers", "explainers", "metrics"},
    "suites.data": {"rankers", "explainers", "metrics", "suites.stats"},
    "suites.run": {"rankers", "explainers", "metrics", "suites.stats", "suites.data"},
    "suites.report": {"rankers", "explainers", "metrics", "suites.stats", "suites.data", "suites.run"},
    "suites": {"rankers", "explainers", "metrics", "suites.stats", "suites.data", "suites.run", "suites.report"},
}
PACKAGES = ("rankers", "explainers", "metrics", "suites")


def _modules():
    for pkg in PACKAGES:
        for path in sorted((ROOT / pkg).rglob("*.py")):
            yield path, ".".join(path.relative_to(ROOT).with_suffix("").parts)


def _room(module: str) -> str:
    parts = module.split(".")
    if parts[0] != "suites":
        return parts[0]
    if len(parts) >= 2 and f"suites.{parts[1]}" in MAY_IMPORT:
        return f"suites.{parts[1]}"
    return "suites"  # the entry points (cli, api, listing) and the package itself


def _imported(path: Path, module: str) -> set[str]:
    """Every project module `module` imports, anywhere in the file (lazy imports included)."""
    out = set()
    pkg = module.split(".")[:-1] if path.name != "__init__.py" else module.split(".")
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = pkg[: len(pkg) - node.level + 1]
                name = ".".join(base + ([node.module] if node.module else []))
                out |= {name} if node.module else {f"{name}.{a.name}" for a in node.names}
            elif node.module:
                out.add(node.module)
    return {m for m in out if m.split(".")[0] in PACKAGES}


@pytest.mark.parametrize("path, module", list(_modules()), ids=lambda x: str(x) if isinstance(x, str) else "")
def test_imports_run_one_way(path, module):
    room = _room(module)
    for dep in _imported(path, module):
        target = _room(dep)
        assert target == room or target in MAY_IMPORT[room], f"{module} ({room}) imports {dep} ({target})"


def test_no_module_longer_than_500_lines():
    long = {str(p.relative_to(ROOT)): n for p, _ in _modules() if (n := len(p.read_text().splitlines())) > 500}
    assert not long, long


def test_suites_keeps_at_most_six_modules_and_documents_its_rooms():
    top = [p.name for p in (ROOT / "suites").glob("*.py") if p.name != "__init__.py"]
    assert len(top) <= 6, top
    for room in ("data", "run", "report"):
        doc = ast.get_docstring(ast.parse((ROOT / "suites" / room / "__init__.py").read_text()))
        assert doc and "May import" in doc, room
