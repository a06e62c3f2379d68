"""Semantics of the golden: an independent formulation (the official model's decode state
machine), chunking equivalence, the overlap halves, APE and RoPE position."""

import dataclasses

import pytest
import torch

from dsv4_compressor_ratio4 import RATIO, compressor_ratio4, make_caches
from dsv4_compressor_ratio4.cases import CASES
from dsv4_compressor_ratio128 import casekit
from dsv4_compressor_ratio128.step import compute_reference, make_plan
from dsv4_core import TINY
from dsv4_core.compare import compare
from dsv4_rope_tables import profile_for_ratio, rope_rows, to_freqs_cis


def official_decode(cfg, w, x):
    """The official `Compressor` decode loop for ratio 4, token by token from position 0, fp32:
    state [2R, 2d] (score −inf), slot R + pos % R, on close pool cat(state[:R, :d],
    state[R:, d:]) over 8 slots, shift the second half into the first; bf16, RMSNorm, RoPE
    via complex freqs_cis at pos + 1 − R. Returns {closing position: entry (fp32)}."""
    R, d = RATIO, cfg.head_dim
    kv_state = torch.zeros(2 * R, 2 * d)
    score_state = torch.full((2 * R, 2 * d), float("-inf"))
    out = {}
    prof = profile_for_ratio(cfg, R)
    for pos in range(x.shape[0]):
        xf = x[pos].float()
        kv = xf @ w["wkv"].float().T
        sc = xf @ w["wgate"].float().T + w["ape"][pos % R]
        kv_state[R + pos % R], score_state[R + pos % R] = kv, sc
        if (pos + 1) % R == 0:
            k = torch.cat([kv_state[:R, :d], kv_state[R:, d:]])
            s = torch.cat([score_state[:R, :d], score_state[R:, d:]])
            pooled = (k * torch.softmax(s, dim=0)).sum(0).bfloat16().float()
            n = (pooled * torch.rsqrt(pooled.pow(2).mean() + cfg.eps) * w["norm_weight"].float()).bfloat16().float()
            cos, sin = rope_rows(prof, torch.tensor([pos + 1 - R]))
            fc = to_freqs_cis(cos, sin)[0]
            r = torch.view_as_real(torch.view_as_complex(n[-64:].reshape(-1, 2).contiguous()) * fc).reshape(-1)
            n[-64:] = r.bfloat16().float()
            out[pos] = n
            kv_state[:R], score_state[:R] = kv_state[R:].clone(), score_state[R:].clone()
    return out


def test_matches_official_state_machine():
    st = casekit.make_stream(TINY, RATIO, 21)
    _, _, cmp_kv = casekit.run_stream(st, [("decode", 3), ("decode", 9), ("decode", 9)])
    ref = official_decode(TINY, st.weights, st.x)
    assert sorted(ref) == [3, 7, 11, 15, 19]
    for p, entry in ref.items():
        c = p // RATIO
        row = int(st.cmp_table[c // st.cmp_block]) * st.cmp_block + c % st.cmp_block
        got = cmp_kv.view(-1, TINY.head_dim)[row].float()
        assert (got - entry).abs().max() <= 2 ** -6 * entry.abs().max(), p  # ≤ 1 bf16 ulp of the largest lane


PLANS = {
    "uneven-decode": [("decode", 5), ("decode", 7), ("decode", 1), ("decode", 11)],
    "prefill-then-S1-S2-S5": [("prefill", 6), ("decode", 1), ("decode", 2), ("decode", 5), ("decode", 10)],
    "uneven-prefill": [("prefill", 2), ("prefill", 13), ("prefill", 9)],
}


@pytest.mark.parametrize("plan", list(PLANS))
def test_chunking_is_equivalent(plan):
    st = casekit.make_stream(TINY, RATIO, 24)
    single = casekit.run_stream(st, [("prefill", 24)])
    exact = casekit.exact_stream(st)
    got = casekit.run_stream(st, PLANS[plan])
    for r in casekit.equivalence_reports(got, single, exact):
        assert r.ok, str(r)


def _case_values(name, **kw):
    case = CASES[name]
    inp = casekit.make_inputs(case)
    plan = make_plan(TINY, RATIO, inp["start_pos"], case.seq, inp["state_pos"], inp["state_block_table"],
                     inp["cmp_slot_mapping"], inp["cmp_kv"])
    plan = dataclasses.replace(plan, **kw)
    w = [inp[k] for k in ("wkv", "wgate", "ape", "norm_weight")]
    x2d = inp["x"].reshape(case.tokens, -1)
    return plan, inp, w, x2d


def test_swapped_halves_and_perturbed_ape_fail_the_golden():
    plan, inp, w, x2d = _case_values("tiny-decode-S2")
    exact = compute_reference(TINY, plan, x2d, *w, inp["state"], dtype=torch.float64)
    ref = compute_reference(TINY, plan, x2d, *w, inp["state"])
    assert compare(ref.entries, exact.entries, ref.entries).ok
    swapped = compute_reference(TINY, dataclasses.replace(plan, slot_half=1 - plan.slot_half), x2d, *w, inp["state"])
    assert not compare(swapped.entries, exact.entries, ref.entries).ok
    w_ape = [w[0], w[1], torch.roll(w[2], 1, dims=0), w[3]]
    bad = compute_reference(TINY, plan, x2d, *w_ape, inp["state"])
    assert not compare(bad.entries, exact.entries, ref.entries).ok
    assert not compare(bad.score_rows, exact.score_rows, ref.score_rows).ok


def test_first_window_has_no_previous_half():
    """The window closing at 3 pools only positions 0..3: garbage in any other state row
    (tags −1) and the previous-half slots at −4..−1 do not matter."""
    plan, inp, w, x2d = _case_values("tiny-decode-S2")
    first = torch.nonzero(plan.closing_pos == 3).reshape(-1)
    assert first.numel() and not bool(plan.slot_valid[first, :RATIO].any())
    inp["state"].fill_(float("nan"))
    inp["state"].view(-1, inp["state"].shape[-1])[plan.slot_row[plan.slot_row >= 0]] = 0.5  # rows the windows read
    vals = compute_reference(TINY, plan, x2d, *w, inp["state"])
    assert torch.isfinite(vals.entries).all()


def test_output_marks_closing_tokens():
    case = CASES["tiny-decode-S2"]
    inp = casekit.make_inputs(case)
    out = compressor_ratio4(*[inp[k] for k in casekit.CALL_ARGS], config=TINY, backend="torch")
    pos = inp["start_pos"][:, None] + torch.arange(case.seq)
    assert torch.equal(out.closes, (pos + 1) % RATIO == 0)
    assert (out.kv[~out.closes] == 0).all()
    e = out.kv[out.closes].float()  # the RoPE position (p* - 3) is checked by test_matches_official_state_machine
    rms = e[:, :448].pow(2).mean(-1)
    assert torch.isfinite(rms).all() and (rms > 0).all()


def test_make_caches_layout():
    state, state_pos, cmp_kv = make_caches(TINY, state_blocks=3, state_page=4, cmp_blocks=2, cmp_block=8)
    assert state.shape == (3, 4, 2048) and state.dtype == torch.float32
    assert (state_pos == -1).all() and state_pos.dtype == torch.int32
    assert cmp_kv.shape == (2, 8, 512) and cmp_kv.dtype == torch.bfloat16
