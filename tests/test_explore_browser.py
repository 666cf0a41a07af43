"""The explorer page in a real browser (headless Chromium through Playwright): it loads with no console error and
no request but its own file, the head view draws exactly the model's weights for the layer and head chosen,
hovering a token keeps only its lines, and a click in the model view opens that head.  Skipped, with the reason,
where no browser can be started (make test installs Debian's chromium and Playwright's client)."""

import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from helpers import skip_without_smollm2

from transformer_np.viz import explorer as X


def chromium_path():
    for name in (os.environ.get("CHROMIUM"), "chromium", "chromium-browser", "google-chrome"):
        if name and shutil.which(name):
            return shutil.which(name)
    return None


@pytest.fixture(scope="module")
def browser():
    sync_api = pytest.importorskip("playwright.sync_api", reason="Playwright's client is not installed")
    path = chromium_path()
    if path is None:
        pytest.skip("no Chromium on this machine (Debian: apt-get install chromium)")
    with sync_api.sync_playwright() as p:
        try:
            b = p.chromium.launch(executable_path=path, args=["--no-sandbox"])
        except Exception as e:  # noqa: BLE001 - any failure to start the browser is a reason to skip
            pytest.skip(f"Chromium could not be started: {e}")
        yield b
        b.close()


@pytest.fixture(scope="module")
def dates_page(tmp_path_factory):
    text = "the 3rd of March, 2021"
    title, atts = X.attentions("dates", text)
    path = tmp_path_factory.mktemp("explore") / "dates.html"
    X.Page(X.render(X.page_data(title, atts))).save(path)
    return path, atts


def open_page(browser, path):
    page = browser.new_page()
    log = {"errors": [], "requests": []}
    page.on("console", lambda m: log["errors"].append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: log["errors"].append(str(e)))
    page.on("request", lambda r: log["requests"].append(r.url))
    page.goto(path.as_uri())
    return page, log


def drawn_lines(page):
    js = "ls => ls.map(l => [+l.dataset.q, +l.dataset.k, +l.dataset.w, +l.getAttribute('stroke-opacity')])"
    return page.eval_on_selector_all("#head-svg line", js)


def test_page_loads_with_no_error_and_no_request_but_its_own(browser, dates_page):
    path, _ = dates_page
    page, log = open_page(browser, path)
    assert page.inner_text("#title").startswith("dates: 'the 3rd of March, 2021'")
    assert log["errors"] == [] and log["requests"] == [path.as_uri()]
    page.close()


@pytest.mark.parametrize("att,layer,head", [(0, 0, 0), (1, 1, 2), (2, 1, 3)])
def test_head_view_draws_exactly_the_chosen_heads_weights(browser, dates_page, att, layer, head):
    path, atts = dates_page
    page, _ = open_page(browser, path)
    page.select_option("#attention", str(att))
    page.select_option("#layer", str(layer))
    page.select_option("#head", str(head))
    want = atts[att].weights[layer, head]  # (T_q, T_k) float32
    lines = drawn_lines(page)
    assert len(lines) == np.count_nonzero(want)
    for q, k, w, _ in lines:
        assert np.float32(w) == want[q, k]  # JavaScript's float32 -> string -> float64, back to float32: exact
    page.close()


def test_hovering_a_token_keeps_only_its_lines(browser, dates_page):
    path, atts = dates_page
    page, _ = open_page(browser, path)
    page.hover("#head-svg text.query[data-i='4']")
    lines = drawn_lines(page)
    assert all(o == (w if q == 4 else 0) for q, _, w, o in lines)
    assert any(o > 0 for q, _, _, o in lines if q == 4)
    page.mouse.move(0, 0)
    assert all(o == w for _, _, w, o in drawn_lines(page))
    page.close()


def test_clicking_a_thumbnail_in_the_model_view_opens_that_head(browser, dates_page):
    path, atts = dates_page
    page, _ = open_page(browser, path)
    page.click("canvas.thumb[data-layer='1'][data-head='3']")
    assert page.input_value("#layer") == "1" and page.input_value("#head") == "3"
    assert "layer 1, head 3" in page.inner_text("#head-view h2")
    assert page.eval_on_selector("canvas.thumb.selected", "c => c.dataset.layer + ',' + c.dataset.head") == "1,3"
    page.close()


def test_a_long_input_stays_usable_in_blocks(browser, tmp_path):
    # SmolLM2 on ~650 tokens: 30 layers x 9 heads x 650² weights would be 114 M numbers; the page groups them
    from transformer_np.efficient.quality import eval_text

    skip_without_smollm2()
    title, atts = X.attentions("smollm2", eval_text()[:2600])  # grouped as each layer ran
    (att,) = atts
    assert att.block > 1 and len(att.queries) * att.block >= 512
    data = X.page_data(title, atts)
    assert data["block"] == att.block
    path = tmp_path / "long.html"
    X.Page(X.render(data)).save(path)
    page, log = open_page(browser, path)
    assert "grouped in blocks of" in page.inner_text("#note")
    page.select_option("#layer", "20")
    assert page.eval_on_selector_all("#head-svg text.query", "ts => ts.length") == len(att.queries)
    assert page.eval_on_selector_all("canvas.thumb", "cs => cs.length") == 30 * 9
    assert log["errors"] == []
    page.close()


