"""The command line: the tour checks every formula, the benchmark writes its numbers."""

import json
import subprocess
import sys

import transformer_np.tour as tour
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
