"""What one sparse-attention call moves and computes, for the ceiling of `nox -s bench`."""

from __future__ import annotations


def traffic(cfg, tokens: int, rows_per_token: int) -> tuple:
    """(bytes, FLOPs) of one call: gathered KV rows (each distinct row a token reads, once),
    q, both projection weights once, the output, the row ids."""
    H, D, G, OR, DH = cfg.num_heads, cfg.head_dim, cfg.o_groups, cfg.o_lora_rank, cfg.hidden_size
    nbytes = 2 * tokens * rows_per_token * D + 2 * tokens * H * D + 2 * (G * OR * cfg.group_in_dim + DH * G * OR) \
        + 2 * tokens * DH + 4 * tokens * rows_per_token
    flops = 4 * tokens * H * rows_per_token * D + 2 * tokens * G * OR * cfg.group_in_dim + 2 * tokens * G * OR * DH
    return float(nbytes), float(flops)


def gathered_bytes(cfg, tokens: int, rows_per_token: int, *, compressed: bool = True, group: int = 1,
                   step_tokens: int = 0, per_token_compressed: bool = False, paged: bool = False) -> float:
    """Bytes the kernel gathers with `index_select` in one call (pypto's cost model prices
    them 3.2–6.4× below a copy of the same bytes: a bench can charge them at the copy rate):
    per token — per run of `group` tokens that share their rows (`share_group`), whose row
    is `rows_per_token` wide — each column of its padded row tiles once (the window columns
    from the ring, the others from the compressed cache), and the window columns that may
    read the step from the step's kv too (`step_columns(W − 1 + group, step_tokens,
    group)`; every window column for step_tokens 0 or a tiling without `step_split`), D
    bf16 lanes each; the selected copy of every gathered row (the select) is not counted.
    per_token_compressed (CSA runs): a run gathers its `window_span` columns once and each
    token its own compressed columns (the rest of the padded row). paged (`paged_window_rows`):
    the window columns are read in place, not gathered — only the compressed ones count."""
    from .kernel import default_tiling, kv_tile, window_layout

    kt = kv_tile(rows_per_token, paged)
    padded = max(kt, -(-rows_per_token // kt) * kt)
    own = per_token_compressed and group > 1
    # the kernel's layout: ws columns before the compressed ones, the last sc may read the step
    ws, sc = window_layout(cfg.window, group, step_tokens,
                           default_tiling(cfg, tokens, rows_per_token, paged).step_split, own, paged)
    w = min(ws, padded) if compressed else padded
    # the step-reading segment: the window's last sc columns; without a compressed cache it
    # also takes the row's padding columns (`tile_segments`)
    tail = min(sc, w) if compressed else padded - (ws - sc)
    runs = -(-tokens // group)
    if paged:
        return float(2 * (runs if not own else tokens) * (padded - w) * cfg.head_dim) if compressed else 0.0
    if own:
        return float(2 * (runs * (w + tail) + tokens * (padded - w)) * cfg.head_dim)
    return float(2 * runs * (padded + tail) * cfg.head_dim)


def distinct_traffic(cfg, positions, *, compress_ratio: int, topk_idxs=None, rows_per_token: int) -> tuple:
    """(bytes, FLOPs) of one decode call's ceiling with each distinct row a request reads
    counted once: its window rows (the S tokens share them: min(p_last + 1, W + S − 1) per
    request), its compressed entries (CSA: the union of its tokens' picks after the causal
    cut; HCA: every entry its last token sees), q, both projection weights once, the output
    and the index rows; FLOPs of q·kᵀ and P·V over each token's own valid rows plus the
    output projection. positions [B, S] on the host; topk_idxs [B·S, k] for CSA."""
    import torch

    from .indexing import visible_entries

    p = positions.to(torch.int64)
    B, S = p.shape
    T = B * S
    H, D, G, OR, DH, W = cfg.num_heads, cfg.head_dim, cfg.o_groups, cfg.o_lora_rank, cfg.hidden_size, cfg.window
    last = p[:, -1]
    rows = torch.clamp(last + 1, max=W + S - 1)  # distinct window rows per request
    per_token = torch.clamp(p.reshape(-1) + 1, max=W)  # valid window rows per token
    if compress_ratio == 4:
        vis = visible_entries(p.reshape(-1), compress_ratio)[:, None]
        tk = topk_idxs.to(torch.int64)
        ok = (tk >= 0) & (tk < vis)
        per_token = per_token + ok.sum(1)
        for b in range(B):
            sel = tk[b * S:(b + 1) * S][ok[b * S:(b + 1) * S]]
            rows[b] += int(sel.unique().numel())
    elif compress_ratio:
        rows = rows + visible_entries(last, compress_ratio)
        per_token = per_token + visible_entries(p.reshape(-1), compress_ratio)
    weights = 2 * (G * OR * cfg.group_in_dim + DH * G * OR)
    nbytes = 2 * D * int(rows.sum()) + 2 * T * H * D + weights + 2 * T * DH + 4 * T * rows_per_token
    flops = 4 * H * D * int(per_token.sum()) + 2 * T * G * OR * cfg.group_in_dim + 2 * T * G * OR * DH
    return float(nbytes), float(flops)
