import pytest

from dsv4_core import perf


def test_stored_ceilings_reach_known_figures():
    c = perf.load_ceilings()
    assert c.copy_gbps >= perf.MIN_COPY_GBPS
    assert c.matmul_tflops >= perf.MIN_MATMUL_TFLOPS
    assert c.command == perf.MEASURE_COMMAND and c.trials
    best_copy = max(t["gbps"] for t in c.trials if t["kind"] == "copy" and "error" not in t)
    best_mm = max(t["tflops"] for t in c.trials if t["kind"] == "matmul" and "error" not in t)
    assert c.copy_gbps == pytest.approx(best_copy, abs=0.1) and c.matmul_tflops == pytest.approx(best_mm, abs=0.1)
    assert "GB/s" in c.describe()


def test_efficiency_memory_and_compute_bound():
    c = perf.load_ceilings()
    nbytes = c.copy_gbps * 1e3 * 100  # exactly 100 µs at the copy ceiling
    e = perf.efficiency(nbytes, 0, 200.0, c)
    assert e.bound_by == "memory" and e.ceiling_us == pytest.approx(100) and e.ratio == pytest.approx(0.5)
    assert not e.mispriced
    flops = c.matmul_tflops * 1e6 * 50
    e = perf.efficiency(1.0, flops, 100.0, c)
    assert e.bound_by == "compute" and e.ratio == pytest.approx(0.5)


def test_faster_than_bytes_is_mispriced():
    c = perf.load_ceilings()
    e = perf.efficiency(c.copy_gbps * 1e3 * 100, 0, 30.0, c)
    assert e.mispriced and "MIS-PRICED" in str(e)
    with pytest.raises(ValueError):
        perf.efficiency(1, 1, 0.0, c)
