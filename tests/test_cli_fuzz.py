"""Property tests: malformed command lines and suite files end in exit 0, 1 or 2 with one line,
never a traceback, and nothing written or removed when the exit is 2 (bounded examples so the
test fits CI). The command lines include engine options (--address, --workers), ranker
parameters, report outputs and storage faults (a damaged database, a file where a directory
belongs)."""
import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from suites.cli import main

TMP = Path(tempfile.mkdtemp(prefix="rexbench-fuzz-"))
FUZZ_SUITE = TMP / "tiny.toml"
FUZZ_SUITE.write_text('[suite]\nname = "tiny"\ncollection = "synthetic"\n[samples]\nqueries = 1\ntop_k = 1\n'
                      'relevant = 0\n[rankers.bm25]\n[explainers.random]\n[metrics.deletion]\nmax_steps = 3\n')
DAMAGED = TMP / "damaged"  # a run directory whose database was truncated
DAMAGED.mkdir()
(DAMAGED / "results.sqlite").write_bytes(b"SQLite format 3\x00" + bytes(range(256)) * 3)
A_FILE = TMP / "afile"  # a file where a directory belongs
A_FILE.write_text("not a directory")
# packed runs that are not: garbage, a truncated gzip, a directory in the file's place, an empty gzip
PACKED = {}
for kind in ("garbage", "truncated", "dir", "empty"):
    d = TMP / f"packed-{kind}"
    d.mkdir()
    gz = d / "results.sqlite.gz"
    if kind == "dir":
        gz.mkdir()
    elif kind == "garbage":
        gz.write_bytes(b"\x1f\x8b\x08" + bytes(range(200)))
    else:
        import gzip
        import random
        data = gzip.compress(b"SQLite format 3\x00" + random.Random(0).randbytes(5000)) if kind == "truncated" \
            else gzip.compress(b"")
        gz.write_bytes(data[: len(data) // 2] if kind == "truncated" else data)
    PACKED[kind] = d
# model directories with files missing: no tokenizer, no config, no weights; a file given as the model
MODELS = {}
for kind in ("no-tokenizer", "no-config", "no-weights"):
    d = TMP / f"model-{kind}"
    d.mkdir()
    if kind != "no-config":
        (d / "config.json").write_text('{"model_type": "bert", "architectures": ["BertForSequenceClassification"]}')
    if kind != "no-tokenizer":
        (d / "vocab.txt").write_text("[PAD]\n[UNK]\n[CLS]\n[SEP]\n[MASK]\nthe\n")
    MODELS[kind] = d

VALUES = st.one_of(
    st.sampled_from(["bm25", "random", "nosuch", "synthetic", "cranfield", "irds:", "test", "dev", "nope", "q001",
                     "d0001", "1", "0", "-1", "abc", "window=abc", "window=0", "n_steps=-5", "=", "pair:nope",
                     "score", "deletion,nosuch", "cuda", "cpu", "feature_ablation", "gradcam", "exact_match",
                     str(TMP / "out.png"), str(TMP / "out.txt"), str(TMP / "nodir" / "x.png"), str(TMP),
                     "/nonexistent/dir", "\x00", "ünïcödé", "",
                     # engine options, ranker parameters, storage faults
                     "foo", "tcp://", "127.0.0.1:notaport", "ucx://127.0.0.1:8786", "tcp://127.0.0.1:1", "2",
                     "1.5", "train=false", "k1=abc", "k1=0.5", "model=/nonexistent", str(FUZZ_SUITE),
                     str(DAMAGED), str(A_FILE), str(A_FILE / "sub"), str(TMP / "fresh-run"),
                     # names with control characters and separators, packed runs, model directories
                     "evil\n", "a|b", "tab\there", "\x1b[31m", *map(str, PACKED.values()),
                     *(f"model={d}" for d in MODELS.values()), f"model={A_FILE}"]),
    st.text(max_size=12),
    st.integers(-10, 10).map(str))
FLAGS = st.sampled_from(["--collection", "--split", "--seed", "--ranker", "--explainer", "--query", "--doc", "--qid",
                         "--docid", "--target", "--metrics", "--param", "--out", "--checkpoint", "--device",
                         "--limit", "--resume", "--overwrite", "--json", "--snippet", "--data-dir", "--doc-file",
                         "--query-file", "--pairs", "--nosuch", "-h", "--address", "--workers", "--ranker-param",
                         "--quiet", "--calibration-run", "--budget", "--allow-code", "--pack"])
COMMANDS = st.sampled_from(["list", "rank", "explain", "run", "report", "floors", "train", "plan", "nosuch", ""])
ARGV = st.tuples(COMMANDS, st.lists(st.one_of(FLAGS, VALUES), max_size=8)).map(lambda t: [t[0], *t[1]])


def _safe(argv: list[str]) -> bool:
    """Keep examples cheap: nothing that trains a neural ranker, loads a transformer, runs a bundled
    suite or measures floors (those are valid, slow commands, not malformed input)."""
    if argv[0] in ("train", "floors") and "--pairs" not in argv:
        return False
    if argv[0] == "run" and not any(a.endswith(".toml") for a in argv[1:2]):
        return len(argv) < 2 or argv[1] not in ("quick", "cranfield")
    if argv[0] == "run" and argv[1] != str(FUZZ_SUITE) and "--workers" in argv:
        return False  # a local cluster per example is a valid, slow command
    if argv[0] == "plan":  # a calibration run of the tiny suite, or reading a run directory: cheap
        return len(argv) > 1 and argv[1] in (str(FUZZ_SUITE), "nosuch.toml", str(TMP))
    return True


def _snapshot() -> dict:
    return {str(p): (hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else "dir")
            for p in sorted(TMP.rglob("*"))}


def _check(argv, capsys) -> int:
    before = _snapshot()
    os.environ["REXBENCH_CONNECT_TIMEOUT"] = "2"
    try:
        code = main(argv)
    finally:
        os.environ.pop("REXBENCH_CONNECT_TIMEOUT", None)
    cap = capsys.readouterr()
    assert code in (0, 1, 2), (argv, code, cap.err)
    assert "Traceback" not in cap.err
    if code in (1, 2):
        assert cap.err.count("\n") == 1 and cap.err.startswith("rexbench: error:"), (argv, cap.err)
    if code == 2:
        assert _snapshot() == before, argv  # nothing written or removed
    else:
        shutil.rmtree(TMP / "fresh-run", ignore_errors=True)
    return code


@settings(max_examples=200, deadline=None, database=None, derandomize=True, suppress_health_check=list(HealthCheck))
@given(argv=ARGV)
def test_cli_never_tracebacks(argv, capsys):
    if argv[0] == "rank" and len(argv) > 1 and argv[1] not in ("bm25", "random"):
        argv[1] = "nosuch"  # only cheap rankers
    if argv[0] in ("explain", "run", "rank", "train"):
        argv = [a if a not in ("knrm", "matchpyramid", "crossencoder", "biencoder") else "nosuch" for a in argv]
    if argv[0] == "explain":
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


OPTION_PAIRS = [["--address", v] for v in ("foo", "tcp://", "127.0.0.1:notaport", "ucx://127.0.0.1:8786",
                                           "tcp://127.0.0.1:1", "[::1]:1", "tcp://127.0.0.1:99999", "")] + \
    [["--workers", v] for v in ("0", "1", "2", "-1", "1.5", "x")] + \
    [["--out", str(p)] for p in (DAMAGED, A_FILE, A_FILE / "sub", TMP / "fresh-run", TMP)] + \
    [["--resume"], ["--overwrite"], ["--limit", "0"], ["--limit", "1"], ["--device", "tpu"], ["--quiet"]]
REPORT_PAIRS = [["--out", str(p)] for p in (TMP, A_FILE, A_FILE / "sub", TMP / "r.md", DAMAGED / "R.md")]


@settings(max_examples=60, deadline=None, database=None, derandomize=True, suppress_health_check=list(HealthCheck))
@given(cmd=st.sampled_from(["run", "report"]), opts=st.lists(st.sampled_from(OPTION_PAIRS + REPORT_PAIRS), max_size=4),
       target=st.sampled_from([DAMAGED, A_FILE, TMP / "fresh-run", TMP]))
def test_engine_and_storage_options_never_traceback(cmd, opts, target, capsys):
    flat = [a for pair in opts for a in pair]
    if cmd == "run":
        if "--workers" in flat and "--address" not in flat:  # a local cluster per example: valid and slow
            return
        argv = ["run", str(FUZZ_SUITE), *(["--out", str(TMP / "fresh-run")] if "--out" not in flat else []), *flat]
    else:
        argv = ["report", str(target), *[a for pair in opts if pair in REPORT_PAIRS for a in pair]]
    _check(argv, capsys)


def test_damaged_runs_and_model_directories_are_one_line(capsys):
    """Each damaged packed run through every command that reads a run directory, and each incomplete model
    directory through explain: exit 2 with one line, nothing written."""
    for d in PACKED.values():
        assert _check(["report", str(d)], capsys) == 2
        assert _check(["plan", str(FUZZ_SUITE), "--calibration-run", str(d)], capsys) == 2
    for d in [*MODELS.values(), A_FILE, TMP / "no-such-model"]:
        assert _check(["explain", "--ranker", "crossencoder", "--ranker-param", f"model={d}", "--ranker-param",
                       "train=false", "--explainer", "occlusion", "--query", "a b", "--doc", "a b c"], capsys) == 2
    for name in ("evil\n", "a|b", "tab\there", "\x1b[31m"):
        path = TMP / "named.toml"
        path.write_text(_toml({**BASE, "suite": {**BASE["suite"], "name": name}}), encoding="utf-8")
        assert _check(["run", str(path), "--out", str(TMP / "fresh-run"), "--quiet"], capsys) == 2
