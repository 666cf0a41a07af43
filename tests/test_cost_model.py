"""The cost model against brute counting: every matrix product of a real forward counted by torch's FLOP counter
(an implementation we did not write), the KV cache's bytes by the cache itself, parameters by the params tree;
and Pope et al.'s Table 1 recomputed from PaLM 540B's published shape."""

import dataclasses

import numpy as np
import pytest
from helpers import tiny_llama

from transformer_np.core.tree import count_params, tree_map
from transformer_np.decoding.cache import new_cache
from transformer_np.efficient import cost_model as cm
from transformer_np.model.config import TransformerConfig
from transformer_np.model.models import lm_logits
from transformer_np.model.params import init_params
from transformer_np.model.stacks import encoder
from transformer_np.pretrained.llama import LlamaConfig, llama_logits


def counted_flops(fn):
    torch = pytest.importorskip("torch")
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter, torch.no_grad():
        fn()
    return counter.get_total_flops()


def as_torch(tree):
    torch = pytest.importorskip("torch")
    return tree_map(lambda a: None if a is None else torch.from_numpy(np.ascontiguousarray(a)), tree)


@pytest.mark.parametrize("B,T", [(1, 1), (2, 5), (3, 17)])
def test_llama_forward_flops_equal_every_counted_matmul(rng, B, T):
    params, cfg = tiny_llama(rng, n_layers=3)
    shape = cm.ModelShape.from_config(cfg)
    ids = as_torch({"ids": rng.integers(0, cfg.vocab_size, (B, T))})["ids"]
    p = as_torch(params)
    assert counted_flops(lambda: llama_logits(p, ids, cfg)) == cm.forward_flops(shape, B, T)
    cache = new_cache(cfg.n_layers)
    llama_logits(p, ids, cfg, cache=cache)
    step = lambda: llama_logits(p, ids[:, :1], cfg, cache=cache, last_only=True)  # noqa: E731
    assert counted_flops(step) == cm.forward_flops(shape, B, 1, past=T, logits="last")


def test_gpt_style_lm_and_encoder_flops_equal_every_counted_matmul(rng):
    cfg = TransformerConfig.lm_tiny(n_decoder_layers=3)
    params = as_torch(init_params(cfg, rng))
    ids = as_torch({"ids": rng.integers(0, cfg.vocab_size, (2, 7))})["ids"]
    shape = cm.ModelShape.from_config(cfg)
    assert counted_flops(lambda: lm_logits(params, ids, cfg)) == cm.forward_flops(shape, 2, 7)
    enc_cfg = TransformerConfig.tiny(n_encoder_layers=2, n_decoder_layers=0, architecture="encoder-classifier")
    enc = as_torch(init_params(enc_cfg, rng))
    x = as_torch({"x": rng.standard_normal((2, 9, enc_cfg.d_model), dtype=np.float32)})["x"]
    enc_shape = cm.ModelShape.from_config(enc_cfg)
    assert counted_flops(lambda: encoder(x, enc["encoder"], enc_cfg)) == cm.forward_flops(enc_shape, 2, 9,
                                                                                             logits="none")


def test_encoder_decoder_flops_equal_every_counted_matmul(rng):
    from transformer_np.core.backend import to_backend
    from transformer_np.model.models import Transformer

    cfg = TransformerConfig.tiny(n_encoder_layers=2, n_decoder_layers=3)
    model = to_backend(Transformer.from_config(cfg, seed=0), "torch")
    src, tgt = (as_torch({"ids": rng.integers(0, cfg.vocab_size, (2, n))})["ids"] for n in (9, 5))
    assert counted_flops(lambda: model(src, tgt)) == cm.encoder_decoder_flops(cfg, 2, 9, 5)


def test_param_count_equals_the_params_tree(rng):
    params, cfg = tiny_llama(rng, n_layers=3)
    assert cm.param_count(cm.ModelShape.from_config(cfg)) == count_params(params)
    for cfg in (TransformerConfig.lm_tiny(), TransformerConfig.lm_tiny(tie_embeddings=True, n_kv_heads=2)):
        assert cm.param_count(cm.ModelShape.from_config(cfg)) == count_params(init_params(cfg, rng))
    # SmolLM2-135M's shape: 134,515,008 parameters (its model card says 135M)
    assert cm.param_count(cm.ModelShape.from_config(LlamaConfig())) == 134_515_008


def test_kv_cache_bytes_equal_the_caches_nbytes(rng):
    params, cfg = tiny_llama(rng, n_layers=3)
    for B, T, dtype in ((1, 4, np.float64), (3, 11, np.float32)):
        cache = new_cache(cfg.n_layers)
        llama_logits(tree_map(lambda a, d=dtype: a.astype(d), params), rng.integers(0, cfg.vocab_size, (B, T)), cfg,
                     cache=cache)
        shape = cm.ModelShape.from_config(cfg)
        assert cache.nbytes() == cm.kv_cache_bytes(shape, B, T, np.dtype(dtype).name)
    assert cm.kv_cache_bytes(cm.ModelShape.from_config(LlamaConfig()), 1, 1) == LlamaConfig().kv_cache_bytes_per_token()


