"""The kernel path's per-call metadata, O(step): torch ops on the arguments' own device, no
value read back, nothing of the caches touched (`kernel_meta`), and the launch of the two
kernels on the caches themselves (`run_kernels`).

Which tokens close a window depends on start_pos values, which the host does not read: every
request gets K = (S − 1) // ratio + 1 candidate windows (the most S consecutive positions can
close), the k-th closing at its k-th position p with (p + 1) % ratio == 0; a candidate past the
request's last token does not exist: its slots are absent and it has no cmp row. Decode at
S < ratio has one candidate per request, exactly the windows a full step closes.

Each window slot (`pooling.window_positions`) is one d-wide chunk: of this call's projected
rows when its position is one of the request's new tokens (`kv_rows` / `score_rows [T, C]`
seen as [T·coff, d], chunk t·coff + half), else of the state cache (`state` seen as
[rows·2coff, d]) at the row the state block table gives (row·2coff + half for the kv half,
+ coff for the score half). A slot at a
negative position, or whose state page is −1 / out of range, or of a window that does not
exist, is absent: the kernel selects it away. With `validate=True` the step has already
refused every such case that the official model would treat as an error (`paging.plan_step`:
missing pages, stale tags, shared pages, ranges), so the two modes write the same bits.
"""

from __future__ import annotations

import dataclasses

import torch

from dsv4_core.backends import on_device
from dsv4_rope_tables import frequencies, profile_for_ratio

from .pooling import SEGMENTS_MIN_WINDOW, coff, first_closing, window_positions, window_size


