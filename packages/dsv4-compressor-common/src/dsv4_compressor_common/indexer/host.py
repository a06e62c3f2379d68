"""Host side of one indexer call, shared by the decode and the prefill entry points: argument
checks, the O(step) metadata the kernels take (RoPE rows at the tokens' positions, visible
counts, the clamped block-table rows and their page bases — torch ops on the tensors' own
device, nothing read back), and the three kernel launches. The index-key cache is handed
to the score kernel as it is (a flat view, no copy); `validate=True` adds the value checks
that read positions and block tables back."""

from __future__ import annotations

import dataclasses
import math

import torch

from dsv4_core import AttentionConfig
from dsv4_core.backends import on_device
from dsv4_core.checks import check_tensor
from dsv4_rope_tables import frequencies, profile_for_ratio, rope_rows

from ..hadamard import hadamard_halves
from .reference import RATIO

TOKEN_TILE = 16  # every token count is padded to it (the query kernel's smallest token tile, `query_tiling`)
INVALID_PAGE_BASE = 3.0e38  # page_base of a −1 / out-of-range page: no column is below it
# The cost model under-prices index_select (PYPTO_ON_CPU.md: 3.2× the copy ceiling, whatever
# the source): the score kernel's gathered key rows are charged on top of its modelled time,
# read + write at the modelled copy ceiling (the rate the bench's ceiling uses).
COPY_GBPS = 1209.7

_RUNS: list = []


def last_runs() -> list:
    """The simulator runs (`dsv4_core.sim.KernelRun`) of the last kernel call in this process."""
    return list(_RUNS)


