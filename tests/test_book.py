"""The notebooks as a book (scripts/build_book.py, make book, #33): it builds offline from the stored outputs, and
in headless Chromium every page loads with no console error and no request outside the site, every figure a
chapter stored is on its page and drawn, the formulas are drawn (MathML made at build time), and the explorer embedded
in a chapter runs.  Skipped, with the reason, where Sphinx or a browser is missing (make test installs both)."""

import importlib.util
import re
from pathlib import Path

import nbformat
import pytest
from test_explore_browser import browser  # noqa: F401 - the module's Chromium fixture

ROOT = Path(__file__).resolve().parent.parent
spec = importlib.util.spec_from_file_location("build_book", ROOT / "scripts/build_book.py")
book = importlib.util.module_from_spec(spec)
spec.loader.exec_module(book)
CHAPTERS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    pytest.importorskip("myst_nb", reason="the book's tools are not installed: pip install -e '.[book]'")
    out = tmp_path_factory.mktemp("book") / "html"
    book.build(out)
    return out


def stored_figures(path):
    nb = nbformat.read(path, as_version=4)
    return sum("image/png" in o.get("data", {}) for c in nb.cells if c.cell_type == "code" for o in c.outputs)


def visit(browser, site, page_path):  # noqa: F811
    page = browser.new_page()
    log = {"errors": [], "outside": []}
    page.on("console", lambda m: log["errors"].append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: log["errors"].append(str(e)))
    inside = (site.as_uri(), "data:", "about:")  # the site's files, inline images, the explorer's srcdoc frame
    page.on("request", lambda r: None if r.url.startswith(inside) else log["outside"].append(r.url))
    page.goto(page_path.as_uri(), wait_until="load")
    return page, log


def test_every_page_loads_offline_with_its_figures_and_typeset_formulas(site, browser):  # noqa: F811
    pages = [site / "index.html"] + [site / "notebooks" / f"{p.stem}.html" for p in CHAPTERS]
    pages += [site / "docs" / f"{Path(p).stem}.html" for p in book.PAGES]
    for path in pages:
        page, log = visit(browser, site, path)
        images = page.eval_on_selector_all("img", "imgs => imgs.map(i => [i.getAttribute('src'), i.complete, "
                                                   "i.naturalWidth])")
        assert all(done and width > 0 for _, done, width in images), (path.name, images)
        if path.parent.name == "notebooks":
            chapter = ROOT / "notebooks" / f"{path.stem}.ipynb"
            outputs = [src for src, _, _ in images if "_images/" in src]
            assert len(outputs) >= stored_figures(chapter), f"{path.name}: a stored figure is missing"
            sizes = page.eval_on_selector_all("article math", "ms => ms.map(m => m.getBoundingClientRect().width)")
            assert sizes and min(sizes) > 0, f"{path.name}: a formula is not drawn"  # MathML, drawn natively
            assert page.query_selector("code.tex") is None, f"{path.name}: a formula left as TeX"
            nav = page.eval_on_selector_all("nav a.reference.internal", "as => as.map(a => a.textContent)")
            assert len([t for t in nav if re.match(r"\d+\.", t.strip())]) >= len(CHAPTERS) - 1, nav
        page.close()
        assert log["errors"] == [], (path.name, log["errors"])
        assert log["outside"] == [], (path.name, log["outside"][:5])


def test_the_explorer_embedded_in_chapter_3_runs_in_the_book(site, browser):  # noqa: F811
    page, log = visit(browser, site, site / "notebooks" / "03_multi_head_attention.html")
    frame = next(f for f in page.frames if f.parent_frame is not None)
    frame.wait_for_selector("#head-svg line", state="attached")
    assert frame.eval_on_selector_all("#head-svg line", "ls => ls.length") > 0
    assert log["errors"] == [] and log["outside"] == []
