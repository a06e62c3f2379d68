"""Host-side index plumbing every sparse-attention package shares: which compressed entries
a token may see, the logical index rows of a layer kind, and their resolution to the
physical rows of the one KV source the kernel gathers from.

Logical index encoding (pypto-lib's, per request with S tokens in the step — S = T for a
prefill chunk): −1 none; `[0, W)` ring slot of the request's window page; `[W, W+S)` the
step's own token `s'` (overlay: its freshly projected kv, the ring is updated after
attention); `≥ W+S` compressed entry `c = idx − W − S` via the compressed block table.

The visibility rule of compressed entries lives here once (`visible_entries`): a token at
position p sees the entries c < (p+1) // ratio (an entry closes at the last position of its
window). CSA layers apply it as a causal cut of the indexer's top-k (`causal_topk`), HCA
layers attend every visible entry (`visible_entry_columns`); decode and prefill both build
their rows with `index_rows`.
"""

from __future__ import annotations

from typing import NamedTuple

import torch

from dsv4_core.checks import check_tensor
from dsv4_core.config import kind_for_ratio


def check_positions_grid(positions: torch.Tensor, name: str = "positions") -> torch.Tensor:
    """positions [B, S] int: each request's step tokens at consecutive positions, ≥ 0."""
    if positions.dim() != 2 or positions.shape[1] == 0 or positions.shape[0] == 0:
        raise ValueError(f"{name} must be 2-D [B, S] with B, S >= 1, got shape {list(positions.shape)}")
    p = positions.to("cpu", torch.int64)
    if bool((p < 0).any()):
        raise ValueError(f"{name} must be >= 0, got {int(p.min())}")
    if positions.shape[1] > 1 and not bool((p[:, 1:] - p[:, :-1] == 1).all()):
        raise ValueError(f"{name}: the tokens of one request must be at consecutive positions")
    return p


def visible_entries(positions: torch.Tensor, compress_ratio: int) -> torch.Tensor:
    """How many compressed entries a token at position p may see: (p+1) // ratio (entry c
    closes at position (c+1)·ratio − 1). Same shape as `positions`."""
    return (positions + 1) // compress_ratio


def causal_topk(topk_idxs: torch.Tensor, positions: torch.Tensor, *, compress_ratio: int) -> torch.Tensor:
    """The CSA causal cut of the indexer's picks [T, k] (compressed entry ids, −1 none, any
    order, holes allowed) for tokens at positions [B, S] (T = B·S): entries with
    0 ≤ c < (p+1)//ratio kept in the caller's order, −1 for the others (an earlier token of
    the step may be handed an entry that closes later in the step: it is masked). A wrongly
    shaped or typed `topk_idxs` and values below −1 are refused."""
    p = check_positions_grid(positions)
    check_tensor("topk_idxs", topk_idxs, shape=(p.numel(), None), dtype=(torch.int32, torch.int64))
    tk = topk_idxs.to("cpu", torch.int64)
    if tk.numel() and int(tk.min()) < -1:
        raise ValueError(f"topk_idxs values must be >= -1 (-1 = none), got {int(tk.min())}")
    vis = visible_entries(p.reshape(-1), compress_ratio)[:, None]
    return torch.where((tk >= 0) & (tk < vis), tk, torch.full_like(tk, -1))


def visible_entry_columns(positions: torch.Tensor, *, compress_ratio: int) -> torch.Tensor:
    """The HCA rule: every compressed entry a token sees, in order — [T, n_max] with
    n_max = the most any token of positions [B, S] sees; c where c < (p+1)//ratio, else −1."""
    p = check_positions_grid(positions)
    vis = visible_entries(p.reshape(-1), compress_ratio)[:, None]
    c = torch.arange(int(vis.max()))[None, :].expand(p.numel(), -1)
    return torch.where(c < vis, c, torch.full_like(c, -1))


