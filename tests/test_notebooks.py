"""The notebooks and figures: paired with their sources, stripped, complete; every figure is drawn.

The notebooks themselves are executed top to bottom by nbmake (``pytest`` collects notebooks/*.ipynb).
"""

import json
import subprocess
import sys
from pathlib import Path

import pytest

import transformer_np
from transformer_np.viz.figures import FIGURES

ROOT = Path(__file__).resolve().parent.parent
SOURCES = sorted((ROOT / "notebooks").glob("[0-9]*.py"))
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9]*.ipynb"))
PNG = b"\x89PNG\r\n\x1a\n"


def load(path):
    return json.loads(path.read_text(encoding="utf-8"))


def test_every_source_has_its_notebook_and_back():
    assert len(SOURCES) >= 5
    assert [p.stem for p in SOURCES] == [p.stem for p in NOTEBOOKS]


@pytest.mark.parametrize("source", SOURCES, ids=lambda p: p.stem)
def test_notebook_cells_equal_its_py_percent_source(source):
    jupytext = pytest.importorskip("jupytext")
    want = [(c.cell_type, c.source) for c in jupytext.read(source).cells]
    got = [(c["cell_type"], "".join(c["source"])) for c in load(source.with_suffix(".ipynb"))["cells"]]
    assert got == want, f"{source.name} and its .ipynb disagree: run `make rebuild-notebooks`"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_is_stripped_but_keeps_its_outputs(path):
    nb = load(path)
    assert set(nb["metadata"]) <= {"kernelspec", "language_info", "jupytext"}
    code = [c for c in nb["cells"] if c["cell_type"] == "code"]
    for i, cell in enumerate(nb["cells"]):
        assert cell["id"] == f"cell-{i:02d}"
        # lines_to_next_cell: jupytext's record of blank lines in the source, stable from run to run
        assert set(cell["metadata"]) <= {"jupyter", "tags", "lines_to_next_cell"}, cell["metadata"]
    assert all(c["execution_count"] is None for c in code)
    assert all(o.get("execution_count") is None for c in code for o in c["outputs"])
    assert any("image/png" in o.get("data", {}) for c in code for o in c["outputs"]), "no figure in the outputs"
    assert not any(o["output_type"] == "error" for c in code for o in c["outputs"])


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_has_exercises_with_checkers_and_collapsed_solutions(path):
    cells = load(path)["cells"]
    solutions = [c for c in cells if "solution" in c["metadata"].get("tags", [])]
    assert len(solutions) >= 2
    assert all(c["metadata"]["jupyter"]["source_hidden"] for c in solutions)
    assert all("assert" in "".join(c["source"]) or "check_" in "".join(c["source"]) for c in solutions)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_does_not_redefine_library_functions(path):
    import ast

    public = set(transformer_np.__all__)
    for cell in load(path)["cells"]:
        if cell["cell_type"] != "code":
            continue
        src = "".join(cell["source"])
        tree = ast.parse("\n".join(line for line in src.splitlines() if not line.startswith(("%", "!"))))
        defined = {n.name for n in ast.walk(tree) if isinstance(n, ast.FunctionDef)}
        assert not defined & public, f"{path.name} redefines {defined & public}: call the package instead"


def test_figures_command_draws_every_figure(tmp_path):
    subprocess.run([sys.executable, "-m", "transformer_np", "figures", "--out", str(tmp_path)], check=True,
                   capture_output=True)
    for name in FIGURES:
        data = (tmp_path / f"{name}.png").read_bytes()
        assert data.startswith(PNG) and len(data) > 5000, name
    drawn = {p.stem for p in (ROOT / "figures").glob("*.png") if not p.stem.startswith("bench_")}
    assert drawn == set(FIGURES), "run `make figures`"  # bench_*.png: measured plots from `bench`


def test_unknown_figure_name_is_rejected(tmp_path):
    from transformer_np.viz.figures import make_figures

    with pytest.raises(ValueError, match="unknown figures"):
        make_figures(tmp_path, ["no_such_figure"])
