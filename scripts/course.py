"""The course layer: each chapter's exercises as an nbgrader assignment, the student edition, and grading.

    python scripts/course.py student [--out student]                 (make student)
    python scripts/course.py grade SUBMISSION [--student NAME]       (make grade SUBMISSION=…)

nbgrader (Jupyter's own autograder) does the grading: it strips the solution regions and the hidden tests from the
released notebooks, restores every test cell from its source before running a submission (a student cannot edit a
test into passing), executes each notebook in a local kernel, and keeps the points in an SQLite gradebook — no
container, no network, no pickled results.

The source of each assignment is built from the reference solutions, ``notebooks/solutions/NN_*_solutions.ipynb``
(so there is one copy of every answer): each exercise's code cell is split into a *solution* cell (the answer, the
region nbgrader clears) and an autograded *test* cell worth one point, which asserts the chapter's checker and,
hidden from students, asserts it again on inputs drawn afresh (``exercises.fresh_draws``) — an answer fitted to
the visible draws scores nothing.  What follows the checker call in a solutions cell (a remark that uses the
answer) joins the answer in the region nbgrader clears: it runs when the reference is graded, and students never
see it.

The student edition (``student/``): the twelve chapters with their Exercises section pointing to the graded
notebook, ``exercises/NN_*_exercises.ipynb`` (nbgrader's release: answers cleared, hidden tests removed), and
the committed benchmark runs chapters 10–12 read (``docs/bench_*.json``).  It contains no solution and no path to
one (tests/test_course.py scans it).
"""

from __future__ import annotations

import argparse
import ast
import os
import re
import shutil
import sys
import tempfile
import warnings
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = ROOT / "notebooks"
SOLUTIONS = NOTEBOOKS / "solutions"
HIDDEN_DRAWS = 1  # exercises.fresh_draws(HIDDEN_DRAWS): the grader's own inputs
SETTINGS = {"CourseDirectory.course_id": "transformer_np", "Execute.timeout": 600, "Execute.kernel_name": "python3"}
KERNEL = {"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"},
          "language_info": {"name": "python"}}


def chapters():
    """[(assignment, chapter stem)] for every chapter with a solutions notebook: ("ch02", "02_scaled_...")."""
    out = []
    for path in sorted(SOLUTIONS.glob("[0-9]*_solutions.ipynb")):
        stem = path.name.removesuffix("_solutions.ipynb")
        out.append((f"ch{stem[:2]}", stem))
    return out


def _meta(grade_id, *, solution=False, grade=False, locked=False, points=None):
    meta = {"schema_version": 3, "grade_id": grade_id, "solution": solution, "grade": grade, "locked": locked,
            "task": False}
    if points is not None:
        meta["points"] = points
    return {"nbgrader": meta}


def split_exercise(source):
    """A solutions cell → (answer, checker call, remark, checker name): the statements before the top-level
    ``exercises.check_*(…)`` call, the call, what follows it (a remark that uses the answer); None when the cell
    calls no checker."""
    tree = ast.parse(source)
    lines = source.splitlines()
    for node in tree.body:
        call = node.value if isinstance(node, ast.Expr) else None
        if (isinstance(call, ast.Call) and isinstance(call.func, ast.Attribute)
                and isinstance(call.func.value, ast.Name) and call.func.value.id == "exercises"
                and call.func.attr.startswith("check_")):
            answer = "\n".join(lines[:node.lineno - 1]).rstrip()
            check = "\n".join(lines[node.lineno - 1:node.end_lineno])
            remark = "\n".join(lines[node.end_lineno:]).strip()
            return answer, check, remark, call.func.attr.removeprefix("check_")
    return None


def source_notebook(stem):
    """The nbgrader source of one chapter's exercises, from its reference solutions."""
    sol = nbformat.read(SOLUTIONS / f"{stem}_solutions.ipynb", as_version=4)
    title = sol.cells[0].source.splitlines()[0].removeprefix("# Solutions: ")
    cells = [nbformat.v4.new_markdown_cell(
        f"# Exercises: {title}\n\n"
        f"The graded exercises of [{stem}](../{stem}.ipynb). Replace each `raise NotImplementedError()` with your "
        "answer and run the cell below it: the chapter's checker says whether the answer is right, and why not "
        "when it is wrong. Each exercise is worth one point; the grader runs every checker again on inputs you "
        "have not seen, so an answer that only fits the checker's visible draws scores nothing. The test cells "
        "are locked: the grader restores them before it runs your notebook.",
        metadata=_meta("intro", locked=True))]
    seen = set()
    for cell in sol.cells[1:]:
        if cell.cell_type == "markdown":
            cells.append(nbformat.v4.new_markdown_cell(cell.source))
            continue
        parts = split_exercise(cell.source)
        if parts is None:  # the imports: given, locked
            cells.append(nbformat.v4.new_code_cell(cell.source.rstrip(),
                                                   metadata=_meta(f"setup_{len(cells)}", locked=True)))
            continue
        answer, check, remark, name = parts
        if name in seen:
            raise ValueError(f"{stem}: checker check_{name} is called by two exercises")
        seen.add(name)
        if remark:  # the teachers' remark runs (in the reference, before the test) and leaves with the answer
            answer += "\n\n" + remark
        cells.append(nbformat.v4.new_code_cell(f"### BEGIN SOLUTION\n{answer}\n### END SOLUTION",
                                               metadata=_meta(f"{name}_answer", solution=True)))
        indented = "\n".join("    " + line for line in f"assert {check}".splitlines())
        cells.append(nbformat.v4.new_code_cell(
            f"assert {check}\n### BEGIN HIDDEN TESTS\nwith exercises.fresh_draws({HIDDEN_DRAWS}):\n"
            f"{indented}\n### END HIDDEN TESTS",
            metadata=_meta(name, grade=True, locked=True, points=1)))
    nb = nbformat.v4.new_notebook(cells=cells, metadata=KERNEL)
    for i, cell in enumerate(nb.cells):
        cell.id = f"cell-{i:02d}"
    return nb


