"""Host-side bookkeeping of one compressor call: which windows close, where each of their
slots comes from (this call's tokens or the paged state cache), which state rows and
compressed-cache rows get written — all validated before anything is written.

Caches (the layout the compressor family chooses):

- `state [num_state_blocks, page, 2·C]` fp32: per absolute position one row
  `[kv_proj (C) | score + ape (C)]`; row of position p of request b:
  `state_block_table[b, p // page] · page + p % page` (page −1: not allocated).
- `state_pos [num_state_blocks, page]` int32: the position each state row holds, −1 for
  none. A window reads a state row only after checking its tag equals the position it
  needs; a needed position (≥ 0, before this call's first token) whose page is missing or
  whose tag differs is an error. Positions < 0 never exist and are left out of the pool.
- `cmp_kv [num_blocks, block_size, head_dim]` bf16, written at the flat row
  `cmp_slot_mapping[b, s]` for the token that closes a window (−1: do not write).

C = coff(ratio) · head_dim; head_dim is an argument (the attention compressors use the
config's head_dim, the indexer's key compressor its own). Nothing here depends on the ratio
beyond the window geometry of `pooling`.
"""

from __future__ import annotations

import dataclasses

import torch

from .pooling import coff, window_positions


class StateMissingError(ValueError):
    """A window needs a position whose state row is not in the state cache."""


@dataclasses.dataclass
class Plan:
    ratio: int
    head_dim: int
    coff: int  # 2 for ratio 4 (two halves), else 1
    positions: torch.Tensor  # [T] int64, token-major (b, s)
    state_rows: torch.Tensor  # [T] int64 flat state row per token, -1 = not written
    closing_tok: torch.Tensor  # [N] flat token index of each closing token
    closing_pos: torch.Tensor  # [N] closing position p*
    slot_pos: torch.Tensor  # [N, W] positions
    slot_half: torch.Tensor  # [W] projection half of each slot
    slot_valid: torch.Tensor  # [N, W] bool: position >= 0
    slot_tok: torch.Tensor  # [N, W] flat token index for slots from this call, -1 otherwise
    slot_row: torch.Tensor  # [N, W] flat state row for slots from the state cache, -1 otherwise
    cmp_rows: torch.Tensor  # [N] flat cmp_kv row, -1 = do not write

    @property
    def num_windows(self) -> int:
        return int(self.closing_tok.numel())

    @property
    def rope_pos(self) -> torch.Tensor:
        """Each window's first position (the RoPE position of its entry)."""
        return self.closing_pos - self.ratio + 1


def _unique_or_raise(name: str, rows: torch.Tensor) -> None:
    r = rows[rows >= 0]
    if r.numel() and r.unique().numel() != r.numel():
        vals, counts = r.unique(return_counts=True)
        raise ValueError(f"{name}: row {int(vals[counts > 1][0])} is written by more than one token")


def plan_step(start_pos: torch.Tensor, seq: int, *, ratio: int, head_dim: int, state_pos: torch.Tensor,
              state_block_table: torch.Tensor, cmp_slot_mapping: torch.Tensor, cmp_rows_total: int,
              max_position: int, names: tuple[str, str] = ("cmp_kv", "cmp_slot_mapping")) -> Plan:
    """Validate the indices and build the plan for B requests × `seq` consecutive tokens
    starting at `start_pos [B]`. Raises (ValueError / StateMissingError) before anything is
    written; reads but never modifies the caches. `names`: the caller's names of the
    compressed cache and its slot mapping (errors name them)."""
    cache_name, slots_name = names
    start = start_pos.detach().to("cpu", torch.int64).reshape(-1)
    B = start.numel()
    if start.numel() and int(start.min()) < 0:
        raise ValueError(f"start_pos must be >= 0, got {int(start.min())}")
    if start.numel() and int(start.max()) + seq > max_position:
        raise ValueError(f"start_pos + tokens must be <= max_position_embeddings ({max_position}), "
                         f"got {int(start.max())} + {seq}")
    nbs, page = state_pos.shape
    table = state_block_table.detach().to("cpu", torch.int64).reshape(B, -1)
    max_pages = table.shape[1]
    if table.numel() and (int(table.min()) < -1 or int(table.max()) >= nbs):
        bad = int(table.min()) if int(table.min()) < -1 else int(table.max())
        raise ValueError(f"state_block_table values must be in [0, {nbs}) or -1, got {bad}")
    used = table[table >= 0]
    if used.numel() and used.unique().numel() != used.numel():
        vals, counts = used.unique(return_counts=True)
        raise ValueError(f"state_block_table: state page {int(vals[counts > 1][0])} is listed more than once; a "
                         "page belongs to one request and holds one page of its positions")
    cmp_map = cmp_slot_mapping.detach().to("cpu", torch.int64).reshape(-1)
    if cmp_map.numel() and (int(cmp_map.min()) < -1 or int(cmp_map.max()) >= cmp_rows_total):
        bad = int(cmp_map.min()) if int(cmp_map.min()) < -1 else int(cmp_map.max())
        raise ValueError(f"{slots_name} values must be in [0, {cmp_rows_total}) (rows of {cache_name}) or -1, "
                         f"got {bad}")

    pos = (start[:, None] + torch.arange(seq, dtype=torch.int64)[None, :])  # [B, S]
    req = torch.arange(B, dtype=torch.int64)[:, None].expand(B, seq)

    def rows_of(b: torch.Tensor, p: torch.Tensor, what: str) -> torch.Tensor:
        lp = p // page
        if p.numel() and int(lp.max()) >= max_pages:
            i = int(torch.argmax(lp))
            raise ValueError(f"state_block_table has {max_pages} pages per request; position {int(p.reshape(-1)[i])} "
                             f"({what}) needs page {int(lp.reshape(-1)[i])}")
        blk = table[b, lp]
        return torch.where(blk >= 0, blk * page + p % page, torch.full_like(blk, -1))

    state_rows = rows_of(req, pos, "a new token").reshape(-1)
    _unique_or_raise("state_block_table", state_rows)

    flat_pos = pos.reshape(-1)
    closing_tok = torch.nonzero((flat_pos + 1) % ratio == 0).reshape(-1)
    closing_pos = flat_pos[closing_tok]
    b_of = closing_tok // seq
    slot_pos, half = window_positions(closing_pos, ratio)
    valid = slot_pos >= 0
    first = start[b_of][:, None]
    is_new = slot_pos >= first
    slot_tok = torch.where(is_new, b_of[:, None] * seq + (slot_pos - first), torch.full_like(slot_pos, -1))
    from_state = valid & ~is_new
    slot_row = torch.full_like(slot_pos, -1)
    if bool(from_state.any()):
        bb = b_of[:, None].expand_as(slot_pos)[from_state]
        pp = slot_pos[from_state]
        rr = rows_of(bb, pp, "needed by a window that closes in this call")
        tags = state_pos.detach().to("cpu", torch.int64).reshape(-1)
        missing = rr < 0
        if bool(missing.any()):
            i = int(torch.nonzero(missing)[0])
            p_close = int(closing_pos[int(torch.nonzero(from_state)[i, 0])])
            raise StateMissingError(f"state page missing: request {int(bb[i])} needs position {int(pp[i])} from the "
                                    f"state cache (window closing at {p_close}) "
                                    f"but state_block_table[{int(bb[i])}, {int(pp[i]) // page}] is -1")
        held = tags[rr]
        wrong = held != pp
        if bool(wrong.any()):
            i = int(torch.nonzero(wrong)[0])
            what = "no position" if int(held[i]) < 0 else f"position {int(held[i])}"
            raise StateMissingError(f"state row {int(rr[i])} holds {what}, but request {int(bb[i])} needs position "
                                    f"{int(pp[i])} there (its state was never written or was overwritten)")
        slot_row[from_state] = rr
    cmp_rows = cmp_map[closing_tok]
    _unique_or_raise(slots_name, cmp_rows)
    return Plan(ratio=ratio, head_dim=head_dim, coff=coff(ratio), positions=flat_pos, state_rows=state_rows,
                closing_tok=closing_tok, closing_pos=closing_pos, slot_pos=slot_pos, slot_half=half,
                slot_valid=valid, slot_tok=slot_tok, slot_row=slot_row, cmp_rows=cmp_rows)


