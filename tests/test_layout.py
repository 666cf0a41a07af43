"""The package's layout: folders in layer order, no import circles, the shipped models unchanged by the move,
every shipped checkpoint a model, the README saying each thing once."""

import ast
import re
import warnings
from pathlib import Path

import numpy as np
import pytest

import transformer_np as tn
from transformer_np.training import shipped_path

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "transformer_np"
# each folder may import only from the folders before it (and from itself)
FLOORS = ["core", "model", "decoding", "training", "efficient", "pretrained", "interop", "viz", "teaching", "cli"]


def module_name(path):
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def package_imports(path):
    """The transformer_np modules that a source file imports (relative imports resolved)."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("transformer_np")}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                up = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(up + ([base] if base else []))
            if base.startswith("transformer_np"):
                found |= {f"{base}.{a.name}" if _is_module(f"{base}.{a.name}") else base for a in node.names}
    return found


def _is_module(dotted):
    path = ROOT.joinpath(*dotted.split("."))
    return path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()


def floor(module):
    """The floor of a module: the index of its folder in FLOORS; the package's own __init__/__main__ on top."""
    parts = module.split(".")
    return FLOORS.index(parts[1]) if len(parts) > 1 and parts[1] in FLOORS else len(FLOORS)


GRAPH = {module_name(p): package_imports(p) for p in PACKAGE.rglob("*.py")}


def test_the_package_folder_holds_only_init_main_and_interop():
    assert sorted(p.name for p in PACKAGE.glob("*.py")) == ["__init__.py", "__main__.py", "interop.py"]
    assert {p.name for p in PACKAGE.iterdir() if p.is_dir() and (p / "__init__.py").exists()} == \
        set(FLOORS) - {"interop"}


def test_every_import_goes_down_the_floors_or_stays_on_its_own():
    wrong = [(m, i) for m, imports in GRAPH.items() for i in imports if floor(i) > floor(m)]
    assert not wrong, f"imports that go up the floors: {wrong}"


def import_circles(graph):
    """Every circle a depth-first walk of graph {module: {imported modules}} meets, as module lists."""
    state, circles = {}, []

    def visit(m, path):
        state[m] = "open"
        for n in sorted(graph[m]):
            if state.get(n) == "open":
                circles.append(path + [n])
            elif n not in state:
                visit(n, path + [n])
        state[m] = "done"

    for m in sorted(graph):
        if m not in state:
            visit(m, [m])
    return circles


def test_no_import_circles():
    # a package __init__ imports its own modules, which do not import it back; anything else is a circle
    graph = {m: {i if i in GRAPH else i.rsplit(".", 1)[0] for i in imports} & set(GRAPH) - {m}
             for m, imports in GRAPH.items()}
    circles = import_circles(graph)
    assert not circles, f"import circles: {[' -> '.join(c) for c in circles]}"


