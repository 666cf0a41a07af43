"""Training: the optimiser, the tasks and their splits, resuming bit for bit, bad checkpoints, and the
quality of the shipped trained models."""

import datetime
import json
from pathlib import Path

import numpy as np
import pytest

import transformer_np as tn
from transformer_np import training as tr
from transformer_np.core.tree import flatten
from transformer_np.training import optim, tasks

CHECKPOINTS = Path(tn.__file__).parent / "checkpoints"


# --- the optimiser -------------------------------------------------------------------------------------
def test_noam_schedule_warms_up_linearly_then_decays_as_inverse_sqrt():
    lr = [optim.noam_lr(s, 512, warmup=100) for s in range(1, 1001)]
    assert np.argmax(lr) == 99  # the peak is at step = warmup
    np.testing.assert_allclose(lr[49] / lr[24], 2.0)  # linear warm-up
    np.testing.assert_allclose(lr[399] / lr[999], np.sqrt(1000 / 400))  # 1/sqrt(step) after it
    np.testing.assert_allclose(lr[99], 512**-0.5 * 100**-0.5)
    with pytest.raises(ValueError, match="step counts from 1"):
        optim.noam_lr(0, 512)


def test_clipping_scales_the_whole_tree_to_max_norm():
    g = {"a": np.array([3.0, 0.0]), "b": [np.array([[4.0]])]}
    clipped, norm = optim.clip_by_global_norm(g, 1.0)
    assert norm == 5.0
    np.testing.assert_allclose(optim.global_norm(clipped), 1.0)
    np.testing.assert_allclose(clipped["a"], [0.6, 0.0])
    same, _ = optim.clip_by_global_norm(g, 10.0)
    assert same is g


def test_adam_equals_torch_adam():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(0)
    w = rng.standard_normal((3, 4))
    targets = [rng.standard_normal((3, 4)) for _ in range(5)]
    tw = torch.tensor(w, requires_grad=True)
    topt = torch.optim.Adam([tw], lr=0.01, betas=(0.9, 0.98), eps=1e-9)
    params, state = {"w": w}, optim.adam_init({"w": w})
    for t in targets:
        topt.zero_grad()
        ((tw - torch.tensor(t)) ** 2).sum().backward()
        topt.step()
        params, state = optim.adam_step(params, {"w": 2 * (params["w"] - t)}, state, 0.01)
    np.testing.assert_allclose(params["w"], tw.detach().numpy(), atol=1e-12)
    assert state["step"] == 5


# --- the tasks -----------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", sorted(tasks.TASKS))
def test_held_out_examples_never_appear_in_training(name):
    task = tasks.get_task(name)
    train_inputs = {x for x, _ in task.train}
    assert not train_inputs & {x for x, _ in task.val + task.test}
    if name == "dates":  # stronger: the held-out dates are unseen in every format
        train_dates = {y for _, y in task.train}
        assert not train_dates & {y for _, y in task.val + task.test}


def test_date_formats_and_targets():
    forms = tasks.date_formats(datetime.date(2021, 3, 3))
    assert forms == ["the 3rd of March, 2021", "3 Mar 21", "March 3rd 2021", "Mar 3, 2021", "3/3/2021",
                     "2021.03.03", "Wednesday, 3 March 2021"]
    assert [tasks.ordinal(d) for d in (1, 2, 3, 4, 11, 12, 13, 21, 22, 23)] == \
        ["1st", "2nd", "3rd", "4th", "11th", "12th", "13th", "21st", "22nd", "23rd"]


def test_sentiment_grammar_labels_follow_negation_and_contrast():
    labels = dict(tasks.sentiment_sentences())
    assert labels["the plot was not bad at all"] == 1
    assert labels["the acting was hardly the best"] == 0
    assert labels["the food was good"] == 1 and labels["the food was not good"] == 0
    assert labels["the movie is very boring"] == 0
    contrast = [s for s in labels if " but " in s]
    assert contrast and all(labels[s] == tasks._polarity(s.split()[-1]) ^ ("not" in s.split(" but ")[1])
                            for s in contrast)


def test_tokenizers_round_trip():
    task = tasks.get_task("dates")
    ids = task.tokenizer.encode("the 3rd of March, 2021", bos=True, eos=True)
    assert ids[0] == tasks.BOS and ids[-1] == tasks.EOS
    assert task.tokenizer.decode(ids) == "the 3rd of March, 2021"
    words = tasks.get_task("sentiment").tokenizer
    assert words.decode(words.encode("the movie was not bad at all")) == "the movie was not bad at all"


# --- the loop, checkpoints, resuming ---------------------------------------------------------------------
def test_a_few_steps_make_the_loss_fall(tmp_path):
    metrics = tr.train("sentiment", steps=100, out_dir=tmp_path, eval_every=1000)
    ckpt = tr.load_training(tmp_path / "model.npz", tasks.get_task("sentiment"))
    loss = ckpt[3]["loss"]
    assert np.mean(loss[-8:]) < 0.5 * np.mean(loss[:8])  # 0.73 -> 0.24 measured
    assert metrics["steps"] == 100 and metrics["history"]["loss"] == loss  # the loop returns its history
    assert json.loads((tmp_path / "metrics.json").read_text())["test"]["n"] == 2000