def window_indices(positions: torch.Tensor, window: int, group: int = 1) -> torch.Tensor:
    """Window index rows [B·S, W] int32 for positions [B, S] (a decode step of S tokens per
    request, or a prefill chunk as B=1, S=T).

    Token (b, s) at position p sees positions max(0, p−W+1) … p, oldest first and aligned
    to the row's end: column j holds position p − W + 1 + j, −1 where that is < 0 (a young
    request's row starts with −1). A position of this step (s' ≤ s) is the overlay index
    W + s'; an older one is its ring slot pos % W (the ring holds the W positions before
    the step). So a token's step positions are always its row's last columns (at most S:
    the kernel gathers the step's kv for those only, `step_columns`).

    group > 1: the rows of each run of `group` consecutive tokens of a request (the last
    run of a request may be shorter) share one column layout, so that the kernel reads
    the run's rows once (`share_group`): [B·S, W − 1 + group], column j of a run starting
    at position P0 holds position P0 − W + 1 + j; the run's token u sees columns
    u … W − 1 + u (−1 elsewhere, and for positions < 0). group 1 is the per-token layout
    above."""
    return window_rows(check_positions_grid(positions), window, group)


def window_rows(positions: torch.Tensor, window: int, group: int = 1) -> torch.Tensor:
    """`window_indices` without the checks (nothing read back; device ops on positions'
    device, for `validate=False`)."""
    p = positions
    B, S = p.shape
    W, g = window, group
    s = torch.arange(S, device=p.device)
    u = s % g  # the token's place in its run
    p_run = p[:, s - u]  # [B, S] the run's first position
    j = torch.arange(window_columns(W, g), device=p.device)
    pos = p_run[:, :, None] - (W - 1) + j  # [B, S, W-1+g]
    ok = (j >= u[None, :, None]) & (j <= W - 1 + u[None, :, None]) & (pos >= 0)
    p0 = p[:, :1, None]
    idx = torch.where(pos >= p0, W + (pos - p0), pos % W)
    idx = torch.where(ok, idx, torch.full_like(idx, -1))
    return idx.reshape(B * S, window_columns(W, g)).to(torch.int32)


def paged_window_rows(positions: torch.Tensor, window: int) -> torch.Tensor:
    """Decode window rows in the ring page's own order (`index_rows(paged=True)`): [B·S, W + S]
    int32 for positions [B, S], nothing checked or read back. Column j < W is ring slot j,
    which holds the latest position q < p0 (the request's first step position) with
    q ≡ j (mod W); token (b, s) at position p takes it where max(0, p − W + 1) ≤ q, else −1.
    Column W + s' is the step's token s', taken where s' ≤ s. A token sees the same
    positions as in `window_rows`, in slot order: the kernel reads a request's window as
    its ring page and its step rows as they are (`paged_segment`), nothing gathered."""
    p = positions
    B, S = p.shape
    W = window
    j = torch.arange(W, device=p.device)
    p0 = p[:, :1, None]  # [B, 1, 1]
    q = p0 - 1 - torch.remainder(p0 - 1 - j, W)  # [B, 1, W] the position slot j holds
    ring = torch.where((q >= 0) & (q >= p[:, :, None] - W + 1), j, torch.full_like(q, -1))  # [B, S, W]
    s = torch.arange(S, device=p.device)
    step = torch.where(s[None, :] <= s[:, None], W + s[None, :], torch.full((S, S), -1, device=p.device))
    rows = torch.cat([ring, step[None].expand(B, S, S)], -1)
    return rows.reshape(B * S, W + S).to(torch.int32)


def window_columns(window: int, group: int = 1, paged_step: int = 0) -> int:
    """Window columns of an index row: W per token, W − 1 + group for a run of `group`
    tokens (`window_indices`); the ring page and the step, W + S, for paged rows of a step
    of S = `paged_step` > 0 tokens (`paged_window_rows`)."""
    if paged_step > 0:
        return window + paged_step
    return window if group == 1 else window - 1 + group


# a CSA run's window part is padded with −1 columns to a multiple of this, so that each
# token's own top-k columns start on a whole kernel tile (the kernel's KV_ROUND)
RUN_WINDOW_ALIGN = 64


