"""The pypto sparse-attention kernel the four sparse-attention packages run, and its blocks:
gather (`index_select`) of physical KV rows, tiled online softmax with sink
(`sink_softmax_tile`), inverse RoPE (dsv4-rope-tables' `rope_rotate`), grouped output
projection (`grouped_oproj`). `build_sparse_attn_kernel(cfg, default_tiling(cfg, T, K))`
builds it per config and index-row width; `run_sparse_attn` pads, builds and launches it.
The README's *The kernel* section explains the loop structure and where the time goes.

No `from __future__ import annotations`: pypto reads kernel annotations as objects.
"""

import dataclasses

import pypto
import torch

from dsv4_core import backends
from dsv4_core.blocks import to_bf16
from dsv4_core.chip import UB_BYTES
from dsv4_core.tiling import balanced_n_tile
from dsv4_rope_tables.pypto_block import rope_rotate, swap_index


@dataclasses.dataclass(frozen=True)
class AttnTiling:
    tt: int = 8  # query tokens per attention tile
    to: int = 8  # query tokens per output-projection tile, a multiple of tt (the host pads T to it)
    kt: int = 128  # KV rows per online-softmax tile
    nk: int = 1  # online-softmax tiles per index row, unrolled in the kernel (the host pads K to nk·kt, −1)
    hv_s: int = 16  # heads per vector tile of [tt, H, kt] fp32 score tiles
    hv_o: int = 8  # heads per vector tile of [tt, H, D] fp32 accumulator tiles (the finalize: see default_tiling)
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


def finalize_heads(head_dim: int) -> int:
    """Heads per vector tile of the finalize (acc / l, bf16, inverse RoPE): about three fp32
    [heads, head_dim] operands live in a vector core's unified buffer at once — 32 heads at
    head_dim 512 (64 overflow it)."""
    return max(1, UB_BYTES // (3 * 4 * head_dim))


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
    return AttnTiling(tt=tt, to=to, kt=kt, nk=max(1, -(-rows_per_token // kt)), hv_s=min(h, 16),
                      hv_o=min(h, finalize_heads(cfg.head_dim)),
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


def build_sparse_attn_kernel(cfg, tiling: AttnTiling | None = None, run_mode=None, *, inverse_rope: bool = True):
    """The sparse-attention kernel for `cfg` (every size from the config):

        kernel(q [T, H, D] bf16, kv [N, D] bf16, rows [T, K] i32, sink [1, H, 1] f32,
               cos [T, D] f32, sin [T, D] f32, swap [D] i32, wo_a [G, O, hpg·D] bf16,
               wo_b [hidden, G·O] bf16, out [T, hidden] bf16)

    cos / sin / swap are the canonical RoPE rows and pair swap widened to the head
    (`run_sparse_attn`, `widen_swap`): cos 1, sin 0 and the identity on the D − R nope lanes.
    T and N are dynamic, T a multiple of `tiling.to`; K = `tiling.nk · tiling.kt` (`pad_rows`):
    the kernel is built per index-row width. `run_mode` is a pypto run mode
    (`dsv4_core.backends.run_mode`), None builds for the simulator."""
    tl = tiling or default_tiling(cfg)
    H, D, G = cfg.num_heads, cfg.head_dim, cfg.o_groups
    OR, GIN, DH = cfg.o_lora_rank, cfg.group_in_dim, cfg.hidden_size
    TT, KT, TO, NK = tl.tt, tl.kt, tl.to, tl.nk
    SCALE = float(cfg.softmax_scale)
    F32, BF16, I32 = pypto.DT_FP32, pypto.DT_BF16, pypto.DT_INT32
    DYN = pypto.DYNAMIC
    Tn = pypto.Tensor

    @pypto.frontend.jit(runtime_options=backends.jit_options(run_mode))
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
                    o = to_bf16(rope_rotate(pypto.cast(o, F32), c3, s3, swap, inverse=True))
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
                    values: bool = True) -> torch.Tensor:
    """Pad, build and launch the pypto kernel on a resolved kernel backend ('sim' or 'npu');
    returns out [T, hidden] bf16. On 'sim', `dsv4_core.sim.last_run()` holds the cost-model
    figure; values=False runs the cost model alone (out stays zero)."""
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
    swap_full = widen_swap(swap_index(R), D)
    out = torch.zeros(Tp, cfg.hidden_size, dtype=torch.bfloat16, device=dev)
    args = [qp, src.contiguous(), rp.to(dev), sink.float().reshape(1, H, 1).contiguous(), cp, spd,
            swap_full.to(dev), wo_a.contiguous(), wo_b.contiguous(), out]
    kernel = build_sparse_attn_kernel(cfg, tl, backends.run_mode(backend), inverse_rope=inverse_rope)
    backends.launch(kernel, args, backend=backend, name=name, values=values)
    return out[:T]