def test_resumed_run_continues_bit_for_bit(tmp_path):
    kw = dict(eval_every=1000, save_every=3)
    tr.train("reverse", steps=6, out_dir=tmp_path / "straight", **kw)
    tr.train("reverse", steps=3, out_dir=tmp_path / "stopped", **kw)
    tr.train("reverse", steps=6, out_dir=tmp_path / "stopped", resume=True, **kw)
    task = tasks.get_task("reverse")
    a = tr.load_training(tmp_path / "straight" / "model.npz", task)
    b = tr.load_training(tmp_path / "stopped" / "model.npz", task)
    for x, y in ((a[0], b[0]), (a[1]["m"], b[1]["m"]), (a[1]["v"], b[1]["v"])):
        fx, fy = flatten(x), flatten(y)
        assert all(np.array_equal(fx[k], fy[k]) for k in fx)
    assert a[3] == b[3] and a[2].bit_generator.state == b[2].bit_generator.state


def test_bad_checkpoints_and_tasks_are_rejected(tmp_path):
    tr.train("sentiment", steps=2, out_dir=tmp_path, eval_every=1000)
    path = tmp_path / "model.npz"
    with pytest.raises(ValueError, match="config differs from task 'reverse'"):
        tr.load_training(path, tasks.get_task("reverse"))
    path.write_bytes(path.read_bytes()[:1000])
    with pytest.raises(ValueError, match="not a readable transformer_np checkpoint"):
        tr.train("sentiment", steps=4, out_dir=tmp_path, resume=True)
    with pytest.raises(ValueError, match="unknown task 'poetry'"):
        tr.train("poetry", steps=1, out_dir=tmp_path)
    with pytest.raises(ValueError, match="steps must be a positive integer"):
        tr.train("reverse", steps=0, out_dir=tmp_path)


def test_non_finite_loss_stops_and_keeps_the_last_good_checkpoint(tmp_path, monkeypatch):
    kw = dict(out_dir=tmp_path, eval_every=1000, save_every=2)
    tr.train("reverse", steps=2, **kw)
    before = (tmp_path / "model.npz").read_bytes()
    real = tr.loss_and_grads
    calls = []

    def poisoned(*a):
        calls.append(1)
        loss, grads = real(*a)
        return (np.nan if len(calls) == 2 else loss), grads

    monkeypatch.setattr(tr.loop, "loss_and_grads", poisoned)
    with pytest.raises(tr.NonFiniteLoss, match="step 4: loss is nan"):
        tr.train("reverse", steps=6, resume=True, **kw)
    assert (tmp_path / "model.npz").read_bytes() == before


# --- the shipped models ----------------------------------------------------------------------------------
QUALITY = {"reverse": 0.99, "dates": 0.98, "sentiment": 0.95}


@pytest.mark.parametrize("name", sorted(QUALITY))
def test_shipped_model_reaches_its_quality_on_held_out_data(name):
    task, params, history, recorded = tr.load_trained(name)
    result = tr.evaluate(task, params, task.test)
    assert result == recorded  # the metrics stored with the model are what it does
    assert result["accuracy"] >= QUALITY[name], result
    if name == "sentiment":
        assert result["negated_accuracy"] >= QUALITY[name], result


def test_a_character_level_lm_on_the_package_docstrings_learns_in_a_few_steps():
    from transformer_np.training.loop import train_char_lm
    from transformer_np.training.tasks import docstring_corpus

    corpus = docstring_corpus()
    assert len(corpus) > 20_000 and "attention" in corpus
    model, tok, history = train_char_lm(corpus, steps=40, context=32, batch_size=8, eval_every=20, eval_windows=8)
    losses = history["loss"]
    assert np.mean(losses[-5:]) < np.mean(losses[:5]) - 0.5  # measured: 5.1 -> about 3.3 nats
    assert model.config.vocab_size == len(tok) and tok.decode(tok.encode("the cat")) == "the cat"
    (s1, v1), (s2, v2) = history["val"]  # the held-out tail of the text, at steps 20 and 40
    assert (s1, s2) == (20, 40) and v2 < v1 < np.log(len(tok)) + 0.5
    with pytest.raises(ValueError, match="longer than context"):
        train_char_lm("tiny text", steps=1, context=64)
    with pytest.raises(ValueError, match="validation must be a fraction in \\[0, 1\\), got 1.5"):
        train_char_lm(corpus, steps=1, validation=1.5)


def test_held_out_loss_is_the_mean_next_token_cross_entropy_of_the_windows():
    from transformer_np.model.models import lm_logits
    from transformer_np.training.loop import next_token_loss

    cfg = tn.TransformerConfig(d_model=16, n_heads=2, n_encoder_layers=0, n_decoder_layers=1, d_ff=32,
                               vocab_size=11, max_len=8, architecture="decoder-only", dropout=0.0)
    params = tn.model.init_params(cfg, 0)
    windows = np.random.default_rng(0).integers(0, 11, (3, 9))
    logits = lm_logits(params, windows[:, :-1], cfg)[0].astype(np.float64)
    want = np.mean([-(logits[b, t, windows[b, t + 1]] - np.log(np.exp(logits[b, t]).sum()))
                    for b in range(3) for t in range(8)])  # one token at a time
    assert abs(next_token_loss(params, windows, cfg) - want) < 1e-6
