"""The notebooks as a book: a static HTML site built offline from the executed chapters (Sphinx, MyST-NB and the
sphinx-book-theme; formulas as MathML), navigation by chapter, the explorer pages working in it.

    python scripts/build_book.py [--out build/book]        (make book; open build/book/index.html)

Nothing is executed: the chapters' stored outputs are the book's (`make rebuild-notebooks` refreshes them).
Nothing is fetched: the formulas are MathML made at build time (latex2mathml; browsers draw it natively), the
theme's fonts and scripts come from its own package; tests/test_book.py loads every page in Chromium and refuses
any request outside the site.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PAGES = ["course.md", "verification.md", "performance.md"]  # docs/ pages the book carries after the chapters

CONF = '''\
project = "transformer_np"
author = "the transformer_np authors"
copyright = "the transformer_np authors"
extensions = ["myst_nb", "mathml"]            # mathml: the formulas as MathML, converted here (no script, no font)
nb_execution_mode = "off"                     # the chapters' stored outputs
nb_merge_streams = True
myst_enable_extensions = ["dollarmath", "amsmath"]
myst_heading_anchors = 3
html_theme = "sphinx_book_theme"
html_title = "transformer_np: the Transformer and fast inference in NumPy"
html_extra_path = ["_extra"]                  # the explorer's example pages, as they are
html_math_renderer = "mathml"
html_theme_options = {"show_toc_level": 2, "use_download_button": False, "use_fullscreen_button": False}
html_context = {"default_mode": "light"}    # (without it the theme logs "invalid theme mode" on a file:// page)
html_show_sourcelink = False
html_copy_source = False
exclude_patterns = ["_build", "_extra"]
suppress_warnings = ["myst.xref_missing", "myst.header", "misc.highlighting_failure"]
'''


MATHML = '''\
"""A Sphinx math renderer: each formula converted to MathML at build time (latex2mathml), which browsers draw
natively — no MathJax, no web font, nothing to fetch, and it works from file://.  A formula it cannot convert is
shown as its TeX source and counted (the build fails if any is)."""

import html

from docutils import nodes
from latex2mathml.converter import convert

FAILED = []


def _render(self, node, display):
    tex = node.astext()
    try:
        self.body.append(convert(tex, display="block" if display else "inline"))
    except Exception as e:  # noqa: BLE001 - any formula the converter refuses is reported, not hidden
        FAILED.append(f"{self.builder.current_docname}: {tex!r} ({e})")
        self.body.append(f"<code class='tex'>{html.escape(tex)}</code>")
    raise nodes.SkipNode


def _check(app, exception):
    if FAILED and exception is None:
        raise RuntimeError("formulas latex2mathml could not convert:\\n" + "\\n".join(FAILED))


def setup(app):
    app.add_html_math_renderer(
        "mathml", inline_renderers=(lambda self, node: _render(self, node, False), None),
        block_renderers=(lambda self, node: _render(self, node, True), None))
    app.connect("build-finished", _check)
    return {"parallel_read_safe": True}
'''


def index_page(chapters):
    lines = ["# transformer_np", "",
             "The Transformer and how its inference is made fast, every formula a NumPy function checked three "
             "ways. Twelve chapters, each read top to bottom: paper → equation → call → live check → picture → "
             "exercises. This book is the chapters as they were last executed; to run them, `make lab` in the "
             "repository.", "",
             "```{toctree}", ":caption: Chapters", ":maxdepth: 1", ""]
    lines += [f"notebooks/{path.stem}" for path in chapters]
    lines += ["```", "", "```{toctree}", ":caption: The course and the measurements", ":maxdepth: 1", ""]
    lines += [f"docs/{Path(p).stem}" for p in PAGES] + ["```", ""]
    return "\n".join(lines)


def stage(src):
    """The book's source tree: conf.py, index.md, notebooks/ (the chapters), docs/ (pages and the images the
    chapters show), figures/, mathml.py (the formula renderer), _extra/docs/explore (the explorer's example pages,
    linked from the chapters)."""
    chapters = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
    (src / "notebooks").mkdir(parents=True)
    for path in chapters:
        shutil.copy(path, src / "notebooks")
    (src / "docs").mkdir()
    for page in PAGES:
        shutil.copy(ROOT / "docs" / page, src / "docs")
    for image in (ROOT / "docs").glob("*.png"):
        shutil.copy(image, src / "docs")
    shutil.copytree(ROOT / "figures", src / "figures")  # the measured plots chapters 10-12 and the docs show
    (src / "mathml.py").write_text(MATHML, encoding="utf-8")
    shutil.copytree(ROOT / "docs" / "explore", src / "_extra" / "docs" / "explore")
    head = "import sys\nfrom pathlib import Path\n\nsys.path.insert(0, str(Path(__file__).parent))  # mathml.py\n"
    (src / "conf.py").write_text(head + CONF, encoding="utf-8")
    (src / "index.md").write_text(index_page(chapters), encoding="utf-8")
    return chapters


def build(out):
    """Build the book into ``out`` (replaced whole); returns the chapters' HTML pages."""
    from sphinx.cmd.build import build_main

    out = Path(out).resolve()
    with tempfile.TemporaryDirectory() as tmp:
        src, html = Path(tmp) / "src", Path(tmp) / "html"
        chapters = stage(src)
        status = build_main(["-b", "html", "-q", "-j", "1", "-d", str(Path(tmp) / "doctrees"), str(src), str(html)])
        if status:
            raise SystemExit(f"sphinx-build failed (exit {status})")
        if out.exists():
            shutil.rmtree(out)
        out.parent.mkdir(parents=True, exist_ok=True)
        shutil.copytree(html, out)
    print(f"wrote the book to {out} (open {out / 'index.html'})")
    return [out / "notebooks" / f"{path.stem}.html" for path in chapters]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default=str(ROOT / "build" / "book"))
    args = parser.parse_args(argv)
    build(args.out)


if __name__ == "__main__":
    sys.exit(main())
