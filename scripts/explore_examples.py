"""Write the explorer's example pages (docs/explore/MODEL.html, one per model kind; SmolLM2's with 8 generated
tokens and the dates model's whole output, each compared with its int8 weights) and screenshots of the head,
model and generation views (docs/explore_*.png) through headless Chromium.

    python scripts/explore_examples.py          (needs the MiniLM and SmolLM2 weights, Playwright and chromium)
"""

import shutil
from pathlib import Path

from transformer_np.viz import explore

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = {"dates": "the 3rd of March, 2021", "sentiment": "the food was dull but the service was charming",
            "minilm": "The cat sat on the mat.", "smollm2": "The capital of France is"}


def main():
    out = ROOT / "docs" / "explore"
    out.mkdir(parents=True, exist_ok=True)
    for model, text in EXAMPLES.items():
        extra = {"smollm2": {"generate": 8, "compare": "int8"},
                 "dates": {"generate": 12, "compare": "int8"}}.get(model, {})  # dates: 10 characters and </s>
        path = explore(model, text, **extra).save(out / f"{model}.html")
        print(f"{Path(path).relative_to(ROOT)}: {Path(path).stat().st_size:,} bytes")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=shutil.which("chromium"), args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1200, "height": 760})
        page.goto((out / "dates.html").as_uri())
        page.select_option("#attention", "2")  # cross-attention: the output characters reading the input
        page.select_option("#layer", "1")
        page.hover("#head-svg text.query[data-i='3']")
        page.screenshot(path=str(ROOT / "docs" / "explore_head_view.png"))
        page.select_option("#head", "1")  # layer 1, head 1: the month's digit is read off "March" (0.97 of it)
        page.eval_on_selector("#step", "s => { s.value = 5; s.dispatchEvent(new Event('input')); }")  # after '2021-'
        page.locator("#generation-view").screenshot(path=str(ROOT / "docs" / "explore_seq2seq_generation_view.png"))
        page.goto((out / "smollm2.html").as_uri())
        page.click("canvas.thumb[data-layer='5'][data-head='4']")
        page.screenshot(path=str(ROOT / "docs" / "explore_model_view.png"))
        page.eval_on_selector("#step", "s => { s.value = 1; s.dispatchEvent(new Event('input')); }")
        page.locator("#generation-view").screenshot(path=str(ROOT / "docs" / "explore_generation_view.png"))
        browser.close()
    print("wrote docs/explore_head_view.png, docs/explore_model_view.png, docs/explore_generation_view.png, "
          "docs/explore_seq2seq_generation_view.png")


if __name__ == "__main__":
    main()
