"""from_torch / to_torch round trips, and torch never imported by the package itself."""

import subprocess
import sys

import numpy as np
import pytest

import transformer_np as tn

torch = pytest.importorskip("torch")
from transformer_np import interop  # noqa: E402


def test_package_import_does_not_import_torch():
    code = "import sys, transformer_np, transformer_np.interop; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


@pytest.mark.parametrize("make", [
    lambda: torch.nn.MultiheadAttention(8, 2, batch_first=True),
    lambda: torch.nn.MultiheadAttention(8, 2, kdim=3, vdim=5, bias=False),
    lambda: torch.nn.TransformerEncoderLayer(8, 2, 16, dropout=0.0, norm_first=True),
    lambda: torch.nn.TransformerDecoderLayer(8, 2, 16, dropout=0.0, activation="gelu", batch_first=True),
    lambda: torch.nn.Transformer(8, 2, 1, 2, 16, dropout=0.0),
], ids=["mha", "mha-kdim", "encoder-layer", "decoder-layer", "transformer"])
def test_to_torch_after_from_torch_restores_every_weight(make):
    torch.manual_seed(0)
    module = make().eval()
    back = interop.to_torch(interop.from_torch(module))
    want, got = module.state_dict(), back.state_dict()
    assert want.keys() == got.keys()
    for k in want:
        assert torch.equal(want[k], got[k]), k


def test_numpy_transformer_to_torch_gives_the_same_logits():
    model = tn.Transformer.from_config(tn.TransformerConfig.tiny(dtype="float64", activation="gelu"), seed=3)
    module = interop.to_torch(model)
    src, tgt = np.array([[1, 2, 3, 4]]), np.array([[5, 6, 7]])
    want = module(torch.from_numpy(src), torch.from_numpy(tgt)).detach().numpy()
    np.testing.assert_allclose(model(src, tgt), want, atol=1e-10)


def test_unsupported_modules_are_named_in_the_error():
    with pytest.raises(TypeError, match="from_torch does not know Linear"):
        interop.from_torch(torch.nn.Linear(2, 2))
    with pytest.raises(NotImplementedError, match="add_bias_kv"):
        interop.from_torch(torch.nn.MultiheadAttention(4, 2, add_bias_kv=True))
