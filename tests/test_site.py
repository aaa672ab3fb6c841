"""`rexbench report DIR --html OUT`: a self-contained static site, driven in headless Chromium (Debian's
`chromium`; `.ci/run` installs it when missing). The page loads without console errors, clicking a column header
sorts the trust matrix, a ranker link opens that ranker's page, and a screenshot is not blank."""
import io
import re
from pathlib import Path

import pytest

from suites.cli import main

from browser import Browser, find_chromium

SUITE = """[suite]
name = "site"
collection = "synthetic"
[samples]
queries = 4
top_k = 1
relevant = 1
[rankers.bm25]
[rankers.len]
type = "callable"
function = "fault_rankers:length"
[explainers.exact_shapley]
[explainers.occlusion]
window = 1
[explainers.feature_ablation]
[explainers.random]
[metrics.rank_deletion]
max_steps = 5
[metrics.rank_insertion]
max_steps = 5
"""


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("site")
    import sys
    sys.path.insert(0, str(Path(__file__).parent))
    (tmp / "s.toml").write_text(SUITE)
    assert main(["run", str(tmp / "s.toml"), "--allow-code", "--out", str(tmp / "run"), "--quiet"]) == 0
    assert main(["report", str(tmp / "run"), "--html", str(tmp / "site")]) == 0
    return tmp / "site"


def test_site_is_static_and_complete(site):
    pages = sorted(site.rglob("*.html"))
    assert [p.relative_to(site).as_posix() for p in pages] == ["index.html", "rankers/bm25.html", "rankers/len.html"]
    for p in pages:
        text = p.read_text()
        assert not re.search(r'(src|href)="(https?:)?//', text), p        # no network resource
        assert "<link" not in text and text.count("<script>") == 1
        for ref in re.findall(r'src="([^"]+)"', text):                    # every image is in the site
            assert (p.parent / ref).is_file(), ref
    index = (site / "index.html").read_text()
    assert 'id="trust-matrix"' in index and 'href="rankers/len.html"' in index
    bm25 = (site / "rankers" / "bm25.html").read_text()
    assert "<h2 id=\"samples\">Samples</h2>" in bm25 and 'class="hl"' in bm25 and 'href="../index.html"' in bm25


def test_report_html_refuses_a_file(tmp_path, capsys):
    (tmp_path / "f").write_text("x")
    assert main(["report", str(tmp_path), "--html", str(tmp_path / "f")]) == 2
    assert "is a file" in capsys.readouterr().err


def test_site_in_headless_chromium(site):
    exe = find_chromium()
    if exe is None:
        pytest.skip("no Chromium here (Debian: apt-get install chromium; .ci/run installs it)")
    b = Browser(exe)
    try:
        b.navigate((site / "index.html").as_uri())
        assert b.evaluate("document.title") == "rexbench results"
        col = b.evaluate("Array.from(document.querySelectorAll('#trust-matrix th')).findIndex("
                         "h => h.textContent === 'nDCG@10')")
        read = ("Array.from(document.querySelectorAll('#trust-matrix tbody tr')).map("
                f"r => parseFloat(r.cells[{col}].textContent))")
        before = b.evaluate(read)
        assert len(before) == 2 and before[0] != before[1]
        b.evaluate(f"document.querySelectorAll('#trust-matrix th')[{col}].click()")
        assert b.evaluate(read) == sorted(before)
        b.evaluate(f"document.querySelectorAll('#trust-matrix th')[{col}].click()")
        assert b.evaluate(read) == sorted(before, reverse=True)
        shot = b.screenshot()
        from PIL import Image
        img = Image.open(io.BytesIO(shot)).convert("RGB")
        assert img.size[0] > 500 and len(img.getcolors(1 << 20) or []) > 20      # text and tables, not blank
        b.click_and_wait("document.querySelector('#trust-matrix a[href=\"rankers/len.html\"]').click()")
        assert b.evaluate("location.pathname").endswith("/rankers/len.html")
        assert b.evaluate("document.querySelector('h1').textContent") == "len"
        assert b.console_errors() == []
    finally:
        b.close()
