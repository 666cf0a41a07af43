# make demo  — install the package into .venv and run the tour (the main job)
# make test  — install the test tools (torch==2.13.0 as the oracle) and run ruff + the whole suite
# Everything goes into a virtual environment in .venv; PYTHON picks the interpreter that makes it.

PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
PIP    := $(BIN)/python -m pip install --quiet --disable-pip-version-check

.PHONY: demo test lint bench figures clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(VENV)/.installed-run: pyproject.toml | $(BIN)/python
	$(PIP) -e .
	touch $@

$(VENV)/.installed-test: pyproject.toml | $(BIN)/python
	$(PIP) -e ".[test]"
	touch $@ $(VENV)/.installed-run

demo: $(VENV)/.installed-run
	$(BIN)/python -m transformer_np tour

lint: $(VENV)/.installed-test
	$(BIN)/ruff check transformer_np tests

# pytest exits 5 when it collects no test: make treats every non-zero exit as a failure
test: lint
	$(BIN)/python -m pytest

bench: $(VENV)/.installed-test
	$(BIN)/python -m transformer_np bench forward

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .hypothesis
