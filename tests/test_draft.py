"""The distilled draft head (efficient/draft.py): its backward passes finite differences, distillation lowers the
loss, its file round-trips and refuses damage, and drafting with it keeps speculative decoding exact (greedy:
the same tokens; sampling: tests/test_speculative.py's chi-square test runs with it too)."""

import functools

import numpy as np
import pytest
from helpers import numeric_grad, skip_without_smollm2, tiny_llama

from transformer_np import decoding
from transformer_np.core.tree import flatten
from transformer_np.efficient.draft import (
    EVAL_PROMPTS,
    TRAIN_PROMPTS,
    DraftHead,
    HeadConfig,
    HeadDraft,
    distill,
    distill_loss,
    frequent_rows,
    head_backward,
    head_forward,
    init_head_params,
    load_shipped_head,
    teacher_features,
)
from transformer_np.efficient.speculative import speculative_generate
from transformer_np.pretrained.llama import LlamaModel


def tiny_target(seed=0, vocab_size=19):
    params, cfg = tiny_llama(np.random.default_rng(seed), vocab_size=vocab_size, n_layers=2)
    return LlamaModel(params, cfg, tokenizer=None, name="tiny")


TINY = HeadConfig(d_model=16, n_heads=4, n_kv_heads=2, d_ff=24, rows=12, rope_base=1000.0)


def f64(tree):
    return {k: f64(v) for k, v in tree.items()} if isinstance(tree, dict) else np.asarray(tree, np.float64)


def finite_difference(loss, leaf, n, rng):
    """[(index, d loss / d leaf[index])] by central differences at n random entries of leaf."""
    at = [np.unravel_index(i, leaf.shape) for i in rng.choice(leaf.size, size=n, replace=False)]
    g = numeric_grad(loss, leaf, at=at)
    return [(i, g[i]) for i in at]


def test_head_backward_matches_finite_differences():
    rng = np.random.default_rng(0)
    p = f64(init_head_params(TINY, seed=1))
    feats, emb = rng.standard_normal((2, 1, 7, 16))
    dout = rng.standard_normal((1, 7, 16))
    positions = np.arange(7)
    out, cache = head_forward(feats, emb, p, TINY, positions)
    assert out.shape == (1, 7, 16) and out.dtype == np.float64
    grads = flatten(head_backward(dout, cache, p, TINY))
    flat = flatten(p)
    assert set(grads) == set(flat)

    def loss():
        return float(np.sum(head_forward(feats, emb, p, TINY, positions)[0] * dout))

    for path, leaf in flat.items():
        for idx, numeric in finite_difference(loss, leaf, 3, rng):
            np.testing.assert_allclose(grads[path][idx], numeric, rtol=1e-5, atol=1e-7, err_msg=path)


def test_distill_loss_gradient_matches_finite_differences():
    rng = np.random.default_rng(1)
    p = f64(init_head_params(TINY, seed=2))
    feats, emb = rng.standard_normal((2, 1, 6, 16))
    feats *= 1.5  # some |f̂ - f| above 1: both branches of SmoothL1
    w_rows = rng.standard_normal((16, 12))
    loss, grads, parts = distill_loss(p, TINY, feats, emb, w_rows, reg_weight=0.7)
    assert parts["kl"] >= 0 and parts["reg"] > 0 and loss == pytest.approx(parts["kl"] + 0.7 * parts["reg"])
    flat, grads = flatten(p), flatten(grads)
    for path in ("fc/w", "fc/b", "block/attn/w_k", "block/ffn/w_down", "block/ffn_norm/gamma"):
        for idx, numeric in finite_difference(lambda: distill_loss(p, TINY, feats, emb, w_rows, 0.7)[0],
                                              flat[path], 4, rng):
            np.testing.assert_allclose(grads[path][idx], numeric, rtol=1e-5, atol=1e-8, err_msg=path)


