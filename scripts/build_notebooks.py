"""Build notebooks/*.ipynb from their jupytext py:percent sources: execute each top to bottom, then strip
execution counts and volatile metadata (outputs are kept, so the notebooks read well unrun).

    python scripts/build_notebooks.py [notebooks/NN_name.py ...]      (make rebuild-notebooks)

Without arguments it builds every chapter and every notebooks/solutions/ notebook.
"""

import os
import sys
import tempfile
from pathlib import Path

import jupytext
import nbformat
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parent.parent
KEEP_NOTEBOOK_METADATA = {
    "kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"},
    "language_info": {"name": "python"},
    "jupytext": {"formats": "ipynb,py:percent"},
}


def strip(nb):
    """Drop what changes from run to run: cell ids, execution counts, timing metadata."""
    nb.metadata = nbformat.from_dict(KEEP_NOTEBOOK_METADATA)
    for i, cell in enumerate(nb.cells):
        cell.id = f"cell-{i:02d}"  # nbformat draws random ids: fixed ones keep diffs quiet
        cell.metadata.pop("execution", None)
        cell.metadata.pop("ExecuteTime", None)
        if cell.cell_type == "code":
            cell.execution_count = None
            for out in cell.outputs:
                if "execution_count" in out:
                    out.execution_count = None
    return nb


def build(source):
    source = Path(source).resolve()
    nb = jupytext.read(source)
    client = NotebookClient(nb, timeout=300, kernel_name="python3",
                            resources={"metadata": {"path": str(source.parent)}})
    client.execute()
    target = source.with_suffix(".ipynb")
    fd, tmp = tempfile.mkstemp(suffix=".ipynb", dir=source.parent)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        nbformat.write(strip(nb), f)
    os.chmod(tmp, 0o644)
    os.replace(tmp, target)
    print(f"wrote {target.relative_to(ROOT)}")


if __name__ == "__main__":
    os.environ.setdefault("MPLBACKEND", "module://matplotlib_inline.backend_inline")
    chapters = sorted((ROOT / "notebooks").glob("[0-9]*.py")) + sorted((ROOT / "notebooks/solutions").glob("[0-9]*.py"))
    for path in sys.argv[1:] or chapters:
        build(path)