def test_the_circle_check_finds_a_circle():
    assert import_circles({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == [["a", "b", "c", "a"]]
    assert import_circles({"a": {"b"}, "b": set()}) == []


def test_library_code_prints_nothing_and_parses_no_arguments():
    """Only cli/ talks to the terminal; the exercise checkers' one line of feedback is the one exception."""
    allowed = {PACKAGE / "teaching" / "exercises.py"}
    talkers = []
    for path in PACKAGE.rglob("*.py"):
        if "cli" in path.relative_to(PACKAGE).parts or path in allowed:
            continue
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "print":
                talkers.append(f"{path.relative_to(ROOT)}:{node.lineno} print")
            if isinstance(node, (ast.Import, ast.ImportFrom)) and "argparse" in ast.unparse(node):
                talkers.append(f"{path.relative_to(ROOT)}:{node.lineno} argparse")
    assert not talkers, talkers


def test_the_layer_check_catches_an_upward_import(tmp_path):
    """The checker itself can fail: a core module importing from model is flagged."""
    (tmp_path / "transformer_np" / "core").mkdir(parents=True)
    probe = tmp_path / "transformer_np" / "core" / "probe.py"
    probe.write_text("from ..model.config import TransformerConfig\n")
    global ROOT
    old, ROOT = ROOT, tmp_path
    try:
        imports = package_imports(probe)
    finally:
        ROOT = old
    assert imports == {"transformer_np.model"} or imports == {"transformer_np.model.config"}
    assert any(floor(i) > floor("transformer_np.core.probe") for i in imports)


def test_importing_the_package_needs_neither_torch_nor_matplotlib():
    import subprocess
    import sys

    code = ("import sys, transformer_np as tn; tn.interop, tn.pretrained, tn.training, tn.decoding; "
            "print(sorted(m for m in ('torch', 'matplotlib', 'scipy') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


# --- the shipped models: the same outputs as before the move, and each one a model --------------------------
# tests/data/shipped_logits.npz was written by the flat-folder package (commit cf8fa98, version 0.1), before the
# move into folders: the shipped models' logits on four test examples of their task.
RECORDED = np.load(ROOT / "tests" / "data" / "shipped_logits.npz")


@pytest.mark.parametrize("name", ["reverse", "dates", "sentiment"])
def test_shipped_model_gives_bit_for_bit_the_logits_recorded_before_the_move(name):
    model = tn.load_model(shipped_path(name))
    inputs = [RECORDED[f"{name}/ids"]] if name == "sentiment" else [RECORDED[f"{name}/src"], RECORDED[f"{name}/tgt"]]
    logits = model(*inputs)
    assert logits.dtype == RECORDED[f"{name}/logits"].dtype
    np.testing.assert_array_equal(logits, RECORDED[f"{name}/logits"])


@pytest.mark.parametrize("name, cls", [("reverse", tn.Transformer), ("dates", tn.Transformer),
                                       ("sentiment", tn.Classifier)])
def test_every_shipped_checkpoint_loads_through_load_model_and_predicts(name, cls):
    task, _, _, _ = tn.training.load_trained(name)
    model = tn.load_model(shipped_path(name))
    assert type(model) is cls and model.config == task.config
    x, y = task.test[0]
    ids = np.array([task.tokenizer.encode(x)])
    if cls is tn.Classifier:
        assert model.predict(ids).tolist() == [y]
    else:
        session = tn.decoding.Seq2SeqSession(model, ids, bos_id=tn.training.BOS)
        out = tn.decoding.greedy(session, 20, eos_id=tn.training.EOS)[0]
        assert task.tokenizer.decode(out) == y


# --- version 0.1's flat names are gone (CHANGELOG), and say so the way Python does ---------------------------
def test_version_0_1_names_are_gone_and_the_current_ones_warn_about_nothing():
    import importlib

    for old in ("generate", "nn", "train", "transformer_forward", "lm_forward"):
        with pytest.raises(AttributeError, match=f"no attribute '{old}'"):
            getattr(tn, old)
    with pytest.raises(ModuleNotFoundError):
        importlib.import_module("transformer_np.nn")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the current names warn about nothing
        assert tn.viz.heatmap and tn.pretrained.load_minilm and tn.interop.from_torch
    with pytest.raises(AttributeError, match="no attribute 'nonsense'"):
        tn.nonsense  # noqa: B018


# --- the README says each thing once ------------------------------------------------------------------------
def paragraphs(text):
    """Blank-line-separated blocks, whitespace collapsed."""
    return [re.sub(r"\s+", " ", block).strip() for block in re.split(r"\n\s*\n", text)]


def test_readme_has_no_paragraph_twice():
    long = [p for p in paragraphs((ROOT / "README.md").read_text(encoding="utf-8")) if len(p) >= 200]
    twice = sorted({p[:80] for p in long if long.count(p) > 1})
    assert not twice, f"paragraphs written twice: {twice}"


def test_the_duplicate_check_finds_a_repeated_paragraph():
    block = "x" * 250
    long = [p for p in paragraphs(f"intro\n\n{block}\n\nmiddle\n\n{block}\n") if len(p) >= 200]
    assert long.count(block) == 2


def test_the_pretrained_readers_import_nothing_from_the_compression_chapter():
    # pretrained/ sits above efficient/ on the floors, but a file reader must not need the chapter on compression:
    # what both use (stored weights, the narrow float tables) lives in core.weights
    wrong = [(m, i) for m, imports in GRAPH.items() if m.startswith("transformer_np.pretrained")
             for i in imports if i.startswith("transformer_np.efficient")]
    assert not wrong, f"pretrained -> efficient imports: {wrong}"