def test_flops_per_token_is_two_n_plus_the_attention_term():
    shape = cm.ModelShape.from_config(LlamaConfig())
    s = shape
    non_embedding = cm.param_count(s) - s.vocab_size * s.d_model - s.n_layers * s.norm_params * s.d_model - s.d_model
    for S in (1, 100, 2048):
        attention = 4 * s.n_layers * S * s.n_heads * s.d_head
        # 2N counts the embedding once, as the tied output layer's product; norms are not products
        assert cm.flops_per_token(shape, S) == 2 * (non_embedding + s.vocab_size * s.d_model) + attention


def test_roofline_picks_the_larger_term_and_the_critical_batch_is_where_they_cross():
    hw = cm.Hardware("toy", peak_flops=100.0, bandwidth=10.0, memory=1e9)
    assert cm.roofline_time(1000, 10, hw) == 10.0 and cm.bound_by(1000, 10, hw) == "compute"
    assert cm.roofline_time(10, 1000, hw) == 100.0 and cm.bound_by(10, 1000, hw) == "memory"
    shape = cm.ModelShape.from_config(LlamaConfig())
    hw = cm.HARDWARE["h200"]
    b_star = cm.critical_batch_size(hw, "bfloat16")  # weights-only: 2B FLOPs per weight byte pair
    assert b_star == pytest.approx(hw.peak_flops / hw.bandwidth)
    # with the KV cache and the logits ignored (context 1, no cache), decode flips bound at B*
    for B, bound in ((int(b_star * 0.8), "memory"), (int(b_star * 1.25), "compute")):
        f = 2 * B * cm.param_count(shape)
        assert cm.bound_by(f, cm.weight_bytes(shape, "bfloat16"), hw) == bound


def test_utilisations_are_one_at_the_roofline():
    hw = cm.HARDWARE["a100"]
    f, b = 3e12, 1e9
    t = cm.roofline_time(f, b, hw)
    assert max(cm.mfu(f, t, hw), cm.mbu(b, t, hw)) == pytest.approx(1.0)


def test_pope_table1_reproduced_within_five_percent():
    rows = cm.pope_table1()
    assert len(rows) == 6
    for r in rows:
        assert abs(r["difference"]) <= 0.05, r
    # the ratios the table teaches: batch sharding wins the chip count (64), multi-query sharded over heads
    # holds one 256-wide K/V head per chip against the multi-head model's one 128-wide head: half the context
    by = {(r["variant"], r["batch"]): r["ours"] for r in rows}
    assert by["optimized multiquery", 128] // by["baseline multiquery", 128] in (63, 64)
    assert by["multihead", 128] / by["baseline multiquery", 128] == pytest.approx(2, rel=0.01)


def test_pope_statements_about_kv_size_and_parameters():
    # PaLM 540B has 540B parameters; the multi-head comparison model's cache at batch 512 × 2,048 is "3 TB",
    # "3 times the size of the model's parameters" (bfloat16)
    assert cm.param_count(cm.PALM_540B) == pytest.approx(540e9, rel=0.01)
    kv = cm.kv_cache_bytes(cm.PALM_540B_MULTIHEAD, 512, 2048, "bfloat16")
    assert kv == pytest.approx(3e12, rel=0.05)
    assert kv / cm.weight_bytes(cm.PALM_540B, "bfloat16") == pytest.approx(3, rel=0.1)


def test_pope_headline_numbers_beside_ours():
    latency, context = cm.pope_published()
    # a lower bound may not exceed what was measured; at batch 1 it is the int8 weights read over 64 chips
    assert latency["ours"] < latency["published"]
    assert latency["ours"] == pytest.approx(cm.param_count(cm.PALM_540B) / (64 * 1.2e12) * 1e3, rel=0.01)
    assert context["ours"] == pytest.approx(context["published"], rel=0.05)


LLAMA_70B = cm.ModelShape("Llama-70B shape", 80, 8192, 64, 8, 128, 28672, 128256, tied_embeddings=False)


def test_decode_lower_bound_divides_the_roofline_over_chips():
    hw = cm.HARDWARE["h200"]
    one = cm.decode_cost(LLAMA_70B, 8, 512, hw, "bfloat16", "bfloat16")[2]
    assert cm.decode_lower_bound(LLAMA_70B, 8, 512, hw, 16) == pytest.approx(one / 16)


def test_a_70b_model_fits_one_h200_in_bfloat16_until_its_cache_does_not():
    hw = cm.HARDWARE["h200"]
    assert hw.memory == 141 * 2**30  # the datasheet's 141 GB is what nvidia-smi shows as 141 GiB
    weights = cm.weight_bytes(LLAMA_70B, "bfloat16")
    assert 130 * 2**30 < weights < hw.memory  # 141e9 bytes = 131 GiB: one chip holds them, with little room left
    assert cm.chips_needed(LLAMA_70B, 1, 2048, hw, "bfloat16", "bfloat16") == 1
    cm.decode_cost(LLAMA_70B, 1, 2048, hw, "bfloat16", "bfloat16")  # fits: no error
    with pytest.raises(ValueError, match=r"needs 2 chips of 141 GiB \(H200 SXM\): weights 131 GiB \(bfloat16\) \+ "
                                         r"KV cache 40\.0 GiB"):
        cm.decode_cost(LLAMA_70B, 64, 2048, hw, "bfloat16", "bfloat16")
    with pytest.raises(ValueError, match="needs 4 chips"):
        cm.prefill_cost(LLAMA_70B, 512, 2048, hw, "bfloat16", "bfloat16", n_chips=3)
    assert cm.prefill_cost(LLAMA_70B, 512, 2048, hw, "bfloat16", "bfloat16", n_chips=4)[2] > 0