def test_an_identity_head_on_a_constant_text_has_zero_loss():
    # W_fc = [0; I] and the block's residual branches zeroed: f̂_{t+1} = f_t, exactly the teacher when f is constant
    p = f64(init_head_params(TINY))
    p["fc"]["w"] = np.vstack([np.zeros((16, 16)), np.eye(16)])
    p["block"]["attn"]["w_o"][:] = 0
    p["block"]["ffn"]["w_down"][:] = 0
    rng = np.random.default_rng(2)
    f = np.repeat(rng.standard_normal((1, 1, 16)), 6, axis=1)
    loss, _, parts = distill_loss(p, TINY, f, rng.standard_normal((1, 6, 16)), rng.standard_normal((16, 12)))
    assert abs(parts["kl"]) < 1e-12 and parts["reg"] == 0 and parts["top1"] == 1.0
    p["fc"]["b"][:] = 0.5  # shifted by 0.5: SmoothL1 = 0.5²/2 per feature, and the KL becomes positive
    _, _, parts = distill_loss(p, TINY, f, rng.standard_normal((1, 6, 16)), rng.standard_normal((16, 12)))
    assert parts["reg"] == pytest.approx(0.125) and parts["kl"] > 1e-6


@functools.cache
def trained_tiny_head(steps=40):
    target = tiny_target()
    rng = np.random.default_rng(3)
    seqs = [list(rng.integers(0, 19, 16)) for _ in range(6)]
    head, history = distill(target, seqs, cfg=TINY, steps=steps, lr=3e-3, warmup=5, seed=0)
    return target, seqs, head, history


def test_distillation_lowers_the_loss_on_a_tiny_target():
    target, seqs, head, _ = trained_tiny_head()
    feats = teacher_features(target, seqs)
    table = target.params["embed"]["table"]
    w_rows = np.asarray(target.output_weight())[:, head.rows]

    def mean_loss(params):
        return np.mean([distill_loss(params, TINY, f[None], table[np.array(s)][None], w_rows)[0]
                        for s, f in zip(seqs, feats)])

    before, after = mean_loss(f64(init_head_params(TINY, seed=0))), mean_loss(f64(head.params))
    assert after < 0.5 * before


def test_frequent_rows_are_the_most_common_tokens_first():
    rows = frequent_rows([[5, 5, 5, 2, 2, 7], [2, 9, 5]], 10, 3)
    assert rows.tolist() == [5, 2, 7]  # 5 four times, 2 three times, then the ties 7 and 9: the smaller id


def test_greedy_with_the_head_equals_plain_greedy_on_a_tiny_target():
    target, seqs, head, _ = trained_tiny_head()
    accepted = 0
    for prompt in ([1, 2, 3], seqs[0][:8]):
        plain = decoding.greedy(decoding.LMSession(target, [prompt]), 24)[0]
        for gamma in (1, 3, 5):
            out, stats = speculative_generate(target, HeadDraft(head, target), prompt, 24, gamma)
            assert out == plain
            assert stats.drafted > 0 and stats.produced == 24
            accepted += stats.accepted
    assert accepted > 10  # drafts were kept: the rollback of the head's guesses ran


def test_the_head_file_round_trips_and_refuses_damage(tmp_path):
    _, _, head, _ = trained_tiny_head()
    path = tmp_path / "head.npz"
    head.save(path)
    back = DraftHead.load(path)
    assert back.config == head.config and np.array_equal(back.rows, head.rows) and back.info == head.info
    for k, v in flatten(head.params).items():
        np.testing.assert_array_equal(flatten(back.params)[k], np.asarray(v, np.float16).astype(np.float32))
    with np.load(path, allow_pickle=False) as z:
        arrays = dict(z)
    arrays["fc/b"] = arrays["fc/b"] + np.float16(1)  # a changed weight: the header's SHA-256 no longer matches
    np.savez(tmp_path / "damaged.npz", **arrays)
    with pytest.raises(ValueError, match="SHA-256"):
        DraftHead.load(tmp_path / "damaged.npz")
    arrays = dict(arrays)
    del arrays["fc/b"]
    np.savez(tmp_path / "short.npz", **arrays)
    with pytest.raises(ValueError, match="missing"):
        DraftHead.load(tmp_path / "short.npz")


