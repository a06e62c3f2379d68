"""The sparse-attention core shared by the four sparse-attention packages (CSA / HCA / SWA
decode and prefill): for each query token t and head h, over KV rows selected by index,

    s_i   = (q_h · k_i) · head_dim^-0.5                          (fp32, K = V)
    o_h   = Σ_i exp(s_i − M) v_i / (Σ_i exp(s_i − M) + exp(sink_h − M))
    o     = bf16(o);  o[..., −R:] = bf16(inverse_rope(o[..., −R:]))  at the query's position
    o_r   = bf16(einsum("tgd,grd->tgr", o.view(T, G, hpg·D), wo_a))  (heads in contiguous groups)
    out   = bf16(o_r.flatten(1) @ wo_bᵀ)                                              [T, hidden]

The sink enters only the denominator (a zero-valued extra key); an index of −1 selects
nothing; a row with no valid index gives 0, never NaN.

Three things live here, once:

1. `sparse_attention_reference` (torch golden: fp32 math, online softmax over tiles of
   `tile` rows exactly like the kernel, probabilities rounded to bf16 before P·V, fp32
   accumulation) and `sparse_attention_exact` (fp64, dense, no rounding).
2. The pypto building blocks (`sink_softmax_init`, `sink_softmax_tile`, `grouped_oproj`) and the kernel built
   from them, `build_sparse_attn_kernel(cfg)`: gather
   (`index_select`) of physical KV rows, tiled online softmax with sink, inverse RoPE,
   grouped output projection.
3. The host-side index plumbing every package shares: the window index rows (ring slots /
   overlay), `resolve_rows` (logical index rows + block tables → physical row ids of one
   KV source, refusing out-of-range entries and masking non-causal ones) and
   `kv_source` (the one KV source: ring pages ‖ the step's fresh kv ‖ compressed pages).

Logical index encoding (pypto-lib's, per request with S tokens in the step — S = T for a
prefill chunk): −1 none; `[0, W)` ring slot of the request's window page; `[W, W+S)` the
step's own token `s'` (overlay: its freshly projected kv, the ring is updated after
attention); `≥ W+S` compressed entry `c = idx − W − S` via the compressed block table.

No `from __future__ import annotations`: pypto reads kernel annotations as objects.
"""

import dataclasses
from typing import NamedTuple

import pypto
import torch

from dsv4_core.perf import balanced_n_tile

# ------------------------------------------------------------------------------------------
# torch reference and fp64 exact
# ------------------------------------------------------------------------------------------