def gather_slots(plan: Plan, state: torch.Tensor, kv_rows: torch.Tensor, score_rows: torch.Tensor,
                 dtype: torch.dtype = torch.float32) -> tuple[torch.Tensor, torch.Tensor]:
    """Assemble the windows' slots [N, W, head_dim] (kv and score) from this call's rows
    (kv_rows / score_rows [T, C]) and the state cache; absent slots are zero."""
    N, W = plan.slot_pos.shape
    HD, C = plan.head_dim, plan.coff * plan.head_dim
    dev = kv_rows.device
    kv = torch.zeros(N, W, HD, dtype=dtype, device=dev)
    sc = torch.zeros(N, W, HD, dtype=dtype, device=dev)
    if N == 0:
        return kv, sc
    flat_state = state.reshape(-1, state.shape[-1])
    lanes = (plan.slot_half[:, None] * HD + torch.arange(HD)[None, :]).to(dev)  # [W, HD]
    for src, idx, base_kv, base_sc in (("tok", plan.slot_tok, kv_rows, score_rows), ("state", plan.slot_row, None, None)):
        m = idx >= 0
        if not bool(m.any()):
            continue
        w_of = torch.nonzero(m)[:, 1].to(dev)
        ii = idx[m].to(dev)
        if src == "tok":
            kv[m.to(dev)] = base_kv[ii[:, None], lanes[w_of]].to(dtype)
            sc[m.to(dev)] = base_sc[ii[:, None], lanes[w_of]].to(dtype)
        else:
            rows = flat_state[ii]
            kv[m.to(dev)] = rows[torch.arange(ii.numel(), device=dev)[:, None], lanes[w_of]].to(dtype)
            sc[m.to(dev)] = rows[torch.arange(ii.numel(), device=dev)[:, None], C + lanes[w_of]].to(dtype)
    return kv, sc


def write_caches(plan: Plan, state: torch.Tensor, state_pos: torch.Tensor, cmp_kv: torch.Tensor,
                 kv_rows: torch.Tensor, score_rows: torch.Tensor, entries: torch.Tensor) -> None:
    """Write this call's state rows (with their position tags) and the compressed entries, in place."""
    m = plan.state_rows >= 0
    if bool(m.any()):
        rows = plan.state_rows[m].to(state.device)
        sel = m.to(kv_rows.device)
        flat = state.view(-1, state.shape[-1])
        flat[rows] = torch.cat([kv_rows[sel], score_rows[sel]], dim=-1).to(state.dtype)
        state_pos.view(-1)[rows.to(state_pos.device)] = plan.positions[m].to(state_pos.device, state_pos.dtype)
    c = plan.cmp_rows >= 0
    if bool(c.any()):
        cmp_kv.view(-1, cmp_kv.shape[-1])[plan.cmp_rows[c].to(cmp_kv.device)] = \
            entries[c.to(entries.device)].to(cmp_kv.dtype)