@dataclasses.dataclass
class KernelMeta:
    ratio: int
    head_dim: int
    windows: int  # B·K candidate windows (before padding)
    seq: int  # new tokens per request
    positions: torch.Tensor  # [T] int64 token positions (token-major)
    state_rows: torch.Tensor  # [T] int32 flat state row of each token, −1: none
    closes: torch.Tensor  # [T] bool: the token closes a window
    win_tok: torch.Tensor  # [N] int64 flat token of each window's closer (T: no such window)
    kv_state: torch.Tensor  # [N, W] int32 chunk of the state cache (kv half), 0 where unused
    score_state: torch.Tensor  # [N, W] int32 (score half)
    tok: torch.Tensor  # [N, W] int32 chunk of this call's kv / score rows ([T·coff, d])
    from_state: torch.Tensor  # [N, W] f32 1: the state cache, 0: this call's rows
    valid: torch.Tensor  # [N, W] f32 1: the slot exists
    rope_pos: torch.Tensor  # [N] int64 each window's first position (RoPE), 0 for none
    cmp_rows: torch.Tensor  # [N] int32 flat cmp_kv row, −1: no write
    slot_row: torch.Tensor  # [N, W] int64 flat state row of each slot that has one (this call's too), −1: none
    slot_pos: torch.Tensor  # [N, W] int64 the position each slot needs
    state_first: torch.Tensor | None = None  # [1] int32 (`tag_checked`): 1 where every slot is in the state cache
    win_base: torch.Tensor | None = None  # [N, 1] int32 (`tag_checked`): each window's first state row, 0 for none

    def padded(self, tile: int) -> KernelMeta:
        """N padded to a multiple of `tile` with windows that have no slot and no cmp row."""
        n = self.kv_state.shape[0]
        pad = -(-n // tile) * tile - n
        if pad == 0:
            return self
        T = self.positions.numel()

        def cat(t, fill):
            return torch.cat([t, t.new_full((pad,) + tuple(t.shape[1:]), fill)])

        return dataclasses.replace(
            self, win_tok=cat(self.win_tok, T), kv_state=cat(self.kv_state, 0), score_state=cat(self.score_state, 0),
            tok=cat(self.tok, 0), from_state=cat(self.from_state, 0),
            valid=cat(self.valid, 0), rope_pos=cat(self.rope_pos, 0), cmp_rows=cat(self.cmp_rows, -1),
            slot_row=cat(self.slot_row, -1), slot_pos=cat(self.slot_pos, 0),
            win_base=None if self.win_base is None else cat(self.win_base, 0))

    def tag_checked(self, state_pos: torch.Tensor) -> KernelMeta:
        """The slots read from the state cache kept only where their row's tag (`state_pos`)
        is the position they need; a stale slot is absent, selected away like a missing page
        (what `validate=True` refuses as `StateMissingError`). Read after this call's tags
        are written, so a row this call overwrites (pages aliased, which `validate=True`
        refuses) carries its new position and is dropped too. O(N·W) tags gathered on their
        device, nothing read back."""
        held = state_pos.view(-1)[self.slot_row.clamp(min=0)].to(torch.int64)
        tagged = (self.slot_row >= 0) & (held == self.slot_pos)
        keep = torch.where(self.from_state > 0, tagged.to(torch.float32), torch.ones_like(self.valid))
        valid = self.valid * keep
        # `state_first`: every slot that exists can be read from the state cache (this call's
        # positions included: the project kernel has written their rows), so the pool kernel
        # reads that one source; else (a new token without a state page, aliased pages) it
        # reads this call's positions from this call's rows
        first = ((valid > 0) & ~tagged).any().logical_not()
        W = self.slot_row.shape[1]
        if W >= SEGMENTS_MIN_WINDOW:
            # wide windows: the pool kernel reads each window's rows as one view of the state
            # cache from its first row, so `state_first` also needs every window's rows to be
            # consecutive rows inside the cache (a page a multiple of the window holds each
            # whole window; a window without rows views the first W rows, selected away)
            has = self.slot_row >= 0
            base = self.slot_row - torch.arange(W, device=has.device, dtype=self.slot_row.dtype)
            b0 = torch.where(has, base, base.new_full(base.shape, -(1 << 62))).amax(1, keepdim=True)
            b0 = torch.where(has.any(1, keepdim=True), b0, torch.zeros_like(b0))
            one_run = (~has | (base == b0)).all()
            inside = ((b0 >= 0) & (b0 <= state_pos.numel() - W)).all()
            first = first & one_run & inside
            win_base = b0.clamp(0, max(0, state_pos.numel() - W)).to(torch.int32)
        else:
            win_base = torch.zeros(self.slot_row.shape[0], 1, dtype=torch.int32, device=self.slot_row.device)
        return dataclasses.replace(self, from_state=self.from_state * keep, valid=valid,
                                   state_first=first.to(torch.int32).reshape(1), win_base=win_base)


def kernel_meta(ratio: int, head_dim: int, start_pos: torch.Tensor, seq: int, state_block_table: torch.Tensor,
                cmp_slot_mapping: torch.Tensor, *, state_blocks: int, state_page: int, cmp_rows_total: int,
                swap_halves: bool = False) -> KernelMeta:
    """The metadata of B requests × `seq` tokens from `start_pos [B]` (state_block_table
    [B, M], cmp_slot_mapping [B, seq]). `swap_halves`: the overlap halves exchanged (a
    perturbation the golden check must catch)."""
    dev = start_pos.device
    start = start_pos.reshape(-1).to(torch.int64)
    B, S, P, R = start.numel(), seq, state_page, ratio
    W, CO = window_size(R), coff(R)
    table = state_block_table.reshape(B, -1).to(torch.int64)
    M = table.shape[1]
    ar = torch.arange(S, device=dev, dtype=torch.int64)
    pos = start[:, None] + ar[None, :]  # [B, S]

    def rows_of(b: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
        pp = p.clamp(min=0)
        lp = pp // P
        blk = table[b, lp.clamp(max=M - 1)]
        ok = (p >= 0) & (lp < M) & (blk >= 0) & (blk < state_blocks)
        return torch.where(ok, blk * P + pp % P, torch.full_like(blk, -1))

    req = torch.arange(B, device=dev, dtype=torch.int64)
    state_rows = rows_of(req[:, None].expand(B, S), pos).reshape(-1)

    K = (S - 1) // R + 1
    c0 = first_closing(start, R)  # each request's first closing position
    closing = c0[:, None] + R * torch.arange(K, device=dev, dtype=torch.int64)[None, :]  # [B, K]
    exists = closing < (start + S)[:, None]
    slot_pos, half = window_positions(torch.zeros(0, dtype=torch.int64), R)  # geometry only
    offs = torch.arange(W, dtype=torch.int64, device=dev) - (W - 1)
    half = on_device(half, dev)
    if swap_halves:
        half = 1 - half if R == 4 else half
    sp = closing[:, :, None] + offs[None, None, :]  # [B, K, W]
    first = start[:, None, None]
    bq = req[:, None, None].expand_as(sp)
    from_tok = sp >= first
    tok = (bq * S + (sp - first)).clamp(0, B * S - 1)
    srow = rows_of(bq, sp)
    from_state = ~from_tok & (srow >= 0)
    valid = exists[:, :, None] & (from_tok | from_state)
    ch = 2 * CO
    zero = torch.zeros_like(sp)
    has_row = valid & (srow >= 0)  # this call's positions too: the project kernel writes their rows first
    kv_state = torch.where(has_row, srow * ch + half, zero)
    score_state = torch.where(has_row, kv_state + CO, zero)
    tok_chunk = torch.where(valid & from_tok, tok * CO + half, zero)
    at = (closing - start[:, None]).clamp(0, S - 1)  # the closer's index in its request
    win_tok = torch.where(exists, req[:, None] * S + at, torch.full_like(at, B * S))
    cmap = cmp_slot_mapping.reshape(B, S).to(torch.int64).gather(1, at)
    cmp_rows = torch.where(exists & (cmap >= 0) & (cmap < cmp_rows_total), cmap, torch.full_like(cmap, -1))
    rope_pos = torch.where(exists, closing - R + 1, torch.zeros_like(closing))
    N = B * K
    slot_row = torch.where(has_row, srow, torch.full_like(srow, -1))

    def i32(t):
        return t.reshape(N, -1).to(torch.int32).contiguous() if t.dim() == 3 else t.reshape(N).to(torch.int32)

    return KernelMeta(
        ratio=R, head_dim=head_dim, windows=N, seq=S, positions=pos.reshape(-1), state_rows=state_rows.to(torch.int32),
        closes=((pos + 1) % R == 0).reshape(-1), win_tok=win_tok.reshape(N), kv_state=i32(kv_state),
        score_state=i32(score_state), tok=i32(tok_chunk),
        from_state=(valid & from_state).reshape(N, W).to(torch.float32),
        valid=valid.reshape(N, W).to(torch.float32), rope_pos=rope_pos.reshape(N), cmp_rows=i32(cmp_rows),
        slot_row=slot_row.reshape(N, W), slot_pos=sp.reshape(N, W))


def masked_scatter(rows: torch.Tensor, tile: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """A kernel's tile-wise scatter of N rows to `rows [N]` (−1: no write), padded to whole
    tiles: (pick [N'] int32 — the row of its tile each entry writes: itself, or for −1 the
    tile's first row that has a destination —, dst [N' / tile, tile] int64 — the destination
    of each picked row —, any [N' / tile] int32 — 0: the tile writes nothing, 1: some of its
    rows, 2: every row, `pick` then the identity)."""
    n = rows.numel()
    n_pad = max(1, -(-n // tile)) * tile
    r = torch.cat([rows.reshape(-1).to(torch.int64), rows.new_full((n_pad - n,), -1).to(torch.int64)])
    r = r.reshape(-1, tile)
    ok = r >= 0
    first = torch.argmax(ok.to(torch.int32), dim=1, keepdim=True)  # first row with a destination
    local = torch.arange(tile, device=rows.device, dtype=torch.int64)[None, :].expand_as(r)
    pick = torch.where(ok, local, first.expand_as(r))
    dst = torch.gather(r, 1, pick).clamp(min=0)
    return pick.reshape(-1).to(torch.int32), dst.contiguous(), ok.any(1).to(torch.int32) + ok.all(1).to(torch.int32)


def rope_on_device(cfg, ratio: int, positions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Canonical rows (compress profile) at `positions [N]`, computed on their device without
    reading them back; bit-identical to `dsv4_rope_tables.rope_rows` (same fp32 angle, fp64
    cos / sin, fp32 rounding)."""
    profile = profile_for_ratio(cfg, ratio)
    pos = positions.reshape(-1)
    freqs = on_device(frequencies(profile), pos.device)
    ang = (pos.to(torch.float32)[:, None] * freqs[None, :]).to(torch.float64)
    sign = torch.ones(profile.dim, dtype=torch.float64, device=pos.device)
    sign[0::2] = -1.0
    cos = torch.cos(ang).repeat_interleave(2, dim=-1)
    sin = torch.sin(ang).repeat_interleave(2, dim=-1) * sign
    return cos.to(torch.float32).contiguous(), sin.to(torch.float32).contiguous()


def write_tags(state_pos: torch.Tensor, meta: KernelMeta) -> None:
    """This call's position tags into state_pos in place: O(step) elements, no read-back (a
    token without a state row adds 0 to row 0; rows written are distinct)."""
    flat = state_pos.view(-1)
    ok = meta.state_rows >= 0
    idx = torch.where(ok, meta.state_rows, torch.zeros_like(meta.state_rows)).to(torch.int64)
    delta = torch.where(ok, meta.positions.to(flat.dtype) - flat[idx], torch.zeros_like(idx, dtype=flat.dtype))
    flat.index_put_((idx,), delta, accumulate=True)