def window_span(window: int, group: int = 1, compress_ratio: int = 0, paged_step: int = 0) -> int:
    """Columns of an index row before its compressed entries: `window_columns`, and for CSA
    runs (group > 1: the run shares its window rows, each token keeps its own top-k) padded
    with −1 to a multiple of RUN_WINDOW_ALIGN (W = 128, runs of 16: 143 → 192)."""
    ww = window_columns(window, group, paged_step)
    if compress_ratio == 4 and group > 1:
        return -(-ww // RUN_WINDOW_ALIGN) * RUN_WINDOW_ALIGN
    return ww


def _pad_window(rows: torch.Tensor, span: int) -> torch.Tensor:
    """Window rows [T, n] padded with −1 columns to `span`."""
    if rows.shape[1] == span:
        return rows
    pad = torch.full((rows.shape[0], span - rows.shape[1]), -1, dtype=rows.dtype, device=rows.device)
    return torch.cat([rows, pad], 1)


def compressed_indices(entries: torch.Tensor, window: int, step_tokens: int) -> torch.Tensor:
    """Logical index of compressed entries c (−1 kept): W + S + c."""
    e = entries.to(torch.int64)
    return torch.where(e >= 0, e + window + step_tokens, torch.full_like(e, -1)).to(torch.int32)


def index_rows(positions: torch.Tensor, *, window: int, compress_ratio: int,
               topk_idxs: torch.Tensor | None = None, group: int = 1, paged: bool = False) -> torch.Tensor:
    """The logical index rows [B·S, W + k] int32 of a layer kind for positions [B, S]:
    columns [0, W) the window (`window_indices`), then the compressed entries as W + S + c —
    CSA (ratio 4): one column per top-k column after the causal cut (`causal_topk`); HCA
    (ratio 128): every visible entry in order (`visible_entry_columns`); SWA (ratio 0): none.
    `topk_idxs` is required by CSA and refused by the other kinds. group > 1: runs of
    `group` tokens share one window column layout (`window_indices`); a CSA row's window
    part is then `window_span` wide (−1 padding) and its top-k columns stay the token's own.
    paged (a decode step): the window columns in the ring page's order (`paged_window_rows`)."""
    kind = kind_for_ratio(compress_ratio)
    p = check_positions_grid(positions)
    S = p.shape[1]
    win = paged_window_rows(p, window) if paged else window_indices(p, window, group)
    parts = [_pad_window(win, window_span(window, group, compress_ratio, S if paged else 0))]
    if kind == "csa":
        if topk_idxs is None:
            raise ValueError("topk_idxs is required for a CSA layer (compress_ratio 4)")
        parts.append(compressed_indices(causal_topk(topk_idxs, p, compress_ratio=compress_ratio), window, S))
    elif topk_idxs is not None:
        raise ValueError(f"topk_idxs is only taken by CSA layers (compress_ratio 4), got compress_ratio "
                         f"{compress_ratio}")
    if kind == "hca":
        parts.append(compressed_indices(visible_entry_columns(p, compress_ratio=compress_ratio), window, S))
    return torch.cat(parts, 1)


def index_rows_unchecked(positions: torch.Tensor, *, window: int, compress_ratio: int,
                         topk_idxs: torch.Tensor | None = None, cmp_capacity: int = 0,
                         group: int = 1, paged: bool = False) -> torch.Tensor:
    """The logical index rows of `index_rows` for `validate=False`: device ops on the
    positions' / top-k's device, nothing read back, nothing refused. Window columns as
    `window_rows`; CSA: W + S + c for each top-k c ≥ 0 (no causal cut here: the kernel masks
    c ≥ (p+1)//ratio itself; a value < −1 selects nothing); HCA: W + S + c for every
    c < `cmp_capacity` (the compressed block table's capacity, M·blk — a width from shapes,
    where `index_rows` reads the positions back for the most entries any token sees; the
    kernel masks the entries a token may not see yet). SWA: the window only."""
    kind = kind_for_ratio(compress_ratio)
    B, S = positions.shape
    W = window
    win = paged_window_rows(positions, W) if paged else window_rows(positions, W, group)
    parts = [_pad_window(win, window_span(W, group, compress_ratio, S if paged else 0))]
    if kind == "csa":
        tk = topk_idxs.to(torch.int64)
        parts.append(torch.where(tk >= 0, tk + W + S, torch.full_like(tk, -1)).to(torch.int32))
    elif kind == "hca":
        c = torch.arange(cmp_capacity, dtype=torch.int32, device=positions.device) + (W + S)
        parts.append(c[None, :].expand(B * S, -1))
    return torch.cat(parts, 1)


class KVSource(NamedTuple):
    kv: torch.Tensor  # [N, D] bf16: ring pages ‖ step kv ‖ compressed pages (flattened rows)
    ring_rows: int
    overlay_rows: int


def kv_source(kv_cache: torch.Tensor, kv: torch.Tensor, compressed_kv: torch.Tensor | None) -> KVSource:
    """The one KV source the kernel gathers from (a host-side concatenation, see the
    packages' READMEs): ring pages [P, W, D] ‖ the step's fresh kv [T, D] ‖ compressed
    pages [P2, blk, D]."""
    D = kv.shape[-1]
    parts = [kv_cache.reshape(-1, D), kv]
    if compressed_kv is not None:
        parts.append(compressed_kv.reshape(-1, D))
    return KVSource(torch.cat(parts, 0).contiguous(), kv_cache.shape[0] * kv_cache.shape[1], kv.shape[0])


def resolve_rows(indices: torch.Tensor, positions: torch.Tensor, *, window: int, ring_pages: torch.Tensor,
                 num_ring_pages: int, compress_ratio: int = 0, cmp_block_table: torch.Tensor | None = None,
                 cmp_block_size: int = 0, num_cmp_pages: int = 0, lens: torch.Tensor | None = None,
                 name: str = "indices") -> torch.Tensor:
    """Logical index rows [B·S, K] → physical row ids [B·S, K] of `kv_source(...)` (−1 none).

    Refused (ValueError, nothing computed): values < −1; a compressed entry past the block
    table's capacity; a block-table entry or ring page outside its cache; compressed
    entries in an SWA layer. Masked to −1 (the official semantics): an overlay index of a
    later token of the step (s' > s, not yet causal), a compressed entry the token may not
    see yet (`visible_entries`), columns ≥ lens[t] (prefill lengths)."""
    p = check_positions_grid(positions)
    B, S = p.shape
    W = window
    idx = indices.to("cpu", torch.int64)
    if idx.dim() != 2 or idx.shape[0] != B * S:
        raise ValueError(f"{name} must be [B·S={B * S}, K], got shape {list(indices.shape)}")
    if idx.numel() and int(idx.min()) < -1:
        raise ValueError(f"{name} values must be >= -1 (-1 = none), got {int(idx.min())}")
    rp = ring_pages.to("cpu", torch.int64).reshape(-1)
    if rp.numel() != B:
        raise ValueError(f"window block table must have one page per request ({B}), got {rp.numel()}")
    if rp.numel() and (int(rp.min()) < 0 or int(rp.max()) >= num_ring_pages):
        raise ValueError(f"window block table entries must be in [0, {num_ring_pages}), got "
                         f"{int(rp[(rp < 0) | (rp >= num_ring_pages)][0])}")
    t_req = torch.arange(B).repeat_interleave(S)  # request of each token
    t_s = torch.arange(S).repeat(B)  # step slot of each token
    pos = p.reshape(-1)
    out = torch.full_like(idx, -1)
    ring = (idx >= 0) & (idx < W)
    out = torch.where(ring, rp[t_req][:, None] * W + idx, out)
    ov = (idx >= W) & (idx < W + S)
    s_prime = idx - W
    ov_ok = ov & (s_prime <= t_s[:, None])
    ring_rows = num_ring_pages * W
    out = torch.where(ov_ok, ring_rows + t_req[:, None] * S + s_prime, out)
    cm = idx >= W + S
    if bool(cm.any()):
        if compress_ratio == 0 or cmp_block_table is None:
            raise ValueError(f"{name}: compressed entries (values >= W+S = {W + S}) in a layer without "
                             "a compressed cache")
        c = idx - W - S
        bt = cmp_block_table.to("cpu", torch.int64)
        if bt.dim() == 1:  # one request (prefill)
            bt = bt.reshape(1, -1).expand(B, -1)
        cap = bt.shape[1] * cmp_block_size
        if int(c[cm].max()) >= cap:
            raise ValueError(f"{name}: compressed entry {int(c[cm].max())} is past the compressed block "
                             f"table's capacity ({bt.shape[1]} blocks × {cmp_block_size})")
        cm_ok = cm & (c < visible_entries(pos, compress_ratio)[:, None])
        blk = torch.where(cm_ok, c // cmp_block_size, torch.zeros_like(c))
        page = bt[t_req].gather(1, blk)
        bad = cm_ok & ((page < 0) | (page >= num_cmp_pages))
        if bool(bad.any()):
            raise ValueError(f"{name}: compressed block table entry {int(page[bad][0])} is outside the "
                             f"compressed cache ([0, {num_cmp_pages}))")
        out = torch.where(cm_ok, ring_rows + B * S + page * cmp_block_size + c % cmp_block_size, out)
    if lens is not None:
        ln = lens.to("cpu", torch.int64).reshape(-1)
        out = torch.where(torch.arange(idx.shape[1])[None, :] < ln[:, None], out, torch.full_like(out, -1))
    return out.to(torch.int32)


def prepare(indices: torch.Tensor, positions: torch.Tensor, *, window: int, kv: torch.Tensor, kv_cache: torch.Tensor,
            block_table: torch.Tensor, compress_ratio: int = 0, cmp_kv: torch.Tensor | None = None,
            cmp_block_table: torch.Tensor | None = None, lens: torch.Tensor | None = None,
            name: str = "indices") -> tuple[torch.Tensor, torch.Tensor]:
    """Logical index rows → (kv source [N, D], physical rows [T, K]) for the kernel."""
    rows = resolve_rows(indices, positions, window=window, ring_pages=block_table, num_ring_pages=kv_cache.shape[0],
                        compress_ratio=compress_ratio, cmp_block_table=cmp_block_table,
                        cmp_block_size=cmp_kv.shape[1] if cmp_kv is not None else 0,
                        num_cmp_pages=cmp_kv.shape[0] if cmp_kv is not None else 0, lens=lens, name=name)
    src = kv_source(kv_cache, kv, cmp_kv).kv
    return src, rows.to(kv.device)


def check_window_write(kv_cache: torch.Tensor, ring_pages: torch.Tensor, positions: torch.Tensor,
                       kv: torch.Tensor) -> torch.Tensor:
    """Everything the ring write-back needs before it writes a byte; returns the ring pages
    [B] (int64, CPU). Refused: a cache that is not [P, W, D]; positions that are not an
    integer [B, S] grid of consecutive positions ≥ 0; a page that is −1 or outside the cache;
    two requests on one page; kv that is not [B·S, D] in the cache's dtype and device."""
    if not isinstance(kv_cache, torch.Tensor) or kv_cache.dim() != 3:
        raise ValueError(f"kv_cache must be a 3-D [pages, window, head_dim] tensor, got "
                         f"{getattr(kv_cache, 'shape', type(kv_cache).__name__)}")
    for name, t in (("positions", positions), ("block_table", ring_pages)):
        if not isinstance(t, torch.Tensor) or t.dtype not in (torch.int32, torch.int64):
            raise TypeError(f"{name} must be an int32 / int64 tensor, got "
                            f"{getattr(t, 'dtype', type(t).__name__)}")
    p = check_positions_grid(positions)
    B, S = p.shape
    P, _, D = kv_cache.shape
    if ring_pages.numel() != B:
        raise ValueError(f"block_table must hold one ring page per request ({B}), got shape "
                         f"{list(ring_pages.shape)}")
    pages = ring_pages.to("cpu", torch.int64).reshape(-1)
    if bool(((pages < 0) | (pages >= P)).any()):
        bad = int(pages[(pages < 0) | (pages >= P)][0])
        raise ValueError(f"block_table values must be ring pages in [0, {P}), got {bad}")
    if pages.unique().numel() != B:
        raise ValueError(f"block_table: two requests share a ring page ({pages.tolist()}); each request needs "
                         "its own")
    if not isinstance(kv, torch.Tensor) or tuple(kv.shape) != (B * S, D):
        raise ValueError(f"kv must have shape [{B * S}, {D}] (one row per token of positions), got "
                         f"{list(getattr(kv, 'shape', []))}")
    if kv.dtype != kv_cache.dtype or kv.device != kv_cache.device:
        raise ValueError(f"kv must match kv_cache's dtype and device ({kv_cache.dtype}, {kv_cache.device}), "
                         f"got {kv.dtype} on {kv.device}")
    return pages


def write_window_cache(kv_cache: torch.Tensor, ring_pages: torch.Tensor, positions: torch.Tensor,
                       kv: torch.Tensor) -> None:
    """The ring write-back after attention: kv_cache[page_b, pos % W] = kv[b·S + s] (in place;
    for a prefill chunk longer than W only the last W positions land). Every argument is
    checked (`check_window_write`) before anything is written."""
    pages = check_window_write(kv_cache, ring_pages, positions, kv)
    p = positions.to("cpu", torch.int64)
    B, S = p.shape
    W = kv_cache.shape[1]
    for b in range(B):
        keep = range(max(0, S - W), S)
        sl = torch.tensor(list(keep))
        kv_cache[pages[b], (p[b, sl] % W).to(kv_cache.device)] = kv[b * S + sl.to(kv.device)]
