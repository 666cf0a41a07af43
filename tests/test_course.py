"""The course layer (scripts/course.py, #33): the nbgrader source of every chapter's exercises is built from the
reference solutions; the student edition has no solution in it; grading the reference solutions gives full marks
(hidden tests included) and grading the untouched student edition gives zero (two of its notebooks run, ten not
handed in) — also where a wrong answer's test cell was edited into passing: the grader restores it."""

import importlib.util
import shutil
from pathlib import Path

import nbformat
import pytest

from transformer_np.teaching import exercises

ROOT = Path(__file__).resolve().parent.parent
spec = importlib.util.spec_from_file_location("course", ROOT / "scripts/course.py")
course = importlib.util.module_from_spec(spec)
spec.loader.exec_module(course)


def graded_cells(nb):
    return [c for c in nb.cells if c.metadata.get("nbgrader", {}).get("grade")]


@pytest.mark.parametrize("assignment, stem", course.chapters(), ids=[a for a, _ in course.chapters()])
def test_source_has_one_graded_cell_per_exercise_with_a_hidden_draw(assignment, stem):
    nb = course.source_notebook(stem)
    graded = graded_cells(nb)
    answers = [c for c in nb.cells if c.metadata.get("nbgrader", {}).get("solution")]
    assert len(graded) == len(answers) >= 2
    for cell in graded:
        name = cell.metadata["nbgrader"]["grade_id"]
        assert getattr(exercises, f"check_{name}").chapter == stem
        assert cell.metadata["nbgrader"]["points"] == 1 and cell.metadata["nbgrader"]["locked"]
        visible, hidden = cell.source.split("### BEGIN HIDDEN TESTS")
        assert visible.startswith(f"assert exercises.check_{name}(") and "fresh_draws(" in hidden
    for cell in answers:
        assert cell.source.startswith("### BEGIN SOLUTION\n") and cell.source.endswith("\n### END SOLUTION")


def test_split_exercise_keeps_the_answer_the_call_and_the_remark_apart():
    src = "def my_f(x):\n    return x\n\n\nexercises.check_gelu(\n    my_f)\nprint(my_f(2))\n"
    assert course.split_exercise(src) == ("def my_f(x):\n    return x", "exercises.check_gelu(\n    my_f)",
                                          "print(my_f(2))", "gelu")
    assert course.split_exercise("import numpy as np\nprint(exercises)") is None


def test_scan_finds_a_solution_left_in_a_folder(tmp_path):
    (tmp_path / "a.ipynb").write_text('{"source": "### BEGIN SOLUTION"}')
    (tmp_path / "b.md").write_text("see notebooks/solutions/ for answers\nnothing here\n")
    assert [hit.split(":")[0] for hit in course.scan(tmp_path)] == ["a.ipynb", "b.md"]


@pytest.mark.slow
def test_student_edition_has_no_solution_and_grades_zero_while_the_reference_gets_full_marks(tmp_path, capsys):
    root = tmp_path / "course"
    out = course.student_edition(tmp_path / "student", course=root)
    assert course.scan(out) == []
    for _, stem in course.chapters():
        chapter = nbformat.read(out / f"{stem}.ipynb", as_version=4)
        text = "".join(c.source for c in chapter.cells)
        assert "my_" not in text and f"exercises/{stem}_exercises.ipynb" in text  # the section points out
        released = nbformat.read(out / "exercises" / f"{stem}_exercises.ipynb", as_version=4)
        stubs = sum("raise NotImplementedError()" in c.source for c in released.cells if c.cell_type == "code")
        assert stubs == len(graded_cells(released)) >= 2
    capsys.readouterr()

    handed_out = tmp_path / "untouched"  # two chapters of the student edition, as handed out (kernels run them);
    handed_out.mkdir()                    # the other ten are not submitted, which scores 0 without running
    for stem in ("02_scaled_dot_product_attention", "10_serving"):
        shutil.copy(out / "exercises" / f"{stem}_exercises.ipynb", handed_out)
    tampered = handed_out / "02_scaled_dot_product_attention_exercises.ipynb"
    nb = nbformat.read(tampered, as_version=4)  # a wrong answer, and its test cell edited into passing
    for cell in nb.cells:
        grade_id = cell.metadata.get("nbgrader", {}).get("grade_id")
        if grade_id == "causal_mask_answer":
            cell.source = "def my_causal_mask(T):\n    return np.ones((T, T), bool)"
        elif grade_id == "causal_mask":
            cell.source = "pass"
    nbformat.write(nb, tampered)
    empty = course.grade(handed_out, "nobody", course=root)  # the test is restored from the source: 0
    assert all(score == 0 for rows in empty.values() for _, score, _ in rows) and len(empty) == 12
    printed = capsys.readouterr().out
    assert "total 0 / 31" in printed and printed.count("(not submitted)") == 10

    reference = tmp_path / "reference"
    shutil.copytree(root / "source", reference)
    full = course.grade(reference, "teacher", course=root)
    assert all(score == best == 1 for rows in full.values() for _, score, best in rows)
    assert "total 31 / 31" in capsys.readouterr().out


def test_grade_refuses_a_folder_without_exercise_notebooks(tmp_path):
    with pytest.raises(SystemExit, match="no \\*_exercises.ipynb notebook"):
        course.grade(tmp_path)
    with pytest.raises(SystemExit, match="SUBMISSION must be a folder"):
        course.grade(tmp_path / "missing")
