"""The notebooks and figures: paired with their sources, stripped, complete; every figure is drawn.

The chapters are executed top to bottom by nbmake (``pytest`` collects notebooks/*.ipynb); the solutions
notebooks run through the grader, hidden tests included (tests/test_course.py).
"""

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

import transformer_np
from transformer_np.teaching import exercises
from transformer_np.viz.figures import FIGURES

ROOT = Path(__file__).resolve().parent.parent
CHAPTERS = sorted((ROOT / "notebooks").glob("[0-9]*.ipynb"))
SOLUTIONS = sorted((ROOT / "notebooks/solutions").glob("[0-9]*.ipynb"))
SOURCES = [p.with_suffix(".py") for p in CHAPTERS + SOLUTIONS]
NOTEBOOKS = CHAPTERS + SOLUTIONS
PNG = b"\x89PNG\r\n\x1a\n"


def load(path):
    return json.loads(path.read_text(encoding="utf-8"))


def test_every_source_has_its_notebook_and_back():
    assert len(CHAPTERS) >= 10
    for folder in (ROOT / "notebooks", ROOT / "notebooks/solutions"):
        assert sorted(p.stem for p in folder.glob("[0-9]*.py")) == sorted(p.stem for p in folder.glob("[0-9]*.ipynb"))


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
    if path in CHAPTERS:
        assert any("image/png" in o.get("data", {}) for c in code for o in c["outputs"]), "no figure in the outputs"
    assert not any(o["output_type"] == "error" for c in code for o in c["outputs"])


def checker_calls(path):
    """The exercise checkers a notebook calls, in order."""
    return re.findall(r"exercises\.(check_\w+)\(", "".join("".join(c["source"]) for c in load(path)["cells"]))


@pytest.mark.parametrize("path", CHAPTERS, ids=lambda p: p.stem)
def test_chapter_has_exercises_and_no_solution_in_it(path):
    """Exercises are checked by the package's checkers; the reference solutions live in notebooks/solutions/,
    where "Run All" on the chapter cannot execute them and GitHub does not show them beside the question."""
    calls = checker_calls(path)
    assert len(calls) >= 2 and len(set(calls)) == len(calls)
    cells = load(path)["cells"]
    assert not any("solution" in c["metadata"].get("tags", []) for c in cells)
    for name in calls:
        assert getattr(exercises, name).chapter == path.stem, f"{name} belongs to another chapter"
    for cell in cells:  # each answer starts as None: a learner's "Run All" reports "not attempted"
        assert not re.search(r"^def my_", "".join(cell["source"]), re.M), "a solution in the chapter"


@pytest.mark.parametrize("path", CHAPTERS, ids=lambda p: p.stem)
def test_solutions_notebook_answers_every_exercise_of_its_chapter(path):
    solutions = ROOT / "notebooks/solutions" / f"{path.stem}_solutions.ipynb"
    assert solutions.exists(), f"no {solutions.name}"
    assert set(checker_calls(path)) <= set(checker_calls(solutions))
    outputs = "".join(o.get("text", "") if isinstance(o.get("text", ""), str) else "".join(o["text"])
                      for c in load(solutions)["cells"] if c["cell_type"] == "code" for o in c["outputs"])
    assert outputs.count("✓") >= len(set(checker_calls(path))), "a checker did not pass when it was built"


@pytest.mark.parametrize("path", CHAPTERS, ids=lambda p: p.stem)
def test_chapter_ends_with_its_references(path):
    last = load(path)["cells"][-1]
    text = "".join(last["source"])
    assert last["cell_type"] == "markdown" and text.startswith("## References")
    assert text.count("\n- ") >= 3, "at least three sources: the paper's sections and what was learned from"


def test_every_checker_is_an_exercise_of_a_chapter():
    called = {name for path in CHAPTERS for name in checker_calls(path)}
    defined = {name for name in dir(exercises) if name.startswith("check_")}
    assert defined == called


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