def padded(n: int, tile: int = TOKEN_TILE) -> int:
    return -(-n // tile) * tile


def check_config(cfg) -> None:
    if not isinstance(cfg, AttentionConfig):
        raise TypeError(f"config must be a dsv4_core.AttentionConfig, got {type(cfg).__name__}")
    D = cfg.index_head_dim
    if D & (D - 1) or D <= cfg.rope_dim:
        raise ValueError(f"index_head_dim must be a power of two above rope_dim, got {D}")


def check_weights(cfg, wq_b, weights_proj) -> None:
    H, D = cfg.index_num_heads, cfg.index_head_dim
    check_tensor("wq_b", wq_b, shape=(H * D, cfg.q_lora_rank), dtype=torch.bfloat16)
    check_tensor("weights_proj", weights_proj, shape=(H, cfg.hidden_size), dtype=torch.bfloat16)


def check_cache(cfg, cache, table, *, rows: int | None = None) -> None:
    check_tensor("idx_kv_cache", cache, shape=(None, None, cfg.index_head_dim), dtype=torch.bfloat16)
    if cache.shape[1] <= 0 or not cache.is_contiguous():
        raise ValueError(f"idx_kv_cache must be contiguous with a positive block size, got shape {list(cache.shape)}")
    check_tensor("idx_block_table", table, shape=(rows, None), dtype=(torch.int32, torch.int64))


def check_pages(table: torch.Tensor, needed: torch.Tensor, num_pages: int, block_size: int) -> None:
    """validate=True: table [B, M], needed [B] visible entries of each request's last token.
    The table must reach them; the pages they sit on must be real pages or −1 (no page:
    its entries are not candidates) and no page may serve two requests."""
    t = table.detach().to("cpu", torch.int64)
    need = needed.detach().to("cpu", torch.int64)
    B, M = t.shape
    owner: dict[int, int] = {}
    for b in range(B):
        n_pages = -(-int(need[b]) // block_size)
        if n_pages > M:
            raise ValueError(f"idx_block_table has {M} pages per request; request {b} sees {int(need[b])} "
                             f"compressed entries, which need {n_pages} pages of {block_size}")
        row = t[b, :n_pages]
        bad = (row < -1) | (row >= num_pages)
        if bool(bad.any()):
            j = int(torch.nonzero(bad)[0])
            raise ValueError(f"idx_block_table[{b}, {j}] = {int(row[j])} is outside idx_kv_cache "
                             f"(pages 0..{num_pages - 1}, or -1 for none)")
        for p in row.tolist():
            if p < 0:
                continue
            if owner.setdefault(p, b) != b:
                raise ValueError(f"idx_block_table: page {p} is used by requests {owner[p]} and {b} "
                                 "(pages shared between requests)")


def rope_rows_on_device(cfg, positions: torch.Tensor, validate: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """Canonical rows (compress profile) at `positions`, bit-identical to `rope_rows`; with
    validate=False computed on the positions' device without reading them back."""
    profile = profile_for_ratio(cfg, RATIO)
    pos = positions.reshape(-1)
    if validate:
        cos, sin = rope_rows(profile, pos)
        return cos.to(pos.device), sin.to(pos.device)
    freqs = on_device(frequencies(profile), pos.device)  # host constants, uploaded when the positions live elsewhere
    ang = (pos.to(torch.float32)[:, None] * freqs[None, :]).to(torch.float64)
    sign = torch.ones(profile.dim, dtype=torch.float64, device=pos.device)
    sign[0::2] = -1.0
    cos = torch.cos(ang).repeat_interleave(2, dim=-1)
    sin = torch.sin(ang).repeat_interleave(2, dim=-1) * sign
    return cos.to(torch.float32), sin.to(torch.float32)


def table_metadata(table: torch.Tensor, num_pages: int, block_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(table clamped to real pages [R, M] int32, page_base [R, M] f32 = j·bs for a real page,
    INVALID_PAGE_BASE otherwise). Device ops on the table only."""
    t = table.to(torch.int64)
    real = (t >= 0) & (t < num_pages)
    clamped = torch.where(real, t, torch.zeros_like(t)).to(torch.int32)
    base = (torch.arange(t.shape[1], device=t.device, dtype=torch.float32) * block_size)[None, :].expand_as(t)
    base = torch.where(real, base, torch.full_like(base, INVALID_PAGE_BASE))
    return clamped.contiguous(), base.contiguous()


def _pad_rows(t: torch.Tensor, n: int) -> torch.Tensor:
    if t.shape[0] == n:
        return t.contiguous()
    return torch.cat([t, t.new_zeros((n - t.shape[0],) + tuple(t.shape[1:]))], 0)


def gather_charge_us(rows: int, width: int) -> float:
    """µs charged for gathering `rows` bf16 rows of `width` lanes: read + write at COPY_GBPS."""
    return 2.0 * rows * width * 2 / (COPY_GBPS * 1e3)


def launch(kernel, args, backend: str, name: str, values: bool) -> None:
    from dsv4_core.backends import launch as core_launch

    run = core_launch(kernel, args, backend=backend, name=name, values=values)
    if run is not None:
        _RUNS.append(run)


def run_queries(cfg, backend: str, x, qr, wq_b, weights_proj, cos, sin, rows: int, *,
                values: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """The query kernel on tokens padded to `rows` (a multiple of TOKEN_TILE): (q [rows·H, D]
    bf16, w [rows, H] f32)."""
    from dsv4_core.backends import run_mode
    from dsv4_rope_tables.pypto_block import swap_index

    from .kernel import build_query_kernel, query_tiling

    H, D, R = cfg.index_num_heads, cfg.index_head_dim, cfg.rope_dim
    dev = qr.device
    had_nope, had_rope = hadamard_halves(D, R, dev)
    q = torch.empty(rows * H, D, dtype=torch.bfloat16, device=dev)
    w = torch.empty(rows, H, dtype=torch.float32, device=dev)
    args = [_pad_rows(qr, rows), wq_b.contiguous(), _pad_rows(x, rows), weights_proj.contiguous(),
            _pad_rows(cos, rows), _pad_rows(sin, rows), on_device(swap_index(R), dev), had_nope, had_rope, q, w]
    launch(build_query_kernel(cfg, run_mode(backend), query_tiling(rows)), args, backend, "index_query", values)
    return q, w


def block_weights(w: torch.Tensor, group: int) -> torch.Tensor:
    """Head weights w [NG·G, H] f32 (bf16-valued) -> the score kernel's block-diagonal
    [NG·max(16, G), G·H] bf16: row s of group g holds w[g·G + s] at columns s·H … s·H + H − 1."""
    rows, H = w.shape
    NG, G = rows // group, group
    GP = max(16, G)
    out = torch.zeros(NG, GP, G, H, dtype=torch.bfloat16, device=w.device)
    idx = torch.arange(G, device=w.device)
    out[:, idx, idx, :] = w.reshape(NG, G, H).to(torch.bfloat16)
    return out.reshape(NG * GP, G * H)


def run_scores(cfg, backend: str, q2d, w, visible, cache, group_table, group: int, *,
               values: bool = True) -> torch.Tensor:
    """The score kernel: NG = group_table.shape[0] groups of `group` tokens (q rows
    [≥ NG·group·H, D], w [≥ NG·group, H], visible [NG·group] int) -> scores [NG·group, M·bs]
    f32 (the table padded with −1 columns to whole page chunks; the padding is cut off). On
    the simulator `last_runs()` also gets "index_score.gather_charge": the kernel's gathered
    key rows (NG·Mp·bs) priced at the copy ceiling, since the cost model under-prices them."""
    from dsv4_core.backends import run_mode

    from .kernel import build_score_kernel, score_pages

    P, bs, D = cache.shape
    NG, M = group_table.shape
    PP = score_pages(bs, M, group)
    Mp = -(-M // PP) * PP
    if Mp > M:
        group_table = torch.cat([group_table, group_table.new_full((NG, Mp - M), -1)], 1)
    dev = q2d.device
    table, base = table_metadata(group_table, P, bs)
    rows = NG * group
    scores = torch.empty(rows, Mp * bs, dtype=torch.float32, device=dev)
    vis = on_device(visible.reshape(-1, 1), dev).to(torch.float32).contiguous()
    c = torch.arange(PP * bs, dtype=torch.int32, device=dev).reshape(1, PP * bs)
    cpage, clane = (c // bs).contiguous(), (c % bs).contiguous()  # a chunk column's page and row in it
    args = [q2d[:rows * cfg.index_num_heads], block_weights(w[:rows], group), cache.view(P * bs, D), table, base, vis,
            cpage, clane, clane.to(torch.float32), scores]
    n_runs = len(_RUNS)
    launch(build_score_kernel(cfg, group, Mp, bs, Mp * bs, run_mode(backend)), args, backend, "index_score", values)
    if len(_RUNS) > n_runs:  # a simulator run: charge the gathered rows (see COPY_GBPS)
        us = gather_charge_us(NG * Mp * bs, D)
        _RUNS.append(dataclasses.replace(_RUNS[-1], name="index_score.gather_charge", aicore_us=us, total_us=us,
                                         cores=0, tasks=0, verify_dir=None))
    return scores[:, :M * bs]


def run_select(backend: str, scores: torch.Tensor, topk: int, *, values: bool = True) -> torch.Tensor:
    from dsv4_core.backends import run_mode

    from .kernel import build_select_kernel

    T, L = scores.shape
    if L < topk:
        scores = torch.cat([scores, scores.new_full((T, topk - L), float("-inf"))], 1)
    picks = torch.empty(T, topk, dtype=torch.int32, device=scores.device)
    launch(build_select_kernel(scores.shape[1], topk, run_mode(backend)), [scores.contiguous(), picks], backend,
           "index_select", values)
    return picks


def prefill_group(cfg) -> int:
    """Tokens per table-row group in prefill: about 512 query rows (tokens × heads) per matmul."""
    return max(1, min(TOKEN_TILE, 2 ** int(math.log2(max(1, 512 // cfg.index_num_heads)))))


def select_topk(scores: torch.Tensor, *, config: AttentionConfig, backend: str = "auto") -> torch.Tensor:
    """Picks [T, index_topk] int32 from scores [T, L] fp32 (summed over every index head, e.g.
    over tensor-parallel ranks; −inf: not a candidate): the highest min(index_topk,
    candidates) entry ids, descending, −1 after."""
    from dsv4_core import resolve_backend

    from .reference import select_topk_reference

    check_config(config)
    check_tensor("scores", scores, shape=(None, None), dtype=torch.float32)
    be = resolve_backend(backend)
    if be == "torch":
        return select_topk_reference(scores, config.index_topk)
    _RUNS.clear()
    return run_select(be, scores.contiguous(), config.index_topk)
