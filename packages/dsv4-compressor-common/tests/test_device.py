"""The kernel path's O(step) metadata (`device.kernel_meta`) against the host plan
(`paging.plan_step`, the golden's bookkeeping) on every small scenario of both ratios: the
same state rows, the same windows with the same slots from the same sources, the same cmp
rows; RoPE rows computed on the device bit-identical to `rope_rows`; tags written in place."""

import pytest
import torch

from dsv4_compressor_common.device import kernel_meta, masked_scatter, rope_on_device, write_tags
from dsv4_compressor_common.pooling import coff
from dsv4_compressor_common.testing import Case, make_inputs, plan_of
from dsv4_core import TINY
from dsv4_rope_tables import profile_for_ratio, rope_rows

# the decode packages' small scenarios (first windows, overlaps, page crossings, windows
# closing on either token, several windows per request), both ratios
CASES = {c.name: c for c in [
    Case("tiny-decode-S2-r4", TINY, 4, (0, 1, 2, 3, 6, 7, 127), 2),
    Case("tiny-decode-S1-r4", TINY, 4, (3, 7, 0, 10, 4), 1),
    Case("tiny-decode-S5-r4", TINY, 4, (0, 5, 130, 2), 5),
    Case("tiny-decode-S9-r4", TINY, 4, (1, 6), 9),
    Case("tiny-decode-S2-r128", TINY, 128, (0, 126, 127, 254, 300), 2),
    Case("tiny-decode-S3-r128", TINY, 128, (125, 383, 0), 3),
    Case("tiny-prefill-r128", TINY, 128, (100,), 300),
    Case("tiny-prefill-r4-unpermuted", TINY, 4, (6,), 9, permuted=False),
]}


def _meta(case, inp):
    return kernel_meta(case.ratio, case.config.head_dim, inp["start_pos"], case.seq, inp["state_block_table"],
                       inp["cmp_slot_mapping"], state_blocks=inp["state"].shape[0], state_page=inp["state"].shape[1],
                       cmp_rows_total=inp["cmp_kv"].shape[0] * inp["cmp_kv"].shape[1])


@pytest.mark.parametrize("name", list(CASES))
def test_metadata_matches_the_host_plan(name):
    case = CASES[name]
    inp = make_inputs(case)
    plan, meta = plan_of(case, inp), _meta(case, inp)
    assert torch.equal(meta.state_rows.long(), plan.state_rows)
    assert torch.equal(meta.positions, plan.positions)
    exists = meta.win_tok < meta.positions.numel()
    assert torch.equal(meta.win_tok[exists], plan.closing_tok)
    assert torch.equal(torch.nonzero(meta.closes).reshape(-1), plan.closing_tok)
    assert not meta.valid[~exists].any() and bool((meta.cmp_rows[~exists] == -1).all())
    assert torch.equal(meta.valid[exists].bool(), plan.slot_valid)
    assert torch.equal(meta.cmp_rows[exists].long(), plan.cmp_rows)
    assert torch.equal(meta.rope_pos[exists], plan.rope_pos)
    co = coff(case.ratio)
    st, tk = meta.from_state[exists].bool(), meta.valid[exists].bool() & ~meta.from_state[exists].bool()
    half = plan.slot_half[None, :].expand_as(plan.slot_pos)
    assert torch.equal(st, plan.slot_row >= 0) and torch.equal(tk, plan.slot_tok >= 0)
    assert torch.equal(meta.kv_state[exists][st].long(), (plan.slot_row * 2 * co + half)[st])
    assert torch.equal(meta.score_state[exists][st].long(), (plan.slot_row * 2 * co + co + half)[st])
    assert torch.equal(meta.tok[exists][tk].long(), (plan.slot_tok * co + half)[tk])
    padded = meta.padded(32)
    assert padded.kv_state.shape[0] % 32 == 0 and not padded.valid[meta.windows:].any()


def test_rope_rows_on_the_device_are_bit_identical():
    pos = torch.tensor([0, 1, 5, 127, 128, 4095, 65535, 1_000_000])
    for ratio in (4, 128):
        cos, sin = rope_on_device(TINY, ratio, pos)
        ref = rope_rows(profile_for_ratio(TINY, ratio), pos)
        assert torch.equal(cos, ref.cos) and torch.equal(sin, ref.sin)


def test_tags_written_in_place_only_where_a_row_exists():
    case = CASES["tiny-decode-S2-r4"]
    inp = make_inputs(case)
    meta = _meta(case, inp)
    meta.state_rows[0] = -1  # one token without a state page
    tags = inp["state_pos"].clone()
    ptr = tags.data_ptr()
    write_tags(tags, meta)
    want = inp["state_pos"].clone().view(-1)
    ok = meta.state_rows >= 0
    want[meta.state_rows[ok].long()] = meta.positions[ok].to(torch.int32)
    assert tags.data_ptr() == ptr and torch.equal(tags.view(-1), want)


@pytest.mark.parametrize("rows", [[5, -1, 7, 2, -1], [-1, -1, -1, -1, 3], [-1] * 5, [4, 0, 9], [5, 1, 7, 2],
                                  [5, 1, 7, 2, 8, -1, 3]])
def test_masked_scatter_writes_exactly_the_rows_that_have_a_destination(rows):
    """Applied as the kernels apply it (tile by tile: a tile whose every row has a destination
    written straight, others through `pick`, skipped tiles write nothing), the scatter writes
    each row with a destination there, and nothing else anywhere."""
    tile = 4
    r = torch.tensor(rows)
    pick, dst, anyr = masked_scatter(r, tile)
    src = torch.randn(len(rows), 3)
    src_pad = torch.cat([src, torch.full((pick.numel() - len(rows), 3), float("nan"))])
    out = torch.zeros(10, 3)
    for i in range(dst.shape[0]):
        tile_rows = torch.cat([r, r.new_full((pick.numel() - len(rows),), -1)])[i * tile:(i + 1) * tile]
        assert int(anyr[i]) == int((tile_rows >= 0).any()) + int((tile_rows >= 0).all())
        if anyr[i] > 1:  # straight from the tile's rows
            out[dst[i]] = src_pad[i * tile:(i + 1) * tile]
        elif anyr[i]:
            picked = src_pad[i * tile + pick[i * tile:(i + 1) * tile].long()]
            assert not torch.isnan(picked).any()  # padding is never picked
            out[dst[i]] = picked
    want = torch.zeros(10, 3)
    want[r[r >= 0]] = src[r >= 0]
    assert torch.equal(out, want) and (dst >= 0).all()
