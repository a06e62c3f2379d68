"""The memory-contract helpers catch what they claim to: a read-back, a copied cache, bytes
the host prepared."""

import pytest
import torch

from dsv4_core import contract, sim


@pytest.mark.parametrize("read", [lambda t: t.item(), lambda t: int(t), lambda t: bool(t), lambda t: t.tolist(),
                                  lambda t: t.cpu(), lambda t: t.to("cpu"), lambda t: float(t),
                                  lambda t: [0, 1][t], lambda t: t.numpy()])
def test_no_readback_catches_each_read(read):
    t = torch.tensor(1)
    with contract.no_readback():
        with pytest.raises(contract.ReadBackError):
            read(t)
    read(t)  # lifted afterwards


def test_no_readback_allows_device_side_ops():
    t = torch.arange(6).reshape(2, 3)
    with contract.no_readback():
        u = torch.where(t > 2, t, -1).to(torch.int32) + t.shape[0]
    assert u.dtype == torch.int32


def test_watch_tells_cache_views_from_copies():
    cache = torch.zeros(16, 8, 4)
    step = torch.ones(3, 4)

    def fake_public_call(copy: bool):
        src = cache.reshape(-1, 4).clone() if copy else cache.reshape(-1, 4)
        sim.run(None, [src, step], name="k")

    with contract.watch(run=False) as w:
        fake_public_call(copy=False)
    assert w.receives(cache) and w.prepared_bytes(cache) == step.numel() * 4
    with contract.watch(run=False) as w:
        fake_public_call(copy=True)
    assert not w.receives(cache)
    assert w.prepared_bytes(cache) == cache.numel() * 4 + step.numel() * 4


def test_a_buffer_two_launches_receive_is_prepared_once():
    cache = torch.zeros(16, 4)
    rows = torch.empty(6, 8)  # the first kernel's output, the second's input
    meta = torch.ones(5)

    with contract.watch(run=False) as w:
        sim.run(None, [cache, rows], name="project")
        sim.run(None, [rows.view(12, 4), meta, rows[3:]], name="pool")
    assert w.prepared_bytes(cache) == rows.numel() * 4 + meta.numel() * 4
    assert w.prepared_bytes() == cache.numel() * 4 + rows.numel() * 4 + meta.numel() * 4
    # two distinct buffers of the same size still count twice
    with contract.watch(run=False) as w:
        sim.run(None, [rows], name="a")
        sim.run(None, [rows.clone()], name="b")
    assert w.prepared_bytes() == 2 * rows.numel() * 4


def test_measure_sums_kernels_and_charges_what_the_host_prepared(monkeypatch):
    from dsv4_core import bench

    cache = torch.zeros(64, 4)
    built = torch.ones(10, 4)

    def fake_run(kernel, args, *, name="kernel", values=True, **kw):
        assert values is False  # the bench runs the cost model alone
        return sim.KernelRun(name=name, values=values, verify_dir=None, aicore_us=5.0, total_us=6.0, cores=3,
                             tasks=1)

    monkeypatch.setattr(sim, "run", fake_run)

    def call():
        sim.run(None, [cache.view(-1), built], name="a")
        sim.run(None, [cache], name="b")
        return "out"

    m = bench.measure(call, given=[cache])
    assert (m.kernel_us, m.launches, m.result, m.cores) == (10.0, ("a", "b"), "out", 3)
    assert m.prepared_bytes == built.numel() * 4
    c = bench.charge(m, gathered_bytes=2e6, copy_gbps=1000.0)
    assert c.gather_us == pytest.approx(2.0) and c.prepared_us == pytest.approx(built.numel() * 4 / 1e6)
    assert c.total_us == pytest.approx(10.0 + 2.0 + c.prepared_us + m.host_us)
    # a copied cache is prepared bytes
    m2 = bench.measure(lambda: sim.run(None, [cache.clone()], name="c"), given=[cache])
    assert m2.prepared_bytes == cache.numel() * 4


def test_outcome_totals_kernel_gather_and_host():
    from dsv4_core import bench

    m = bench.Measured(kernel_us=100.0, host_us=7.0, prepared_bytes=0, launches=("k",), cores=2)
    o = bench.outcome("mod", "case", m, nbytes=1e6, flops=0.0, gather_bytes=0.0)
    assert (o.modelled_us, o.gather_us, o.host_us, o.total_us) == (100.0, 0.0, 0.0, 100.0)
    assert "7 µs CPU wall" in o.note
    o2 = bench.outcome("mod", "case", dataclasses_replace(m, prepared_bytes=10**6), nbytes=1e6, flops=0.0,
                       gather_bytes=2 * 10**6)
    assert o2.gather_us > 0 and o2.host_us > 0 and o2.total_us == pytest.approx(100 + o2.gather_us + o2.host_us)
    assert "1.00 MB prepared" in o2.note


def dataclasses_replace(obj, **kw):
    import dataclasses

    return dataclasses.replace(obj, **kw)
