"""Initialisation, parameter counts and .npz checkpoints."""

import os

import numpy as np
import pytest

import transformer_np as tn
from transformer_np.core.tree import flatten, unflatten

pytestmark = pytest.mark.check  # the math check tier: `make check` (see the Makefile)


def test_init_is_deterministic_per_seed_and_differs_across_seeds():
    cfg = tn.TransformerConfig.tiny()
    a, b, c = tn.init_params(cfg, 3), tn.init_params(cfg, 3), tn.init_params(cfg, 4)
    fa, fb, fc = flatten(a), flatten(b), flatten(c)
    assert all(np.array_equal(fa[k], fb[k]) for k in fa)
    assert not np.array_equal(fa["encoder/layers/0/self_attn/w_q"], fc["encoder/layers/0/self_attn/w_q"])


def test_init_uses_the_config_dtype_and_no_global_state():
    cfg = tn.TransformerConfig.tiny(dtype="float64")
    np.random.seed(0)  # noqa: NPY002 - the legacy global state must not matter
    a = tn.init_params(cfg, 0)
    np.random.seed(1)  # noqa: NPY002
    b = tn.init_params(cfg, 0)
    assert all(v.dtype == np.float64 for v in flatten(a).values())
    assert all(np.array_equal(flatten(a)[k], flatten(b)[k]) for k in flatten(a))


def test_param_count_is_the_sum_of_leaf_sizes():
    cfg = tn.TransformerConfig.tiny(n_encoder_layers=1, n_decoder_layers=1)
    C, F, V = 16, 32, 11
    attn, norm, ffn = 4 * (C * C + C), 2 * C, C * F + F + F * C + C
    expected = V * C + (attn + norm + ffn + norm) + norm + (2 * attn + 3 * norm + ffn) + norm + C * V + V
    assert tn.count_params(tn.init_params(cfg)) == expected


def test_flatten_unflatten_round_trip():
    tree = tn.init_params(tn.TransformerConfig.tiny())
    back = unflatten(flatten(tree), tree)
    assert flatten(back).keys() == flatten(tree).keys()


def test_checkpoint_round_trip_keeps_config_and_every_array(tmp_path):
    model = tn.Transformer.from_config(tn.TransformerConfig.tiny(norm_first=True, pad_id=0), seed=5)
    path = tmp_path / "m.npz"
    model.save(path)
    loaded = tn.Transformer.load(path)
    assert loaded.config == model.config
    src, tgt = np.array([[1, 2, 3]]), np.array([[4, 5]])
    assert np.array_equal(loaded(src, tgt), model(src, tgt))
    with np.load(path, allow_pickle=False) as data:  # readable without pickle
        assert "__config__" in data.files


def test_checkpoint_from_another_config_is_rejected(tmp_path):
    path = tmp_path / "m.npz"
    cfg = tn.TransformerConfig.tiny()
    tn.save_checkpoint(path, tn.init_params(cfg), cfg)
    with pytest.raises(ValueError, match=r"checkpoint config differs.*'d_model': \(16, 32\)"):
        tn.load_checkpoint(path, cfg.replace(d_model=32))


def test_checkpoint_whose_arrays_disagree_with_its_config_is_rejected(tmp_path):
    cfg = tn.TransformerConfig.tiny()
    params = tn.init_params(cfg)
    params["out"]["b"] = np.zeros(12, np.float32)
    path = tmp_path / "m.npz"
    tn.save_checkpoint(path, params, cfg)
    with pytest.raises(ValueError, match=r"parameter out/b has shape \(12,\), config implies \(11,\)"):
        tn.load_checkpoint(path)


@pytest.mark.parametrize("damage", ["truncate", "garbage", "empty"])
def test_corrupt_checkpoint_gives_a_clear_error(tmp_path, damage):
    path = tmp_path / "m.npz"
    cfg = tn.TransformerConfig.tiny()
    tn.save_checkpoint(path, tn.init_params(cfg), cfg)
    data = path.read_bytes()
    path.write_bytes({"truncate": data[: len(data) // 2], "garbage": b"not a zip" * 10, "empty": b""}[damage])
    with pytest.raises(ValueError, match="not a readable transformer_np checkpoint"):
        tn.load_checkpoint(path)


def test_failed_save_leaves_the_previous_checkpoint_intact(tmp_path, monkeypatch):
    path = tmp_path / "m.npz"
    cfg = tn.TransformerConfig.tiny()
    tn.save_checkpoint(path, tn.init_params(cfg, 0), cfg)
    before = path.read_bytes()

    def half_written(f, **arrays):  # the disk fills up in the middle of the write
        f.write(b"PK partial")
        raise OSError("No space left on device")

    monkeypatch.setattr(tn.model.checkpoint.np, "savez", half_written)
    with pytest.raises(OSError, match="No space left"):
        tn.save_checkpoint(path, tn.init_params(cfg, 1), cfg)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["m.npz"]  # no temp file left behind


def test_saving_from_torch_tensors_loads_as_numpy(tmp_path):
    pytest.importorskip("torch")
    cfg = tn.TransformerConfig.tiny()
    params = tn.to_backend(tn.init_params(cfg), "torch")
    tn.save_checkpoint(tmp_path / "t.npz", params, cfg)
    loaded, _ = tn.load_checkpoint(tmp_path / "t.npz")
    assert isinstance(loaded["out"]["w"], np.ndarray)
    assert os.path.getsize(tmp_path / "t.npz") > 0


def test_tying_the_output_layer_to_the_embeddings_removes_c_times_v_plus_v_parameters():
    untied = tn.count_params(tn.model.param_shapes(tn.TransformerConfig.paper_base()))
    tied = tn.count_params(tn.model.param_shapes(tn.TransformerConfig.paper_base(tie_embeddings=True)))
    assert (untied, tied) == (82_065_544, 63_084_544) and untied - tied == 512 * 37000 + 37000
    cfg = tn.TransformerConfig.tiny(tie_embeddings=True, dtype="float64")
    tied_model = tn.Transformer.from_config(cfg, seed=0)
    table = tied_model.params["embed"]["table"]
    untied_params = {**tied_model.params, "out": {"w": table.T.copy(), "b": np.zeros(cfg.vocab_size)}}
    untied_model = tn.Transformer.from_config(cfg.replace(tie_embeddings=False), untied_params)
    src, tgt = np.array([[1, 2, 3]]), np.array([[4, 5]])
    np.testing.assert_allclose(tied_model(src, tgt), untied_model(src, tgt), atol=1e-12)  # logits = y Eᵀ
    with pytest.raises(ValueError, match="tie_embeddings needs an output over the vocabulary"):
        tn.TransformerConfig.tiny(architecture="encoder-classifier", n_decoder_layers=0, tie_embeddings=True)