def test_generation_view_shows_the_generated_tokens_and_the_cache_growing(browser, tmp_path):
    skip_without_smollm2()
    text = "The capital of France is"
    prompt, steps = X.llm_generation(text, 6)
    path = X.explore("smollm2", text, generate=6).save(tmp_path / "gen.html")
    page, log = open_page(browser, Path(path))
    page.select_option("#layer", "7")
    page.select_option("#head", "2")
    seen = []
    for i, st in enumerate(steps):
        page.eval_on_selector("#step", f"s => {{ s.value = {i}; s.dispatchEvent(new Event('input')); }}")
        assert page.inner_text("#new-token") == st["token"].strip("\n") or st["token"].isspace()
        assert f"{st['positions']} positions" in page.inner_text("#kv")
        drawn = page.eval_on_selector_all(".gen-token", "ts => ts.map(t => +t.dataset.w)")
        assert [np.float32(w) for w in drawn] == list(st["weights"][7, 2])
        seen.append(st["token"])
    assert page.eval_on_selector("#generated", "p => p.textContent") == "".join(prompt) + "".join(seen)
    assert log["errors"] == []
    page.close()


def test_compare_view_shows_each_steps_kl(browser, tmp_path):
    skip_without_smollm2()
    text = "The capital of France is"
    _, steps = X.llm_generation(text, 4, compare="bf16")
    path = X.explore("smollm2", text, generate=4, compare="bf16").save(tmp_path / "cmp.html")
    page, log = open_page(browser, Path(path))
    assert [float(k) for k in page.eval_on_selector_all(".kl-bar", "bs => bs.map(b => b.dataset.kl)")] == \
        [st["compare"]["kl"] for st in steps]
    for i, st in enumerate(steps):
        page.eval_on_selector("#step", f"s => {{ s.value = {i}; s.dispatchEvent(new Event('input')); }}")
        assert f"{st['compare']['kl']:.3e}".replace("e-0", "e-") in page.inner_text("#kl")
        assert page.eval_on_selector_all("#top-k tr", "rs => rs.length") == 6  # header + top 5, both models
    assert log["errors"] == []
    page.close()


def test_encoder_decoder_generation_view_shows_self_and_cross_attention_per_step(browser, tmp_path):
    text = "the 3rd of March, 2021"
    prompt, source, steps = X.task_generation("dates", text, 20, compare="int8")
    path = X.explore("dates", text, generate=20, compare="int8").save(tmp_path / "dates_gen.html")
    page, log = open_page(browser, Path(path))
    page.select_option("#attention", "2")
    page.select_option("#layer", "1")
    page.select_option("#head", "1")
    assert page.eval_on_selector_all(".gen-source", "ts => ts.map(t => t.textContent)") == source
    for i, st in enumerate(steps):
        page.eval_on_selector("#step", f"s => {{ s.value = {i}; s.dispatchEvent(new Event('input')); }}")
        assert page.inner_text("#new-token") == st["token"]
        assert f"{i + 1} position" in page.inner_text("#kv") and f"source's {len(source)}" in page.inner_text("#kv")
        own = page.eval_on_selector_all(".gen-token", "ts => ts.map(t => +t.dataset.w)")
        cross = page.eval_on_selector_all(".gen-source", "ts => ts.map(t => +t.dataset.w)")
        assert [np.float32(w) for w in own] == list(st["weights"][1, 1])
        assert [np.float32(w) for w in cross] == list(st["cross"][1, 1])
        assert f"{st['compare']['kl']:.3e}".replace("e-0", "e-") in page.inner_text("#kl")
    text_out = "".join(prompt) + "".join(st["token"] for st in steps)
    assert text_out == "<s>2021-03-03</s>"
    assert page.eval_on_selector("#generated", "p => p.textContent") == text_out
    assert log["errors"] == []
    page.close()


def test_the_notebook_iframe_runs_the_page(browser, tmp_path):
    # what Jupyter shows: the page in an iframe's srcdoc — escaped once, it must still run its script
    shown = X.explore("reverse", "31415", generate=8)._repr_html_()
    path = tmp_path / "cell.html"
    path.write_text(f"<!DOCTYPE html><html><body>{shown}</body></html>", encoding="utf-8")
    page, log = open_page(browser, path)
    frame = page.frames[1]
    assert frame.inner_text("#title").startswith("reverse: '31415' -> '51413'")
    assert frame.eval_on_selector_all("#head-svg line", "ls => ls.length") > 0
    assert frame.inner_text("#new-token") == "5"  # the generation view's first step
    assert log["errors"] == []
    page.close()


def test_a_long_generation_shows_positions_in_blocks(browser, tmp_path):
    text = "the 3rd of March, 2021"
    _, source, steps = X.task_generation("dates", text, 12)
    page_obj = X.explore("dates", text, generate=12, max_weights=1500)  # small budget: blocks everywhere
    data = X.page_data(*X.attentions("dates", text), max_weights=1500,
                       generation={"prompt": ["<s>"], "source": source, "steps": steps})
    b = data["generation"]["block"]
    assert b > 1
    page, log = open_page(browser, Path(page_obj.save(tmp_path / "blocks.html")))
    page.select_option("#attention", "2")
    page.select_option("#layer", "1")
    page.select_option("#head", "1")
    assert f"blocks of {b}" in page.inner_text("#generation-view")
    for i in (0, 5, len(steps) - 1):
        page.eval_on_selector("#step", f"s => {{ s.value = {i}; s.dispatchEvent(new Event('input')); }}")
        own = page.eval_on_selector_all(".gen-token", "ts => ts.map(t => +t.dataset.w)")
        cross = page.eval_on_selector_all(".gen-source", "ts => ts.map(t => +t.dataset.w)")
        assert [np.float32(w) for w in own] == list(X.group_positions(steps[i]["weights"], b)[1, 1])
        assert [np.float32(w) for w in cross] == list(X.group_positions(steps[i]["cross"], b)[1, 1])
        assert len(cross) == -(-len(source) // b)
    assert log["errors"] == []
    page.close()