def _gather_rows(kv: torch.Tensor, rows: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    return kv[rows.clamp(min=0).long()].to(dtype)  # [t, K, D]


def _attend(q, kv, rows, sink, *, scale: float, tile: int, dtype, rnd, chunk: int = 32):
    """Online softmax with sink over tiles of `tile` rows; returns fp32/fp64 o [T, H, D]."""
    T, H, D = q.shape
    K = rows.shape[1]
    out = torch.zeros(T, H, D, dtype=dtype)
    sk = sink.to(dtype).reshape(1, H, 1)
    for a in range(0, T, chunk):  # bound the gathered [t, K, D] block
        b = min(T, a + chunk)
        qc = q[a:b].to(dtype)
        rc = rows[a:b]
        kr = _gather_rows(kv, rc, dtype)
        s = torch.einsum("thd,tkd->thk", qc, kr) * scale
        s = s.masked_fill((rc < 0)[:, None, :], float("-inf"))
        m = sk.expand(b - a, H, 1).clone()
        ll = torch.ones(b - a, H, 1, dtype=dtype)
        acc = torch.zeros(b - a, H, D, dtype=dtype)
        for j in range(0, K, tile):
            st = s[..., j:j + tile]
            m_new = torch.maximum(m, st.amax(-1, keepdim=True))
            alpha = torch.exp(m - m_new)
            p = torch.exp(st - m_new)
            ll = ll * alpha + p.sum(-1, keepdim=True)
            acc = acc * alpha + torch.einsum("thk,tkd->thd", rnd(p), kr[:, j:j + tile])
            m = m_new
        out[a:b] = acc / ll
    return out


def _rope_fn(rope):
    """The torch rotation `rope(x_rope, cos, sin, inverse=...)`: dsv4-rope-tables' `rotate`
    unless injected (dsv4-rope-tables depends on dsv4-core, not the other way round)."""
    if rope is not None:
        return rope
    from dsv4_rope_tables import rotate

    return rotate


def _inverse_rope(o, cos, sin, rope_dim: int, rotate):
    o = o.clone()
    o[..., -rope_dim:] = rotate(o[..., -rope_dim:], cos[:, None, :], sin[:, None, :], inverse=True)
    return o


def _oproj(o, wo_a, wo_b, dtype, rnd):
    T = o.shape[0]
    G = wo_a.shape[0]
    og = o.reshape(T, G, -1)
    o_r = rnd(torch.einsum("tgd,grd->tgr", og, wo_a.to(dtype)))
    return rnd(o_r.reshape(T, -1) @ wo_b.to(dtype).T)


def sparse_attention_reference(q: torch.Tensor, kv: torch.Tensor, rows: torch.Tensor, sink: torch.Tensor,
                               cos: torch.Tensor, sin: torch.Tensor, wo_a: torch.Tensor, wo_b: torch.Tensor, *,
                               softmax_scale: float, tile: int | None = None, inverse_rope: bool = True,
                               rope=None) -> torch.Tensor:
    """The golden, bf16 out [T, hidden]. q [T, H, D] bf16, kv [N, D] bf16 (one KV source),
    rows [T, K] physical row ids of kv (−1 = none), sink [H] fp32, cos/sin [T, R] canonical
    rows at the query positions, wo_a [G, o_lora, hpg·D] bf16, wo_b [hidden, G·o_lora] bf16.

    Rounding points: (1) P = bf16(exp(s − m_running)) per tile of `tile` rows (default
    `kv_tile(K)`, the kernel's), fp32
    accumulation, fp32 denominator; (2) o = bf16(acc / l); (3) rope lanes
    bf16(inverse_rope(o)) in fp32; (4) o_r = bf16(per-group o·wo_aᵀ), fp32 accumulation;
    (5) out = bf16(o_r · wo_bᵀ). `inverse_rope=False` exists only to prove the tests see it."""
    def rnd(t):
        return t.to(torch.bfloat16).float()

    tile = tile or kv_tile(rows.shape[1])
    o = rnd(_attend(q, kv, rows, sink, scale=softmax_scale, tile=tile, dtype=torch.float32, rnd=rnd))
    if inverse_rope:
        o = rnd(_inverse_rope(o, cos, sin, cos.shape[-1], _rope_fn(rope)))
    return _oproj(o, wo_a, wo_b, torch.float32, rnd).to(torch.bfloat16)


def attention_exact(q, kv, rows, sink, *, softmax_scale: float) -> torch.Tensor:
    """fp64 sparse attention with sink, before RoPE / projection: o [T, H, D] (dense form:
    softmax over [selected scores | sink], the sink's value vector is 0)."""
    qd = q.double()
    kr = _gather_rows(kv, rows, torch.float64)
    s = torch.einsum("thd,tkd->thk", qd, kr) * softmax_scale
    s = s.masked_fill((rows < 0)[:, None, :], float("-inf"))
    T, H = q.shape[:2]
    logits = torch.cat([s, sink.double().reshape(1, H, 1).expand(T, H, 1)], -1)
    p = torch.softmax(logits, -1)[..., :-1]
    return torch.einsum("thk,tkd->thd", p, kr)


def sparse_attention_exact(q, kv, rows, sink, cos, sin, wo_a, wo_b, *, softmax_scale: float,
                           rope=None) -> torch.Tensor:
    """fp64, no intermediate rounding, from the same inputs: the comparator's exact answer."""
    o = attention_exact(q, kv, rows, sink, softmax_scale=softmax_scale)
    o = _inverse_rope(o, cos.double(), sin.double(), cos.shape[-1], _rope_fn(rope))
    return _oproj(o, wo_a, wo_b, torch.float64, lambda t: t)


# ------------------------------------------------------------------------------------------
# host-side index plumbing
# ------------------------------------------------------------------------------------------


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


def window_indices(positions: torch.Tensor, window: int) -> torch.Tensor:
    """Window index rows [B·S, W] int32 for positions [B, S] (a decode step of S tokens per
    request, or a prefill chunk as B=1, S=T).

    Token (b, s) at position p sees positions max(0, p−W+1) … p, oldest first, −1 after
    them when p < W−1. A position of this step (s' ≤ s) is the overlay index W + s'; an
    older one is its ring slot pos % W (the ring holds the W positions before the step)."""
    p = check_positions_grid(positions)
    B, S = p.shape
    W = window
    k = torch.arange(W)
    p0 = p[:, :1]  # first position of the step per request
    wpos = p[:, :, None] - (W - 1) + k  # [B, S, W]
    # shift left so columns 0..min(p, W-1) hold the valid positions
    shift = (W - 1 - p).clamp(min=0)[:, :, None]
    wpos = wpos + shift
    ok = k[None, None, :] <= p[:, :, None]
    in_step = wpos >= p0[:, :, None]
    idx = torch.where(in_step, W + (wpos - p0[:, :, None]), wpos % W)
    idx = torch.where(ok, idx, torch.full_like(idx, -1))
    return idx.reshape(B * S, W).to(torch.int32)


def compressed_indices(entries: torch.Tensor, window: int, step_tokens: int) -> torch.Tensor:
    """Logical index of compressed entries c (−1 kept): W + S + c."""
    e = entries.to(torch.int64)
    return torch.where(e >= 0, e + window + step_tokens, torch.full_like(e, -1)).to(torch.int32)


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
    see yet (c ≥ (pos+1)//compress_ratio), columns ≥ lens[t] (prefill lengths)."""
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
        visible = (pos + 1) // compress_ratio
        cm_ok = cm & (c < visible[:, None])
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


def write_window_cache(kv_cache: torch.Tensor, ring_pages: torch.Tensor, positions: torch.Tensor,
                       kv: torch.Tensor) -> None:
    """The ring write-back after attention: kv_cache[page_b, pos % W] = kv[b·S + s] (in place;
    for a prefill chunk longer than W only the last W positions land)."""
    p = check_positions_grid(positions)
    B, S = p.shape
    W = kv_cache.shape[1]
    pages = ring_pages.to("cpu", torch.int64).reshape(-1)
    for b in range(B):
        keep = range(max(0, S - W), S)
        sl = torch.tensor(list(keep))
        kv_cache[pages[b], (p[b, sl] % W).to(kv_cache.device)] = kv[b * S + sl.to(kv.device)]


# ------------------------------------------------------------------------------------------
# pypto building blocks and the kernel
# ------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class AttnTiling:
    tt: int = 8  # query tokens per attention tile
    to: int = 8  # query tokens per output-projection tile, a multiple of tt (the host pads T to it)
    kt: int = 128  # KV rows per online-softmax tile
    nk: int = 1  # online-softmax tiles per index row, unrolled in the kernel (the host pads K to nk·kt, −1)
    hv_s: int = 16  # heads per vector tile of [tt, H, kt] fp32 score tiles
    hv_o: int = 8  # heads per vector tile of [tt, H, D] fp32 accumulator tiles (the finalize: ≤ 32 fits the UB)
    cube_s: tuple = ((16, 16), (128, 256), (128, 128))  # q·kᵀ
    cube_pv: tuple = ((16, 16), (128, 128), (128, 256))  # p·v
    cube_oa: tuple = ((16, 16), (128, 512), (128, 128))  # per-group o·wo_aᵀ
    cube_ob: tuple = ((16, 16), (128, 512), (128, 128))  # o_r·wo_bᵀ


# rows per online-softmax tile at most: fewer, larger tiles model faster (HCA at 64K has
# 128 + 512 + a few rows: one 768-row tile 388 µs vs two 384-row tiles 490 µs, FLASH T=128)
KV_TILE_MAX = 768


def kv_tile(rows_per_token: int) -> int:
    """Rows per online-softmax tile for index rows of this width: the fewest tiles of at
    most KV_TILE_MAX rows, each rounded up to 128 (K = 1152 → 2 × 640, not 768 + 384). The
    golden tiles the same way (its bf16 probabilities depend on the running max at each
    tile)."""
    k = max(1, rows_per_token)
    n = -(-k // KV_TILE_MAX)  # tiles
    per_tile = -(-k // n)
    return max(128, -(-per_tile // 128) * 128)


def default_tiling(cfg, tokens: int = 1, rows_per_token: int = 128) -> AttnTiling:
    """Tiles for `cfg` and a call of `tokens` query tokens with index rows of
    `rows_per_token` columns (the kernel is built per call): attention over tiles of 8, 16
    or 32 tokens and `kv_tile` rows, the output projection over up to 256 tokens at once."""
    h = cfg.num_heads
    m = max(16, min(h, 64))
    tt = 8 if tokens <= 8 else 16 if tokens <= 16 else 32
    # the projection weights are streamed once per output tile: 256 tokens for long chunks
    # (128 → 256 took FLASH T=1024 from 2406 to 2344 µs; the host pads T to a multiple of
    # `to`, so shorter calls keep 128 and waste less padding)
    to = min((256 if tokens >= 1024 else 128) // tt * tt, -(-tokens // tt) * tt)
    mo = max(16, min(128, to))
    kt = kv_tile(rows_per_token)
    na = balanced_n_tile(cfg.o_lora_rank, cfg.o_groups, m=mo)
    nb = balanced_n_tile(cfg.hidden_size, 1, m=mo)
    return AttnTiling(tt=tt, to=to, kt=kt, nk=max(1, -(-rows_per_token // kt)), hv_s=min(h, 16), hv_o=min(h, 32),
                      # whole-row L1 tiles (k = D for q·kᵀ, k = kt for p·v): fewer, larger copies
                      cube_s=((m, m), (128, cfg.head_dim), (256, 256)), cube_pv=((m, m), (128, kt), (128, 256)),
                      # weight-streaming projections: column tiles that fill whole waves of cube cores
                      cube_oa=((mo, mo), (128, 512), (na, na)), cube_ob=((mo, mo), (128, 512), (nb, nb)))


def pad_rows(rows: torch.Tensor, tt: int, kt: int) -> torch.Tensor:
    """Pad [T, K] physical rows with −1 to multiples of (tt, kt) (at least one kt tile)."""
    T, K = rows.shape
    Tp = -(-T // tt) * tt
    Kp = max(kt, -(-K // kt) * kt)
    out = torch.full((Tp, Kp), -1, dtype=torch.int32)
    out[:T, :K] = rows.to(torch.int32)
    return out


def sink_softmax_tile(qt, kt_rows, ids, state, sink, *, scale: float, tl: AttnTiling, h: int, d: int):
    """One tile of kt gathered rows [tt, kt, D] bf16 (ids [tt, kt] i32, −1 = none) folded into
    the online-softmax state (running max [tt, H, 1], denominator [tt, H, 1], accumulator
    [tt, H, D], fp32), returned as a new state. `state=None` starts from the sink: running
    max = the sink logit, denominator = exp(sink − m) (the sink as a zero-valued key), no
    accumulator pass. Scores in fp32 with a −1e30 bias on masked rows, P rounded to bf16
    before P·V with fp32 accumulation."""
    F32, BF16 = pypto.DT_FP32, pypto.DT_BF16
    tt, kt = tl.tt, tl.kt
    pypto.set_cube_tile_shapes(*[list(t) for t in tl.cube_s])
    s = pypto.matmul(qt, kt_rows, F32, b_trans=True)  # [tt, H, kt]
    pypto.set_vec_tile_shapes(1, kt)
    bias = pypto.mul(pypto.minimum(pypto.cast(ids, F32), 0.0), 1e30)  # 0 / -1e30
    pypto.set_vec_tile_shapes(1, tl.hv_s, kt)
    s = pypto.add(pypto.mul(s, scale), pypto.reshape(bias, [tt, 1, kt]))
    if state is None:
        pypto.set_vec_tile_shapes(1, h, 1)
        m_old = pypto.expand_clone(sink, [tt, h, 1])
        pypto.set_vec_tile_shapes(1, tl.hv_s, kt)
    else:
        m_old, l_old, acc = state
    m_new = pypto.maximum(m_old, pypto.amax(s, -1, keepdim=True))
    alpha = pypto.exp(pypto.sub(m_old, m_new))  # the first tile: exp(sink − m), the sink's share
    p = pypto.exp(pypto.sub(s, m_new))
    l_new = pypto.sum(p, -1, keepdim=True)
    l_new = pypto.add(alpha if state is None else pypto.mul(l_old, alpha), l_new)
    pb = pypto.cast(p, BF16, pypto.CastMode.CAST_RINT)
    pypto.set_cube_tile_shapes(*[list(t) for t in tl.cube_pv])
    pv = pypto.matmul(pb, kt_rows, F32)  # [tt, H, D]
    if state is None:
        return m_new, l_new, pv
    pypto.set_vec_tile_shapes(1, tl.hv_o, d)
    return m_new, l_new, pypto.add(pypto.mul(acc, alpha), pv)


def build_sparse_attn_kernel(cfg, tiling: AttnTiling | None = None, run_mode=None, *, inverse_rope: bool = True,
                             rope_block=None):
    """The sparse-attention kernel for `cfg` (every size from the config):

        kernel(q [T, H, D] bf16, kv [N, D] bf16, rows [T, K] i32, sink [1, H, 1] f32,
               cos [T, D] f32, sin [T, D] f32, swap [D] i32, wo_a [G, O, hpg·D] bf16,
               wo_b [hidden, G·O] bf16, out [T, hidden] bf16)

    cos / sin / swap are the canonical RoPE rows and pair swap widened to the head
    (`run_sparse_attn`, `widen_swap`): cos 1, sin 0 and the identity on the D − R nope lanes.
    T and N are dynamic, T a multiple of `tiling.to`; K = `tiling.nk · tiling.kt` (`pad_rows`):
    the kernel is built per index-row width.
    `rope_block` is dsv4-rope-tables' `pypto_block.rope_rotate` unless injected."""
    from dsv4_core.blocks import to_bf16

    if rope_block is None:
        from dsv4_rope_tables.pypto_block import rope_rotate as rope_block

    tl = tiling or default_tiling(cfg)
    H, D, G = cfg.num_heads, cfg.head_dim, cfg.o_groups
    OR, GIN, DH = cfg.o_lora_rank, cfg.group_in_dim, cfg.hidden_size
    TT, KT, TO, NK = tl.tt, tl.kt, tl.to, tl.nk
    SCALE = float(cfg.softmax_scale)
    F32, BF16, I32 = pypto.DT_FP32, pypto.DT_BF16, pypto.DT_INT32
    DYN = pypto.DYNAMIC
    Tn = pypto.Tensor
    opts = {"run_mode": pypto.RunMode.SIM if run_mode is None else run_mode}

    @pypto.frontend.jit(runtime_options=opts)
    def sparse_attn(q: Tn([DYN, H, D], BF16), kv: Tn([DYN, D], BF16), rows: Tn([DYN, DYN], I32),
                    sink: Tn([1, H, 1], F32), cos: Tn([DYN, D], F32), sin: Tn([DYN, D], F32), swap: Tn([D], I32),
                    wo_a: Tn([G, OR, GIN], BF16), wo_b: Tn([DH, G * OR], BF16), out: Tn([DYN, DH], BF16)):
        n = q.shape[0]
        # straight-line code inside one loop body: pypto runs the code between two loops as
        # one root function and the root functions one after another, so the TO // TT
        # attention tiles and their NK row tiles are unrolled here (a pypto.loop per tile
        # serialised them: 5–8 % of the ceiling), and the scheduler overlaps them
        for i in pypto.loop(n // TO, name="o_tiles", idx_name="i"):
            parts = []  # attention outputs of the TO // TT tiles, RoPE undone, bf16 [TT, H, D]
            for u in range(TO // TT):
                off = i * TO + u * TT
                qt = pypto.view(q, [TT, H, D], [off, 0, 0])
                state = None
                for j in range(NK):
                    ids = pypto.view(rows, [TT, KT], [off, j * KT])
                    pypto.set_vec_tile_shapes(TT, KT)
                    safe = pypto.maximum(ids, 0)
                    pypto.set_vec_tile_shapes(1, 16, D)
                    kt_rows = pypto.index_select(kv, 0, safe)  # [TT, KT, D] gather
                    state = sink_softmax_tile(qt, kt_rows, ids, state, sink, scale=SCALE, tl=tl, h=H, d=D)
                _, l_st, acc = state
                pypto.set_vec_tile_shapes(1, tl.hv_o, D)
                o = to_bf16(pypto.div(acc, l_st))  # [TT, H, D]
                if inverse_rope:
                    # full-width rows (cos 1, sin 0, identity swap on the nope lanes): the
                    # rotation is exact there, and no lane views / concat round-trip memory
                    ct = pypto.view(cos, [TT, D], [off, 0])
                    st = pypto.view(sin, [TT, D], [off, 0])
                    pypto.set_vec_tile_shapes(TT, D)
                    c3 = pypto.reshape(ct, [TT, 1, D])
                    s3 = pypto.reshape(st, [TT, 1, D])
                    pypto.set_vec_tile_shapes(1, tl.hv_o, D)
                    o = to_bf16(rope_block(pypto.cast(o, F32), c3, s3, swap, inverse=True))
                parts.append(o)
            pypto.set_vec_tile_shapes(1, tl.hv_o, D)
            o_buf = pypto.concat(parts, 0) if len(parts) > 1 else parts[0]  # [TO, H, D]
            # grouped output projection once per TO tokens: the weights are read n / TO times
            y = grouped_oproj(o_buf, wo_a, wo_b, tl=tl, tt=TO, g=G, o_rank=OR, gin=GIN)
            pypto.set_vec_tile_shapes(min(TO, 16), min(DH, 1024))
            pypto.assemble(y, [i * TO, 0], out)

    return sparse_attn


def grouped_oproj(o, wo_a, wo_b, *, tl: AttnTiling, tt: int, g: int, o_rank: int, gin: int):
    """o [tt, H, D] bf16 → heads in contiguous groups [G, tt, hpg·D] → one batched matmul with
    wo_a [G, O, hpg·D] (b transposed) → bf16 o_r [tt, G·O] → o_r · wo_bᵀ → bf16 [tt, hidden]."""
    BF16 = pypto.DT_BF16
    OR, GIN = o_rank, gin
    pypto.set_vec_tile_shapes(1, 1, min(GIN, 4096))
    og = pypto.reshape(o, [tt, g, GIN])
    ot = pypto.transpose(og, 0, 1)  # [G, tt, GIN]
    pypto.set_cube_tile_shapes(*[list(t) for t in tl.cube_oa])
    yg = pypto.matmul(ot, wo_a, BF16, b_trans=True)  # [G, tt, O]
    pypto.set_vec_tile_shapes(1, min(tt, 16), min(OR, 1024))
    y = pypto.reshape(pypto.transpose(yg, 0, 1), [tt, g * OR])
    pypto.set_cube_tile_shapes(*[list(t) for t in tl.cube_ob])
    return pypto.matmul(y, wo_b, BF16, b_trans=True)


def widen_swap(swap_idx: torch.Tensor, head_dim: int) -> torch.Tensor:
    """The kernel's pair swap over the whole head: identity on the first D − R (nope) lanes,
    the RoPE block's `swap_index(R)` shifted onto the last R lanes."""
    R = swap_idx.numel()
    nope = head_dim - R
    return torch.cat([torch.arange(nope, dtype=torch.int32), swap_idx.to(torch.int32) + nope])


def run_sparse_attn(cfg, backend: str, q, src: torch.Tensor, rows: torch.Tensor, sink, cos, sin, wo_a, wo_b, *,
                    name: str = "sparse_attn", tiling: AttnTiling | None = None, inverse_rope: bool = True,
                    values: bool = True, rope_block=None, swap_idx: torch.Tensor | None = None) -> torch.Tensor:
    """Pad, run the pypto kernel (backend 'sim' or 'npu') and return out [T, hidden] bf16.
    `swap_idx` is dsv4-rope-tables' `swap_index(R)` unless injected."""
    from dsv4_core import sim
    from dsv4_core.backends import runtime_options

    if swap_idx is None:
        from dsv4_rope_tables.pypto_block import swap_index

        swap_idx = swap_index(cfg.rope_dim)

    T = q.shape[0]
    tl = tiling or default_tiling(cfg, T, rows.shape[1])
    rp = pad_rows(rows, tl.to, tl.kt)
    if rp.shape[1] != tl.nk * tl.kt:
        raise ValueError(f"tiling: nk·kt = {tl.nk}·{tl.kt} must cover the {rows.shape[1]} index columns "
                         f"in whole tiles ({rp.shape[1]} after padding); see default_tiling")
    Tp = rp.shape[0]
    dev = q.device
    H, D, R = cfg.num_heads, cfg.head_dim, cfg.rope_dim
    qp = torch.zeros(Tp, H, D, dtype=torch.bfloat16, device=dev)
    qp[:T] = q
    cp = torch.ones(Tp, D, dtype=torch.float32, device=dev)
    spd = torch.zeros(Tp, D, dtype=torch.float32, device=dev)
    cp[:T, D - R:], spd[:T, D - R:] = cos, sin
    swap_full = widen_swap(swap_idx, D)
    out = torch.zeros(Tp, cfg.hidden_size, dtype=torch.bfloat16, device=dev)
    args = [qp, src.contiguous(), rp.to(dev), sink.float().reshape(1, H, 1).contiguous(), cp, spd,
            swap_full.to(dev), wo_a.contiguous(), wo_b.contiguous(), out]
    kernel = build_sparse_attn_kernel(cfg, tl, run_mode=runtime_options(backend)["run_mode"],
                                      inverse_rope=inverse_rope, rope_block=rope_block)
    if backend == "sim":
        sim.run(kernel, args, name=name, values=values)
    else:  # pragma: no cover - needs an Ascend NPU
        kernel(*args)
    return out[:T]


def traffic(cfg, tokens: int, rows_per_token: int) -> tuple:
    """(bytes, FLOPs) of one call: gathered KV rows, q, weights, output."""
    H, D, G, OR, DH = cfg.num_heads, cfg.head_dim, cfg.o_groups, cfg.o_lora_rank, cfg.hidden_size
    nbytes = 2 * tokens * rows_per_token * D + 2 * tokens * H * D + 2 * (G * OR * cfg.group_in_dim + DH * G * OR) \
        + 2 * tokens * DH + 4 * tokens * rows_per_token
    flops = 4 * tokens * H * rows_per_token * D + 2 * tokens * G * OR * cfg.group_in_dim + 2 * tokens * G * OR * DH
    return float(nbytes), float(flops)


# ------------------------------------------------------------------------------------------
# argument validation shared by the packages' public functions
# ------------------------------------------------------------------------------------------


def validate_attention_args(cfg, q, kv, kv_cache, block_table, attn_sink, wo_a, wo_b, *, tokens: int,
                            requests: int, cmp_kv=None, cmp_block_table=None, cmp_block_table_dims: int = 2) -> None:
    """Shapes / dtypes / devices of the arguments every sparse-attention entry point takes;
    each error names the argument (raised before anything is computed or written)."""
    from dsv4_core.checks import check_same_device, check_tensor
    from dsv4_core.config import AttentionConfig

    if not isinstance(cfg, AttentionConfig):
        raise TypeError(f"config must be a dsv4_core.AttentionConfig, got {type(cfg).__name__}")
    bf16 = torch.bfloat16
    H, D, W = cfg.num_heads, cfg.head_dim, cfg.window
    G, OR, GIN = cfg.o_groups, cfg.o_lora_rank, cfg.group_in_dim
    check_tensor("q", q, shape=(tokens, H, D), dtype=bf16)
    check_tensor("kv", kv, shape=(tokens, D), dtype=bf16)
    check_tensor("kv_cache", kv_cache, shape=(None, W, D), dtype=bf16)
    if kv_cache.shape[0] == 0:
        raise ValueError("kv_cache must hold at least one window page, got shape [0, W, D]")
    check_tensor("block_table", block_table, shape=(requests,), dtype=(torch.int32, torch.int64))
    check_tensor("attn_sink", attn_sink, shape=(H,), dtype=torch.float32)
    check_tensor("wo_a", wo_a, shape=(G, OR, GIN), dtype=bf16)
    check_tensor("wo_b", wo_b, shape=(cfg.hidden_size, G * OR), dtype=bf16)
    tensors = dict(q=q, kv=kv, kv_cache=kv_cache, block_table=block_table, attn_sink=attn_sink, wo_a=wo_a, wo_b=wo_b)
    if cmp_kv is not None:
        check_tensor("cmp_kv", cmp_kv, shape=(None, None, D), dtype=bf16)
        if cmp_kv.shape[0] == 0 or cmp_kv.shape[1] == 0:
            raise ValueError(f"cmp_kv must hold at least one page of entries, got shape {list(cmp_kv.shape)}")
        shape = (requests, None) if cmp_block_table_dims == 2 else (None,)
        check_tensor("cmp_block_table", cmp_block_table, shape=shape, dtype=(torch.int32, torch.int64))
        tensors.update(cmp_kv=cmp_kv, cmp_block_table=cmp_block_table)
    check_same_device(**tensors)


# ------------------------------------------------------------------------------------------
# seeded inputs for the packages' cases (tests, golden, bench)
# ------------------------------------------------------------------------------------------


def make_attention_inputs(cfg, positions: torch.Tensor, *, compress_ratio: int, topk: int = 0, seed: int = 0,
                          cmp_block_size: int = 128, fewer_topk: bool = False, materialize: bool = True,
                          max_cmp_pages: int | None = None) -> dict:
    """Random inputs for positions [B, S]: the step's q / kv, ring pages (shuffled page ids),
    compressed pages holding every entry the requests may see (shuffled block tables), a
    sink, wo_a / wo_b and (CSA) an indexer top-k [B·S, topk] of compressed entry ids (−1
    holes; with fewer_topk, only half the possible picks made). materialize=False gives zero
    tensors of the right shapes (cost-model runs); max_cmp_pages caps the compressed pool
    (block tables then alias pages: cost-model runs at long contexts only)."""
    g = torch.Generator().manual_seed(seed)
    p = check_positions_grid(positions)
    B, S = p.shape
    T = B * S
    H, D, W = cfg.num_heads, cfg.head_dim, cfg.window
    G, OR, GIN, DH = cfg.o_groups, cfg.o_lora_rank, cfg.group_in_dim, cfg.hidden_size

    def rn(*shape, scale=1.0):
        if not materialize:
            return torch.zeros(*shape).bfloat16()
        return (torch.randn(*shape, generator=g) * scale).bfloat16()

    out = {
        "positions": p,
        "q": rn(T, H, D, scale=1.5),
        "kv": rn(T, D),
        "kv_cache": rn(B + 1, W, D),  # one spare page
        "block_table": torch.randperm(B + 1, generator=g)[:B].to(torch.int32),
        "attn_sink": torch.randn(H, generator=g) if materialize else torch.zeros(H),
        "wo_a": rn(G, OR, GIN, scale=GIN ** -0.5),
        "wo_b": rn(DH, G * OR, scale=(G * OR) ** -0.5),
    }
    if compress_ratio:
        n_vis = int(((p[:, -1] + 1) // compress_ratio).max())
        m = max(1, -(-n_vis // cmp_block_size))
        if max_cmp_pages is not None and B * m + 1 > max_cmp_pages:
            out["cmp_kv"] = rn(max_cmp_pages, cmp_block_size, D)
            out["cmp_block_table"] = torch.randint(0, max_cmp_pages, (B, m), generator=g, dtype=torch.int32)
        else:
            out["cmp_kv"] = rn(B * m + 1, cmp_block_size, D)
            out["cmp_block_table"] = torch.randperm(B * m + 1, generator=g)[:B * m].reshape(B, m).to(torch.int32)
    if compress_ratio == 4 and topk:
        vis = ((p.reshape(-1) + 1) // 4)  # entries each token may see
        tk = torch.full((T, topk), -1, dtype=torch.int32)
        for t in range(T):
            n = int(vis[t])
            k = min(topk, n) // (2 if fewer_topk else 1)
            if k:
                pick = torch.randperm(n, generator=g)[:k]
                cols = torch.randperm(topk, generator=g)[:k]  # holes anywhere
                tk[t, cols] = pick.to(torch.int32)
        # the step's later token may pick an entry its earlier sibling must not see: the
        # causal cut masks it there (official semantics)
        out["topk_idxs"] = tk
    return out


# ------------------------------------------------------------------------------------------
# what the packages' public functions share after validation
# ------------------------------------------------------------------------------------------


def prepare(indices: torch.Tensor, positions: torch.Tensor, *, window: int, kv: torch.Tensor, kv_cache: torch.Tensor,
            block_table: torch.Tensor, compress_ratio: int = 0, cmp_kv: torch.Tensor | None = None,
            cmp_block_table: torch.Tensor | None = None, lens: torch.Tensor | None = None,
            name: str = "indices") -> tuple[torch.Tensor, torch.Tensor]:
    """Logical index rows → (kv source [N, D], physical rows [T, K]) for `attend`."""
    rows = resolve_rows(indices, positions, window=window, ring_pages=block_table, num_ring_pages=kv_cache.shape[0],
                        compress_ratio=compress_ratio, cmp_block_table=cmp_block_table,
                        cmp_block_size=cmp_kv.shape[1] if cmp_kv is not None else 0,
                        num_cmp_pages=cmp_kv.shape[0] if cmp_kv is not None else 0, lens=lens, name=name)
    src = kv_source(kv_cache, kv, cmp_kv).kv
    return src, rows.to(kv.device)


def attend(cfg, backend: str, q, src, rows, attn_sink, cos, sin, wo_a, wo_b, *, rope, rope_block, swap_idx,
           name: str = "sparse_attn") -> torch.Tensor:
    """Run the resolved attention on a resolved backend: 'torch' (the golden) or the pypto
    kernel ('sim' / 'npu'). Never falls back from one to the other."""
    dev = q.device
    cos, sin = cos.to(dev), sin.to(dev)
    if backend == "torch":
        return sparse_attention_reference(q, src, rows, attn_sink, cos, sin, wo_a, wo_b,
                                          softmax_scale=cfg.softmax_scale, rope=rope).to(dev)
    return run_sparse_attn(cfg, backend, q, src, rows, attn_sink, cos, sin, wo_a, wo_b, name=name,
                           rope_block=rope_block, swap_idx=swap_idx)


def semantic_attention_exact(cfg, positions: torch.Tensor, q, kv, kv_cache, block_table, attn_sink, cos, sin, wo_a,
                             wo_b, *, compress_ratio: int, cmp_kv=None, cmp_block_table=None, topk_idxs=None,
                             rope=None) -> torch.Tensor:
    """An independent oracle (fp64): for each token, collect the KV vectors the official
    semantics say it sees — window positions max(0, p−W+1)…p (this step's own tokens from
    `kv`, older ones from the ring page at slot pos % W), then every compressed entry
    c < (p+1)//ratio (HCA) or the valid top-k entries with that causal cut (CSA) — and
    evaluate the dense softmax with the sink as an extra zero-valued key. No index rows,
    no block-table arithmetic shared with `resolve_rows`."""
    p = check_positions_grid(positions)
    B, S = p.shape
    W = cfg.window
    H, D = cfg.num_heads, cfg.head_dim
    o = torch.zeros(B * S, H, D, dtype=torch.float64)
    rot = _rope_fn(rope)
    for b in range(B):
        p0 = int(p[b, 0])
        for s in range(S):
            t = b * S + s
            pos = int(p[b, s])
            vecs = []
            for w in range(max(0, pos - W + 1), pos + 1):
                vecs.append(kv[b * S + (w - p0)] if w >= p0 else kv_cache[int(block_table[b]), w % W])
            if compress_ratio:
                blk = cmp_kv.shape[1]
                bt = cmp_block_table[b] if cmp_block_table.dim() == 2 else cmp_block_table
                n = (pos + 1) // compress_ratio
                if compress_ratio == 128:
                    entries = list(range(n))
                else:
                    entries = [int(c) for c in topk_idxs[t].tolist() if 0 <= c < n]
                for c in entries:
                    vecs.append(cmp_kv[int(bt[c // blk]), c % blk])
            qh = q[t].double()  # [H, D]
            if vecs:
                kk = torch.stack(vecs).double()  # [n, D]
                sc = qh @ kk.T * cfg.softmax_scale
            else:
                kk = torch.zeros(0, D, dtype=torch.float64)
                sc = torch.zeros(H, 0, dtype=torch.float64)
            logits = torch.cat([sc, attn_sink.double().reshape(H, 1)], 1)
            pr = torch.softmax(logits, 1)[:, :-1]
            o[t] = pr @ kk
    R = cos.shape[-1]
    o[..., -R:] = rot(o[..., -R:], cos.double()[:, None, :], sin.double()[:, None, :], inverse=True)
    return _oproj(o, wo_a, wo_b, torch.float64, lambda x: x)