def write_atomic(path, text):
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=path.suffix)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(text)
    os.chmod(tmp, 0o644)
    os.replace(tmp, path)


def course_directory(root, assignments=None):
    """An nbgrader course directory at ``root``: its config and ``source/chNN/NN_*_exercises.ipynb``."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    write_atomic(root / "nbgrader_config.py",  # the same settings, for nbgrader's own commands run in this folder
                 "c = get_config()  # noqa: F821\n" + "".join(f"c.{k} = {v!r}\n" for k, v in SETTINGS.items()))
    for assignment, stem in chapters():
        if assignments is None or assignment in assignments:
            path = root / "source" / assignment / f"{stem}_exercises.ipynb"
            text = nbformat.writes(source_notebook(stem))
            if not path.exists() or path.read_text(encoding="utf-8") != text:
                write_atomic(path, text)
                shutil.rmtree(root / "release" / assignment, ignore_errors=True)  # stale: released again
    return root


def nbgrader_api(root):
    """nbgrader's Python API on the course directory (one process for every command, not one per command)."""
    # nbgrader runs the `alembic` command of its own environment to set up the gradebook: put that environment's
    # bin first (a venv's python run by its path does not)
    bin_dir = str(Path(sys.executable).parent)
    if os.environ.get("PATH", "").split(os.pathsep)[0] != bin_dir:
        os.environ["PATH"] = os.pathsep.join([bin_dir, os.environ.get("PATH", "")])
    from nbgrader.apps import NbGraderAPI
    from traitlets.config import Config

    config = Config()
    for key, value in SETTINGS.items():
        section, name = key.split(".")
        setattr(config[section], name, value)
    config.CourseDirectory.root = str(root)
    config.Exchange.root = str(Path(root) / "exchange")  # never used; keeps nbgrader away from /srv
    return NbGraderAPI(config=config)


def _checked(result, what):
    if not result.get("success"):
        raise RuntimeError(f"nbgrader {what} failed:\n{result.get('error') or ''}\n{result.get('log') or ''}")
    return result


def release(root, assignments=None):
    """nbgrader generate_assignment for each assignment not released yet (or whose source changed):
    release/chNN/NN_*_exercises.ipynb."""
    api = nbgrader_api(root)
    for assignment, stem in chapters():
        released = (Path(root) / "release" / assignment / f"{stem}_exercises.ipynb").exists()
        if (assignments is None or assignment in assignments) and not released:
            _checked(api.generate_assignment(assignment, force=True), f"generate_assignment {assignment}")
    return api


def chapter_for_students(stem):
    """A chapter with its Exercises section (from the "## Exercises" heading to the next "## " heading) replaced
    by a pointer to the graded notebook."""
    nb = nbformat.read(NOTEBOOKS / f"{stem}.ipynb", as_version=4)
    start = next(i for i, c in enumerate(nb.cells) if c.cell_type == "markdown" and "## Exercises" in
                 c.source.splitlines())
    end = next((i for i in range(start + 1, len(nb.cells)) if nb.cells[i].cell_type == "markdown"
                and nb.cells[i].source.startswith("## ")), len(nb.cells))
    lines = nb.cells[start].source.splitlines()
    before = "\n".join(lines[:lines.index("## Exercises")]).rstrip()
    pointer = nbformat.v4.new_markdown_cell(
        (before + "\n\n" if before else "") + "## Exercises\n\n"
        f"This chapter's graded exercises are in [exercises/{stem}_exercises.ipynb](exercises/{stem}_exercises.ipynb).")
    pointer.id = nb.cells[start].id
    nb.cells[start:end] = [pointer]
    return nb


