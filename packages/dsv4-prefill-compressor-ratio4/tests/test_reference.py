"""Semantics of the prefill golden: one prefill of N tokens ≡ the same tokens in uneven
chunks ≡ a prefill of k tokens followed by decode steps of S = 1, 2 and 5 (same caches within
the comparator rule); chunks that start inside a window read the stored state."""

import pytest
import torch

from dsv4_compressor_ratio128 import casekit
from dsv4_core import TINY
from dsv4_prefill_compressor_ratio4 import RATIO, prefill_compressor_ratio4
from dsv4_prefill_compressor_ratio4.cases import CASES

N = 24
PLANS = {
    "uneven-prefill-chunks": [("prefill", 5), ("prefill", 11), ("prefill", 1), ("prefill", 7)],
    "prefill-then-decode-S1-S2-S5": [("prefill", 16), ("decode", 1), ("decode", 2), ("decode", 5)],
}


@pytest.mark.parametrize("plan", list(PLANS))
def test_chunks_and_decode_steps_are_equivalent(plan):
    st = casekit.make_stream(TINY, RATIO, N)
    single = casekit.run_stream(st, [("prefill", N)])
    exact = casekit.exact_stream(st)
    for r in casekit.equivalence_reports(casekit.run_stream(st, PLANS[plan]), single, exact):
        assert r.ok, str(r)


def test_straddling_window_reads_the_state():
    """Changing the stored state of a position before the chunk changes the straddling
    window's entry (and only the windows that need it)."""
    inp = casekit.make_inputs(CASES["tiny-prefill-T37-start6"])
    args = {k: inp[k] for k in casekit.CALL_ARGS}

    def call(state):
        a = dict(args, state=state.clone(), state_pos=args["state_pos"].clone(), cmp_kv=args["cmp_kv"].clone())
        return prefill_compressor_ratio4(a["x"][0], a["wkv"], a["wgate"], a["ape"], a["norm_weight"],
                                         int(a["start_pos"][0]), a["state"], a["state_pos"], a["state_block_table"][0],
                                         a["cmp_kv"], a["cmp_slot_mapping"][0], config=TINY, backend="torch")

    base = call(args["state"])
    st2 = args["state"].clone()
    row = int(args["state_block_table"][0, 0 // st2.shape[1]]) * st2.shape[1] + 0 % st2.shape[1]
    st2.view(-1, st2.shape[-1])[row] += 1.0
    moved = call(st2)
    first = int(torch.nonzero(base.closes)[0])
    assert not torch.equal(base.kv[first], moved.kv[first])
    assert torch.equal(base.kv[first + 1:], moved.kv[first + 1:]) or RATIO == 4


def test_start_pos_accepts_one_element_tensor():
    inp = casekit.make_inputs(CASES["tiny-prefill-T37-start6"])
    a = {k: inp[k] for k in casekit.CALL_ARGS}
    out = prefill_compressor_ratio4(a["x"][0], a["wkv"], a["wgate"], a["ape"], a["norm_weight"], a["start_pos"][:1],
                                    a["state"], a["state_pos"], a["state_block_table"][0], a["cmp_kv"],
                                    a["cmp_slot_mapping"][0], config=TINY, backend="torch")
    assert out.kv.shape == (a["x"].shape[1], 512) and out.closes.any()
