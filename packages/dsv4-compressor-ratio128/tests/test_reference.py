"""Semantics of the golden: an independent formulation (the official model's decode state
machine), chunking equivalence, APE, the state tags, the RoPE position."""

import dataclasses

import pytest
import torch

from dsv4_compressor_ratio128 import RATIO, casekit, compressor_ratio128, make_caches
from dsv4_compressor_ratio128.cases import CASES
from dsv4_compressor_ratio128.step import compute_reference, make_plan
from dsv4_core import TINY
from dsv4_core.compare import compare
from dsv4_rope_tables import profile_for_ratio, rope_rows, to_freqs_cis


def official_decode(cfg, w, x):
    """The official `Compressor` decode loop for ratio 128, token by token from position 0,
    fp32: state [R, d] (score −inf), slot pos % R, on close softmax over the R slots; bf16,
    RMSNorm, RoPE via complex freqs_cis at pos + 1 − R. Returns {closing position: entry}."""
    R, d = RATIO, cfg.head_dim
    kv_state = torch.zeros(R, d)
    score_state = torch.full((R, d), float("-inf"))
    out = {}
    prof = profile_for_ratio(cfg, R)
    for pos in range(x.shape[0]):
        xf = x[pos].float()
        kv_state[pos % R] = xf @ w["wkv"].float().T
        score_state[pos % R] = xf @ w["wgate"].float().T + w["ape"][pos % R]
        if (pos + 1) % R == 0:
            pooled = (kv_state * torch.softmax(score_state, dim=0)).sum(0).bfloat16().float()
            n = (pooled * torch.rsqrt(pooled.pow(2).mean() + cfg.eps) * w["norm_weight"].float()).bfloat16().float()
            cos, sin = rope_rows(prof, torch.tensor([pos + 1 - R]))
            fc = to_freqs_cis(cos, sin)[0]
            r = torch.view_as_real(torch.view_as_complex(n[-64:].reshape(-1, 2).contiguous()) * fc).reshape(-1)
            n[-64:] = r.bfloat16().float()
            out[pos] = n
    return out


def test_matches_official_state_machine():
    st = casekit.make_stream(TINY, RATIO, 260)
    _, _, cmp_kv = casekit.run_stream(st, [("prefill", 130), ("decode", 5), ("prefill", 125)])
    ref = official_decode(TINY, st.weights, st.x)
    assert sorted(ref) == [127, 255]
    for p, entry in ref.items():
        c = p // RATIO
        row = int(st.cmp_table[c // st.cmp_block]) * st.cmp_block + c % st.cmp_block
        got = cmp_kv.view(-1, TINY.head_dim)[row].float()
        assert (got - entry).abs().max() <= 2 ** -6 * entry.abs().max(), p  # ≤ 1 bf16 ulp of the largest lane


PLANS = {
    "uneven-prefill-and-decode": [("prefill", 100), ("prefill", 27), ("decode", 1), ("prefill", 130)],
    "prefill-then-S1-S2-S5": [("prefill", 250), ("decode", 1), ("decode", 2), ("decode", 5)],
    "decode-S5-across-the-close": [("prefill", 124), ("decode", 5), ("prefill", 129)],
}


@pytest.mark.parametrize("plan", list(PLANS))
def test_chunking_is_equivalent(plan):
    st = casekit.make_stream(TINY, RATIO, 258)
    single = casekit.run_stream(st, [("prefill", 258)])
    exact = casekit.exact_stream(st)
    got = casekit.run_stream(st, PLANS[plan])
    for r in casekit.equivalence_reports(got, single, exact):
        assert r.ok, str(r)


def test_perturbed_ape_fails_the_golden():
    case = CASES["tiny-decode-S2"]
    inp = casekit.make_inputs(case)
    plan = make_plan(TINY, RATIO, inp["start_pos"], case.seq, inp["state_pos"], inp["state_block_table"],
                     inp["cmp_slot_mapping"], inp["cmp_kv"])
    w = [inp[k] for k in ("wkv", "wgate", "ape", "norm_weight")]
    x2d = inp["x"].reshape(case.tokens, -1)
    exact = compute_reference(TINY, plan, x2d, *w, inp["state"], dtype=torch.float64)
    ref = compute_reference(TINY, plan, x2d, *w, inp["state"])
    assert compare(ref.entries, exact.entries, ref.entries).ok
    bad = compute_reference(TINY, plan, x2d, w[0], w[1], torch.roll(w[2], 1, dims=0), w[3], inp["state"])
    assert not compare(bad.entries, exact.entries, ref.entries).ok
    # a window pooled at the wrong RoPE position (the closing token instead of the window start)
    late = dataclasses.replace(plan, closing_pos=plan.closing_pos + RATIO - 1)
    moved = compute_reference(TINY, late, x2d, *w, inp["state"])
    assert not compare(moved.entries, exact.entries, ref.entries).ok


def test_state_rows_hold_tagged_projections():
    case = CASES["tiny-decode-S1"]
    inp = casekit.make_inputs(case)
    out = compressor_ratio128(*[inp[k] for k in casekit.CALL_ARGS], config=TINY, backend="torch")
    pos = inp["start_pos"]
    assert torch.equal(out.closes[:, 0], (pos + 1) % RATIO == 0)
    rows = inp["state_block_table"][torch.arange(len(pos)), pos // 8].long() * 8 + pos % 8
    assert torch.equal(inp["state_pos"].view(-1)[rows].long(), pos)
    x = inp["x"][:, 0].float()
    kv = inp["state"].view(-1, 1024)[rows]
    assert torch.allclose(kv[:, :512], x @ inp["wkv"].float().T, atol=1e-5)
    assert torch.allclose(kv[:, 512:], x @ inp["wgate"].float().T + inp["ape"][pos % RATIO], atol=1e-5)


def test_make_caches_layout():
    state, state_pos, cmp_kv = make_caches(TINY, state_blocks=3, state_page=8, cmp_blocks=2, cmp_block=8)
    assert state.shape == (3, 8, 1024) and (state_pos == -1).all() and cmp_kv.shape == (2, 8, 512)