def student_edition(out, course=None):
    """Write the student edition to ``out`` (replaced whole: it is generated)."""
    out = Path(out).resolve()
    with tempfile.TemporaryDirectory() as tmp:
        root = course_directory(course or Path(tmp) / "course")
        release(root)
        stage = Path(tmp) / "student"
        (stage / "exercises").mkdir(parents=True)
        for assignment, stem in chapters():
            nbformat.write(chapter_for_students(stem), stage / f"{stem}.ipynb")
            shutil.copy(root / "release" / assignment / f"{stem}_exercises.ipynb", stage / "exercises")
        (stage / "docs").mkdir()
        for run in sorted((ROOT / "docs").glob("bench_*.json")):
            shutil.copy(run, stage / "docs")
        (stage / "README.md").write_text(
            "# transformer_np — student edition\n\n"
            "Install the package (`pip install transformer_np`, or `make lab` in its repository), open the chapters "
            "in JupyterLab from this folder, and do each chapter's exercises in `exercises/`. Hand in the "
            "`exercises/` notebooks; your teacher grades them with `make grade SUBMISSION=…`.\n", encoding="utf-8")
        leaks = scan(stage)
        if leaks:
            raise RuntimeError("the student edition would contain solutions:\n" + "\n".join(leaks))
        if out.exists():
            shutil.rmtree(out)
        shutil.copytree(stage, out)
    print(f"wrote the student edition to {out} ({len(chapters())} chapters, {len(chapters())} exercise notebooks)")
    return out


LEAKS = re.compile(r"BEGIN SOLUTION|END SOLUTION|HIDDEN TESTS|fresh_draws|Reference solution|_solutions\.ipynb"
                   r"|notebooks/solutions", re.IGNORECASE)


def scan(folder):
    """Every 'file: line' of ``folder`` that names a solution, a hidden test or the solutions' path."""
    hits = []
    for path in sorted(Path(folder).rglob("*")):
        if path.is_file() and path.suffix in (".ipynb", ".md", ".py", ".json"):
            for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
                if LEAKS.search(line):
                    hits.append(f"{path.relative_to(folder)}:{n}: {line.strip()[:100]}")
    return hits


def grade(submission, student="student", course=None):
    """Grade the exercise notebooks found under ``submission`` (any that are missing score 0).

    Returns {assignment: [(exercise, score, max_score)]} and prints the points per exercise."""
    from nbgrader.api import Gradebook

    submission = Path(submission)
    if not submission.is_dir():
        raise SystemExit(f"SUBMISSION must be a folder of *_exercises.ipynb notebooks; got {submission}")
    found = {p.name: p for p in submission.rglob("*_exercises.ipynb")}
    if not found:
        raise SystemExit(f"SUBMISSION={submission}: no *_exercises.ipynb notebook in it")
    if not re.fullmatch(r"[A-Za-z0-9_.-]+", student):
        raise SystemExit(f"--student must be letters, digits, '.', '_' or '-'; got {student!r}")
    submitted = {a for a, stem in chapters() if f"{stem}_exercises.ipynb" in found}
    with tempfile.TemporaryDirectory() as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore")  # nbgrader's SQLAlchemy session warnings, not the learner's concern
        root = course_directory(course or Path(tmp) / "course")
        api = release(root, submitted)
        results = {}
        for assignment, stem in chapters():
            name = f"{stem}_exercises.ipynb"
            source = nbformat.read(root / "source" / assignment / name, as_version=4)
            exercises = [c.metadata["nbgrader"]["grade_id"] for c in source.cells
                         if c.metadata.get("nbgrader", {}).get("grade")]
            if name not in found:
                results[assignment] = [(e, 0.0, 1.0) for e in exercises]
                continue
            target = root / "submitted" / student / assignment
            target.mkdir(parents=True, exist_ok=True)
            shutil.copy(found[name], target / name)
            _checked(api.autograde(assignment, student, force=True, create=True), f"autograde {assignment}")
            with Gradebook(f"sqlite:///{root / 'gradebook.db'}") as gb:
                nb = gb.find_submission_notebook(name.removesuffix(".ipynb"), assignment, student)
                scores = {g.name: (g.score, g.max_score) for g in nb.grades}
            results[assignment] = [(e, *scores[e]) for e in exercises]
    report(results, found)
    return results


def report(results, found):
    total = best = 0.0
    for assignment, rows in results.items():
        stem = dict(chapters())[assignment]
        missing = "" if f"{stem}_exercises.ipynb" in found else "   (not submitted)"
        print(f"{assignment}  {stem}{missing}")
        for exercise, score, max_score in rows:
            print(f"    {exercise:28s} {score:g} / {max_score:g}")
            total, best = total + score, best + max_score
    print(f"total {total:g} / {best:g}")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    s = sub.add_parser("student", help="write the student edition")
    s.add_argument("--out", default=str(ROOT / "student"))
    g = sub.add_parser("grade", help="grade a student's exercise notebooks")
    g.add_argument("submission")
    g.add_argument("--student", default="student")
    g.add_argument("--course", help="keep the nbgrader course directory here (default: a temporary one)")
    args = parser.parse_args(argv)
    if args.command == "student":
        student_edition(args.out)
    else:
        grade(args.submission, args.student, args.course)


if __name__ == "__main__":
    sys.exit(main())
