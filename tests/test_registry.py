"""transformer_np.load: every model the package knows, by name or by path — the one loader the command line and
the explorer use."""

import numpy as np
import pytest
from helpers import skip_without_smollm2

import transformer_np as tn
from transformer_np.pretrained import registry


@pytest.mark.parametrize("name,cls", [("dates", tn.Transformer), ("reverse", tn.Transformer),
                                      ("sentiment", tn.Classifier)])
def test_a_shipped_task_model_loads_by_name_with_its_task_and_tokenizer(name, cls):
    model = tn.load(name)
    task, params, _, _ = tn.training.load_trained(name)
    assert type(model) is cls and model.task.name == name and model.tokenizer is model.task.tokenizer
    flat, want = tn.core.tree.flatten(model.params), tn.core.tree.flatten(params)
    assert flat.keys() == want.keys() and all(np.array_equal(flat[k], want[k]) for k in want if want[k] is not None)


def test_a_checkpoint_path_loads_the_model_it_holds_whatever_its_name(tmp_path):
    lm = tn.DecoderLM(tn.TransformerConfig.lm_tiny(), seed=3)
    for name in ("lm.npz", "lm.checkpoint"):
        lm.save(tmp_path / name)
        again = tn.load(tmp_path / name)
        assert type(again) is tn.DecoderLM and np.array_equal(again(np.array([[1, 2]])), lm(np.array([[1, 2]])))


def test_the_pretrained_models_load_by_name_and_by_path():
    skip_without_smollm2()
    smol = tn.load("smollm2")
    assert isinstance(smol, tn.pretrained.LlamaModel) and smol.config.n_layers == 30
    again = tn.load(tn.pretrained.smollm2_path(), keep_quantized=True)
    assert isinstance(again.params["decoder"]["layers"][0]["attn"]["w_q"], tn.core.weights.StoredWeight)


def test_minilm_loads_by_name_and_from_its_folder():
    try:
        tn.pretrained.default_path()
    except ImportError as e:
        pytest.skip(str(e))
    assert isinstance(tn.load("minilm"), tn.pretrained.MiniLM)
    assert isinstance(tn.load(tn.pretrained.default_path()), tn.pretrained.MiniLM)


@pytest.mark.parametrize("bad,error,message", [("gpt5", ValueError, "no model called 'gpt5': choose one of dates"),
                                               (3, TypeError, "name_or_path must be a model name or a path")])
def test_an_unknown_name_is_an_error_listing_the_names(bad, error, message):
    with pytest.raises(error, match=message):
        tn.load(bad)
    assert set(registry.NAMES) == {"dates", "reverse", "sentiment", "minilm", "smollm2", "gemma3"}


def test_generate_task_takes_only_a_shipped_task_name(capsys):
    from transformer_np.cli.main import main

    assert main(["generate", "--task", "minilm", "--prompt", "x"]) == 2  # a model name, not a task
    assert "unknown task 'minilm'" in capsys.readouterr().err