def test_kv_bytes_per_chip_replicates_a_single_head_and_splits_the_batch():
    s = cm.PALM_540B
    one = cm.kv_cache_bytes(s, 64, 100, "bfloat16")
    assert cm.kv_bytes_per_chip(s, 64, 100, 8, "heads") == one  # one K/V head: every chip holds all of it
    assert cm.kv_bytes_per_chip(s, 64, 100, 8, "batch") == one // 8
    mh = dataclasses.replace(s, n_kv_heads=16)
    assert cm.kv_bytes_per_chip(mh, 64, 100, 8, "heads") == cm.kv_cache_bytes(mh, 64, 100, "bfloat16") // 8


def test_bad_arguments_name_themselves():
    with pytest.raises(ValueError, match="layout"):
        cm.kv_bytes_per_chip(cm.PALM_540B, 1, 1, 1, "rows")
    with pytest.raises(ValueError, match="n_kv_heads"):
        cm.ModelShape("x", 1, 8, 4, 3, 2, 8, 10)
    with pytest.raises(ValueError, match="logits"):
        cm.forward_flops(cm.PALM_540B, 1, 1, logits="some")
    with pytest.raises(ValueError, match="kv_fraction"):
        cm.max_context(cm.PALM_540B, 1, cm.HARDWARE["tpu-v4"], 64, "batch", kv_fraction=1.5)


def test_measured_probes_return_positive_rates():
    assert cm.measure_copy_bandwidth(2**20, repeat=1) > 0
    assert cm.measure_matmul_peak(128, repeat=1) > 0


def test_this_machine_measures_each_backend_as_hardware():
    pytest.importorskip("torch")
    hw = cm.this_machine("torch", quick=True)
    assert hw.name.startswith("CPU") and "via torch" in hw.name and hw.peak_flops > 0 and hw.bandwidth > 0
    assert cm.this_machine(quick=True).name.startswith("this machine")
    with pytest.raises(ValueError, match="backend"):
        cm.this_machine("jax")


def test_bench_cost_measures_and_classifies_each_step(tmp_path):
    from transformer_np.cli.bench import bench_cost

    lines = []
    result = bench_cost(quick=True, repeat=1, plot=str(tmp_path / "roofline.png"), print_fn=lines.append)
    rows = {(r["kind"], r["size"]): r for r in result["rows"]}
    assert rows["decode", 1]["bound"] == "memory" and rows["prefill", 64]["bound"] == "compute"
    for r in result["rows"]:
        assert r["measured_s"] > 0 and r["ratio"] == pytest.approx(r["measured_s"] / r["predicted_s"])
        # the arithmetic on the measurement, not a bound on it (a busy machine moves the timings, never this)
        assert r["mfu"] == pytest.approx(r["flops"] / r["measured_s"] / result["hardware"]["peak_flops"])
        assert r["mbu"] == pytest.approx(r["bytes"] / r["measured_s"] / result["hardware"]["bandwidth"])
    assert (tmp_path / "roofline.png").stat().st_size > 10_000 and "critical decode batch" in lines[0]


def test_flash_attention_moves_theta_n2_d2_over_m_bytes_against_standard_attentions_n2():
    d, sram = 64, 100 * 1024  # bytes of on-chip memory: 51,200 float16 values, blocks of 51,200 / 4d = 200 keys
    for n in (1024, 4096, 16384):
        assert cm.attention_hbm_bytes(n, d) == (4 * n * d + 4 * n * n) * 2
        blocks = -(-n // 200)
        assert cm.flash_attention_hbm_bytes(n, d, sram) == (2 * n * d + blocks * (3 * n * d + 4 * n)) * 2
    ratio = [cm.attention_hbm_bytes(n, d) / cm.flash_attention_hbm_bytes(n, d, sram) for n in (1024, 4096, 16384)]
    assert 1 < ratio[0] < ratio[1] < ratio[2] < 51_200 / (3 * d**2)  # towards M / 3d² (values): both are Θ(n²)
    # more on-chip memory, fewer passes over Q and O; with room for every key at once, one pass
    assert cm.flash_attention_hbm_bytes(4096, d, 2 * sram) < cm.flash_attention_hbm_bytes(4096, d, sram)
    assert cm.flash_attention_hbm_bytes(512, d, 4 * 512 * d * 2) == (5 * 512 * d + 4 * 512) * 2
    with pytest.raises(ValueError, match="sram_bytes"):
        cm.flash_attention_hbm_bytes(512, d, 0)
