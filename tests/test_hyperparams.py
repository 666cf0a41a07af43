"""Choosing hyper-parameters: the cost model's one-change-at-a-time table follows the formulas, and the shipped
training sweep is reproduced by re-running its smallest row."""

import numpy as np
import pytest

from transformer_np.__main__ import main
from transformer_np.core.tree import flatten
from transformer_np.efficient import cost_model as cm
from transformer_np.efficient import hyperparams as hp
from transformer_np.pretrained.llama import LlamaConfig
from transformer_np.training.loop import fit, load_training, train
from transformer_np.training.tasks import get_task

SMOLLM2 = cm.ModelShape.from_config(LlamaConfig(), "SmolLM2-135M")


def test_fit_takes_the_same_steps_as_train(tmp_path):
    full = get_task("reverse")
    train("reverse", steps=3, seed=5, out_dir=str(tmp_path), save_every=3)
    trained, _, _, history = load_training(str(tmp_path / "model.npz"), full)
    again, again_losses = fit(full, 3, seed=5)
    assert history["loss"] == pytest.approx(again_losses, rel=0, abs=0)
    for k, v in flatten(trained).items():
        np.testing.assert_array_equal(flatten(again)[k], v)


def test_sweep_task_changes_only_the_model():
    task = hp.sweep_task("reverse", d_model=32, n_layers=3, n_heads=2, n_kv_heads=1)
    base = get_task("reverse")
    c = task.config
    assert (c.d_model, c.n_encoder_layers, c.n_decoder_layers, c.n_heads, c.kv_heads, c.d_ff) == (32, 3, 3, 2, 1, 64)
    assert (c.vocab_size, c.max_len) == (base.config.vocab_size, base.config.max_len)
    assert task.train == base.train and task.test == base.test
    clf = hp.sweep_task("sentiment", d_model=32, n_layers=3, n_heads=4, d_ff=40).config
    assert (clf.n_encoder_layers, clf.n_decoder_layers, clf.d_ff, clf.kv_heads) == (3, 0, 40, 4)


def test_effects_change_one_hyperparameter_at_a_time():
    rows = {r["variant"]: r for r in hp.effects(SMOLLM2, cm.HARDWARE["h200"])}
    base = rows["base"]
    assert base["params"] == 134_515_008
    fields = ("d_model", "n_heads", "n_kv_heads", "n_layers", "d_ff")
    for name, r in rows.items():
        changed = {f for f in fields if r[f] != base[f]}
        assert len(changed) == (0 if name == "base" else 1), (name, changed)
        # the KV cache per token: 2 · L · H_kv · D · 2 bytes (bfloat16)
        assert r["kv_bytes_per_token"] == 2 * r["n_layers"] * r["n_kv_heads"] * r["d_head"] * 2
    assert rows["n_layers ×2"]["kv_bytes_per_token"] == 2 * base["kv_bytes_per_token"]
    assert rows["d_ff ×2"]["kv_bytes_per_token"] == base["kv_bytes_per_token"]
    assert rows["n_kv_heads = 1"]["kv_bytes_per_token"] * 3 == base["kv_bytes_per_token"]
    # more layers: the layers' parameters double, the embedding (V·C) does not
    per_layers = base["params"] - SMOLLM2.vocab_size * SMOLLM2.d_model - SMOLLM2.d_model
    assert rows["n_layers ×2"]["params"] - base["params"] == per_layers
    # decode at batch 1 is bound by memory, so its time follows the bytes, not the FLOPs
    assert rows["d_ff ÷2"]["decode_s"] < base["decode_s"] < rows["d_ff ×2"]["decode_s"]
    hw = cm.HARDWARE["h200"]
    assert base["decode_s"] == pytest.approx(cm.decode_cost(SMOLLM2, 1, 2048, hw, "bfloat16", "bfloat16")[1]
                                             / hw.bandwidth)


def test_shipped_sweep_covers_the_grid():
    table = hp.load_sweep()
    assert "sweep" in table["command"]
    rows = table["rows"]
    for spec in hp.GRID + hp.EXTRA:
        spec = dict(spec)
        seed = spec.pop("seed", 0)
        want = hp.sweep_task("reverse", **spec).config
        found = [r for r in rows if (r["d_model"], r["n_layers"], r["n_heads"], r["n_kv_heads"], r["d_ff"], r["seed"])
                 == (want.d_model, want.n_encoder_layers, want.n_heads, want.kv_heads, want.d_ff, seed)]
        assert len(found) == 1, spec
        assert found[0]["steps"] == hp.STEPS and 0 <= found[0]["accuracy"] <= 1


def test_smallest_sweep_row_reproduces_the_shipped_table():
    rows = hp.load_sweep()["rows"]
    smallest = min(rows, key=lambda r: (r["params"], r["seed"]))
    spec = {k: smallest[k] for k in ("d_model", "n_layers", "n_heads", "n_kv_heads", "d_ff")}
    again = hp.train_row(smallest["task"], smallest["steps"], smallest["seed"], **spec)
    assert hp.same_row(again, smallest)
    assert again["params"] == smallest["params"]
    # the same machine gives the same numbers; another CPU's BLAS may round differently and 1,000 steps amplify it,
    # so the comparison allows 1% of the 1,000 test examples and 1% of the loss, far below the gaps between rows
    assert abs(again["accuracy"] - smallest["accuracy"]) <= 0.01
    assert again["final_loss"] == pytest.approx(smallest["final_loss"], rel=0.01)


def test_sweep_command_prints_the_cost_table(capsys):
    assert main(["sweep", "--effects-only", "--hardware", "a100"]) == 0
    out = capsys.readouterr().out
    assert "A100" in out and "n_kv_heads = 1" in out and "134.5" in out


@pytest.mark.parametrize("rows", [["32,1"], ["32,x,1"], ["32,1,0"]])
def test_sweep_rejects_bad_rows(rows, capsys):
    assert main(["sweep", "--rows", *rows]) == 2
    assert "--rows" in capsys.readouterr().err


def test_sweep_row_that_is_no_model_is_a_clear_error(capsys):
    assert main(["sweep", "--rows", "32,1,3", "--steps", "1"]) == 2
    assert "n_heads" in capsys.readouterr().err


def test_sweep_effects_only_with_json_is_an_error_not_a_silent_no_op(capsys, tmp_path):
    """#34: it exited 0 and wrote no file."""
    assert main(["sweep", "--effects-only", "--json", str(tmp_path / "rows.json")]) == 2
    err = capsys.readouterr().err
    assert err.count("error:") == 1 and "--effects-only trains nothing" in err
    assert not (tmp_path / "rows.json").exists()
