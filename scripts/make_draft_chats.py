"""Freeze the draft head's training chats: SmolLM2-135M-Instruct's own greedy answers to prompts written for this
package (never the evaluation prompts of ``transformer_np.efficient.draft.EVAL_PROMPTS``).  EAGLE and Medusa train
their heads on the target's own outputs ("self-distillation"): the head learns what this model says, not what a
human would.  Run once; the answers are committed, so `distill-draft` reads the same tokens on every machine.

    python scripts/make_draft_chats.py            # ~40 minutes on 2 cores for the 820 prompts
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


def main(max_new_tokens=192, batch=32):
    assert not set(TRAIN_PROMPTS) & set(EVAL_PROMPTS)
    model = load_smollm2()
    done = {}  # answers already in the file are kept (greedy: the same tokens again), new prompts answered
    if OUT.exists():
        old = json.loads(OUT.read_text(encoding="utf-8"))
        if old["max_new_tokens"] == max_new_tokens:
            done = {c["prompt"]: c for c in old["chats"]}
    chats = [done[p] for p in TRAIN_PROMPTS if p in done]
    todo = [p for p in TRAIN_PROMPTS if p not in done]
    for i in range(0, len(todo), batch):
        prompts = todo[i:i + batch]
        ids = [model.chat_ids([{"role": "user", "content": p}]) for p in prompts]
        outs = greedy(LMSession(model, ids), max_new_tokens, eos_id=model.eos_id)
        for p, out in zip(prompts, outs):
            chats.append({"prompt": p, "answer": model.detokenize([int(t) for t in out], skip_special=True)})
        print(f"{len(chats)}/{len(TRAIN_PROMPTS)}", file=sys.stderr, flush=True)
    order = {p: i for i, p in enumerate(TRAIN_PROMPTS)}
    chats.sort(key=lambda c: order[c["prompt"]])
    tmp = OUT.with_suffix(".tmp")
    tmp.write_text(json.dumps({"model": repr(model), "max_new_tokens": max_new_tokens, "chats": chats},
                              ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
    os.replace(tmp, OUT)
    print(f"wrote {OUT}: {len(chats)} answers, {np.mean([len(c['answer']) for c in chats]):.0f} characters on average")


if __name__ == "__main__":
    main()
