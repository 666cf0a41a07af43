"""Freeze the draft head's training chats: SmolLM2-135M-Instruct's own greedy answers to prompts written for this
package (never the evaluation prompts of ``transformer_np.efficient.draft.EVAL_PROMPTS``).  EAGLE and Medusa train
their heads on the target's own outputs ("self-distillation"): the head learns what this model says, not what a
human would.  Run once; the answers are committed, so `distill-draft` reads the same tokens on every machine.

    python scripts/make_draft_chats.py            # ~10 minutes on 2 cores
"""

import json
import os
import sys
from pathlib import Path

import numpy as np

from transformer_np.decoding.search import greedy
from transformer_np.decoding.sessions import LMSession
from transformer_np.efficient.draft import EVAL_PROMPTS, TRAIN_PROMPTS
from transformer_np.pretrained.llama import load_smollm2

OUT = Path(__file__).resolve().parent.parent / "transformer_np" / "efficient" / "data" / "draft_chats.json"


def main(max_new_tokens=192, batch=16):
    assert not set(TRAIN_PROMPTS) & set(EVAL_PROMPTS)
    model = load_smollm2()
    chats = []
    for i in range(0, len(TRAIN_PROMPTS), batch):
        prompts = TRAIN_PROMPTS[i:i + batch]
        ids = [model.chat_ids([{"role": "user", "content": p}]) for p in prompts]
        outs = greedy(LMSession(model, ids), max_new_tokens, eos_id=model.eos_id)
        for p, out in zip(prompts, outs):
            chats.append({"prompt": p, "answer": model.detokenize([int(t) for t in out], skip_special=True)})
        print(f"{len(chats)}/{len(TRAIN_PROMPTS)}", file=sys.stderr, flush=True)
    tmp = OUT.with_suffix(".tmp")
    tmp.write_text(json.dumps({"model": repr(model), "max_new_tokens": max_new_tokens, "chats": chats},
                              ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
    os.replace(tmp, OUT)
    print(f"wrote {OUT}: {len(chats)} answers, {np.mean([len(c['answer']) for c in chats]):.0f} characters on average")


if __name__ == "__main__":
    main()
