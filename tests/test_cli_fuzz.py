"""Property tests: malformed command lines and suite files end in exit 0 or 2 with one line,
never a traceback (bounded examples so the test fits CI)."""
import json
import shutil
import tempfile
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from suites.cli import main

TMP = Path(tempfile.mkdtemp(prefix="rexbench-fuzz-"))

VALUES = st.one_of(
    st.sampled_from(["bm25", "random", "nosuch", "synthetic", "cranfield", "irds:", "test", "dev", "nope", "q001",
                     "d0001", "1", "0", "-1", "abc", "window=abc", "window=0", "n_steps=-5", "=", "pair:nope",
                     "score", "deletion,nosuch", "cuda", "cpu", "feature_ablation", "gradcam", "exact_match",
                     str(TMP / "out.png"), str(TMP / "out.txt"), str(TMP / "nodir" / "x.png"), str(TMP),
                     "/nonexistent/dir", "\x00", "ünïcödé", ""]),
    st.text(max_size=12),
    st.integers(-10, 10).map(str))
FLAGS = st.sampled_from(["--collection", "--split", "--seed", "--ranker", "--explainer", "--query", "--doc", "--qid",
                         "--docid", "--target", "--metrics", "--param", "--out", "--checkpoint", "--device",
                         "--limit", "--resume", "--overwrite", "--json", "--snippet", "--data-dir", "--doc-file",
                         "--query-file", "--pairs", "--nosuch", "-h"])
COMMANDS = st.sampled_from(["list", "rank", "explain", "run", "report", "floors", "train", "nosuch", ""])
ARGV = st.tuples(COMMANDS, st.lists(st.one_of(FLAGS, VALUES), max_size=8)).map(lambda t: [t[0], *t[1]])


def _safe(argv: list[str]) -> bool:
    """Keep examples cheap: nothing that trains a neural ranker, loads a transformer, runs a bundled
    suite or measures floors (those are valid, slow commands, not malformed input)."""
    if argv[0] in ("train", "floors") and "--pairs" not in argv:
        return False
    if argv[0] == "run" and not any(a.endswith(".toml") for a in argv[1:2]):
        return len(argv) < 2 or argv[1] not in ("quick", "cranfield")
    return True


def _check(argv, capsys) -> None:
    code = main(argv)
    cap = capsys.readouterr()
    assert code in (0, 2), (argv, code, cap.err)
    assert "Traceback" not in cap.err
    if code == 2:
        assert cap.err.count("\n") == 1 and cap.err.startswith("rexbench: error:"), (argv, cap.err)


@settings(max_examples=200, deadline=None, database=None, derandomize=True, suppress_health_check=list(HealthCheck))
@given(argv=ARGV)
def test_cli_never_tracebacks(argv, capsys):
    if argv[0] == "rank" and len(argv) > 1 and argv[1] not in ("bm25", "random"):
        argv[1] = "nosuch"  # only cheap rankers
    if argv[0] == "explain":
        argv = [a if a not in ("knrm", "matchpyramid", "crossencoder", "biencoder") else "nosuch" for a in argv]
        if "--ranker" not in argv:
            argv += ["--ranker", "bm25"]
    if _safe(argv):
        _check(argv, capsys)


BASE = {"suite": {"name": "fz", "collection": "synthetic", "seed": 0},
        "samples": {"queries": 1, "top_k": 1, "relevant": 0},
        "rankers": {"bm25": {}}, "explainers": {"feature_ablation": {}}, "metrics": {"deletion": {"max_steps": 4}}}
KEYS = [("suite", "name"), ("suite", "collection"), ("suite", "seed"), ("suite", "device"), ("suite", "batch_size"),
        ("suite", "bogus"), ("samples", "split"), ("samples", "queries"), ("samples", "top_k"),
        ("samples", "relevant"), ("samples", "contrast_gap"), ("rankers.bm25", "k1"), ("rankers.bm25", "queries"),
        ("rankers.bm25", "checkpoint"), ("rankers.bm25", "train"), ("explainers.feature_ablation", "batch_size"),
        ("explainers.feature_ablation", "perturbations_per_eval"), ("metrics.deletion", "max_steps"),
        ("metrics.deletion", "nosuch"), ("effectiveness", "collections")]
TOML_VALUES = st.one_of(st.integers(-3, 3), st.just(2 ** 40), st.booleans(), st.floats(allow_nan=False, width=32),
                        st.text(max_size=8), st.lists(st.integers(-2, 2), max_size=3), st.sampled_from(["../x", ""]))


def _toml(d: dict) -> str:
    lines = []
    for section, table in d.items():
        if section in ("rankers", "explainers", "metrics"):
            for name, params in table.items():
                lines.append(f"[{section}.{name}]")
                lines += [f"{k} = {json.dumps(v)}" for k, v in params.items()]
        else:
            lines.append(f"[{section}]")
            lines += [f"{k} = {json.dumps(v)}" for k, v in table.items()]
    return "\n".join(lines) + "\n"


@settings(max_examples=100, deadline=None, database=None, derandomize=True, suppress_health_check=list(HealthCheck))
@given(key=st.sampled_from(KEYS), value=TOML_VALUES, garbage=st.one_of(st.none(), st.binary(max_size=40)))
def test_suite_files_never_traceback(key, value, garbage, capsys):
    d = json.loads(json.dumps(BASE))
    section, k = key
    if "." in section:
        top, name = section.split(".")
        d[top][name][k] = value
    else:
        d.setdefault(section, {})[k] = value
    path, out = TMP / "fz.toml", TMP / "fz-out"
    if garbage is not None:
        path.write_bytes(garbage)
    else:
        path.write_text(_toml(d), encoding="utf-8")
    _check(["run", str(path), "--out", str(out), "--overwrite", "--quiet"], capsys)
    shutil.rmtree(out, ignore_errors=True)