def test_the_head_draft_needs_a_feature_target_and_its_width():
    from transformer_np.efficient.speculative import ModelDraft

    _, _, head, _ = trained_tiny_head()
    with pytest.raises(TypeError, match="FeatureLM"):
        HeadDraft(head, ModelDraft(tiny_target()))
    wide = DraftHead(init_head_params(HeadConfig(d_model=32, n_heads=4, n_kv_heads=2, d_ff=24, rows=12)),
                     HeadConfig(d_model=32, n_heads=4, n_kv_heads=2, d_ff=24, rows=12), head.rows)
    with pytest.raises(ValueError, match="wide"):
        HeadDraft(wide, tiny_target())
    with pytest.raises(TypeError, match="Draft"):
        speculative_generate(tiny_target(), object(), [1, 2], 3)


def test_training_and_evaluation_prompts_are_disjoint():
    assert not set(TRAIN_PROMPTS) & set(EVAL_PROMPTS)
    assert len(EVAL_PROMPTS) == 20 and len(set(EVAL_PROMPTS)) == 20


def test_the_shipped_head_drafts_smollm2_answers_exactly():
    """Evaluation prompts (none in the head's training texts): speculative decoding with the shipped head gives
    plain greedy decoding's answer token for token.  Two prompts here (the suite's time); `bench speculative`
    compares all 20, 64 tokens each, at every γ and in two weight formats, and records how many were the same."""
    from transformer_np.pretrained.llama import load_smollm2

    skip_without_smollm2()
    model, head = load_smollm2(), load_shipped_head()
    assert head.config == HeadConfig.for_target(model.config, rows=head.config.rows)
    accepted = drafted = 0
    for text in EVAL_PROMPTS[2:4]:
        ids = model.chat_ids([{"role": "user", "content": text}])
        out, stats = speculative_generate(model, HeadDraft(head, model), ids, 32, 3, eos_id=model.eos_id)
        assert out == model.generate(ids, 32), text
        accepted, drafted = accepted + stats.accepted, drafted + stats.drafted
    assert accepted > 0.03 * drafted  # a trained head: an untrained one is accepted ~0% of the time


def test_distill_draft_writes_a_head_that_drafts_exactly(tmp_path, capsys):
    from transformer_np.cli.main import main

    skip_without_smollm2()
    out, kept = tmp_path / "head.npz", tmp_path / "teacher.npz"
    quick = ["distill-draft", "--out", str(out), "--steps", "3", "--texts", "2", "--rows", "512", "--features",
             str(kept)]
    assert main(quick) == 0
    printed = capsys.readouterr().out
    assert "2 texts" in printed and f"wrote {out}" in printed and "teacher features:" in printed
    head = DraftHead.load(out)
    assert head.config.rows == 512 and head.info["steps"] == 3 and head.info["sequences"] == 2 - 1  # one held out
    assert main([*quick, "--noise", "0.1"]) == 0  # the teacher's features are read back, not recomputed
    assert f"teacher features read from {kept}" in capsys.readouterr().out
    noisy = DraftHead.load(out)
    assert noisy.info["noise"] == 0.1 and not np.array_equal(noisy.params["fc"]["w"], head.params["fc"]["w"])
    assert main(["distill-draft", "--out", str(tmp_path / "no" / "h.npz")]) == 2
    assert "--out" in capsys.readouterr().err


def test_distill_keeps_each_text_with_its_features_and_refuses_a_mismatch():
    target = tiny_target()
    seqs = [[1], [2, 3, 4], [5, 6]]  # the one-token text is dropped with its features, not beside them
    feats = teacher_features(target, seqs)
    head, _ = distill(target, seqs, feats, cfg=TINY, steps=2, warmup=1)
    assert head.info["sequences"] == 2 and head.info["tokens"] == 5
    with pytest.raises(ValueError, match="one \\(T, C\\) array per sequence"):
        distill(target, seqs, feats[1:], cfg=TINY, steps=2)
