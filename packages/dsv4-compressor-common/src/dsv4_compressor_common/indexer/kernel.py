"""The lightning indexer's pypto kernels, built per config (every size from it).

    index_query(qr [T, QL] bf16, wq_b [H·D, QL] bf16, x [T, hidden] bf16, wp [H, hidden] bf16,
                cos [T, R] f32, sin [T, R] f32, swap [R] i32, had_nope [D−R, D] bf16,
                had_rope [R, D] bf16, q_out [T·H, D] bf16, w_out [T, H] f32)
        reference.py steps 1–4; the Hadamard is one ±1 matmul split over the nope and the rope
        lanes (so the rotated rope lanes never leave the core), scale applied in fp32.

    index_score(q [NG·G·H, D] bf16, wbd [NG·max(16, G), G·H] bf16 (block-diagonal head weights:
                row s of group g holds w[g·G + s] in columns s·H … s·H + H − 1, zeros elsewhere),
                keys [P·bs, D] bf16 (the index-key cache viewed flat, in place), table [NG, M]
                i32, page_base [NG, M] f32, visible [NG·G, 1] f32, lane [1, bs] f32,
                scores [NG·G, ≥ M·bs] f32 (out))
        step 5 for NG groups of G tokens that share one block-table row (decode: a request's S
        tokens; prefill: G consecutive tokens of the chunk) as cube work: per iteration
        `score_pages` pages, q·kᵀ → bf16 (5a), ReLU, then wbd · ReLU on the cube with fp32
        accumulation (5b). Page j of group g is read in place
        at row table[g, j]·bs; column c = j·bs + r is kept where c < visible[t] and the page is
        real (page_base = j·bs, +3e38 for a −1 / out-of-range page, whose table entry the host
        clamps to a real page) — a select, so a NaN in an unreferenced row never gets out.

    index_select(scores [T, L] f32, picks [T, K] i32 (out))
        step 6: pypto.topk per token row; −inf (masked) picks become −1.

T, NG and P are dynamic (`pypto.DYNAMIC`); the host pads T to the token tile (the padded
rows are never read back). No `from __future__ import annotations`: pypto reads the
annotations as objects.
"""

import dataclasses

import pypto

from dsv4_core.backends import jit_options
from dsv4_core.blocks import to_bf16
from dsv4_core.chip import VEC_OPERAND_ELEMS
from dsv4_rope_tables.pypto_block import rope_rotate

F32, BF16, I32 = pypto.DT_FP32, pypto.DT_BF16, pypto.DT_INT32
MASKED = float("-inf")
PICK_FLOOR = -1.0e38  # a value above it is a real candidate's score


@dataclasses.dataclass(frozen=True)
class QueryTiling:
    tt: int = 16  # tokens per iteration
    cube: tuple = ((16, 16), (128, 512), (128, 128))


def build_query_kernel(cfg, run_mode=None, tiling: QueryTiling = None):
    tl = tiling or QueryTiling()
    H, D, R = cfg.index_num_heads, cfg.index_head_dim, cfg.rope_dim
    QL, DM, NOPE, TT = cfg.q_lora_rank, cfg.hidden_size, D - R, tl.tt
    scale = D ** -0.5
    from .reference import weights_scale

    wscale = weights_scale(cfg)
    hv = max(1, min(H, VEC_OPERAND_ELEMS // (TT * D)))
    DYN, S = pypto.DYNAMIC, pypto.STATIC
    T = pypto.Tensor
    m0 = min(tl.cube[0][0], TT)
    cube = ([m0, m0], list(tl.cube[1]), list(tl.cube[2]))

    @pypto.frontend.jit(runtime_options=jit_options(run_mode))
    def index_query(qr: T([DYN, QL], BF16), wq_b: T([H * D, QL], BF16), x: T([DYN, DM], BF16),
                    wp: T([H, DM], BF16), cos: T([DYN, R], F32), sin: T([DYN, R], F32), swap: T([S], I32),
                    had_nope: T([NOPE, D], BF16), had_rope: T([R, D], BF16),
                    q_out: T([DYN, D], BF16), w_out: T([DYN, H], F32)):
        n = qr.shape[0]
        for i in pypto.loop(n // TT, name="token_tiles", idx_name="i"):
            off = i * TT
            qrt = pypto.view(qr, [TT, QL], [off, 0])
            xt = pypto.view(x, [TT, DM], [off, 0])
            pypto.set_cube_tile_shapes(*cube)
            qf = pypto.matmul(qrt, wq_b, F32, b_trans=True)  # [TT, H·D]
            wf = pypto.matmul(xt, wp, F32, b_trans=True)  # [TT, H]
            pypto.set_vec_tile_shapes(TT, min(H * D, VEC_OPERAND_ELEMS // TT))
            qb = to_bf16(qf)  # (1)
            pypto.set_vec_tile_shapes(1, hv, D)
            q3 = pypto.reshape(qb, [TT, H, D])
            qn = pypto.view(q3, [TT, H, NOPE], [0, 0, 0])
            qp = pypto.view(q3, [TT, H, R], [0, 0, NOPE])
            pypto.set_vec_tile_shapes(TT, R)
            ct = pypto.reshape(pypto.view(cos, [TT, R], [off, 0]), [TT, 1, R])
            st = pypto.reshape(pypto.view(sin, [TT, R], [off, 0]), [TT, 1, R])
            pypto.set_vec_tile_shapes(1, hv, R)
            rot = to_bf16(rope_rotate(pypto.cast(qp, F32), ct, st, swap))  # (2)
            pypto.set_vec_tile_shapes(TT, hv, NOPE)
            qn2 = pypto.reshape(qn, [TT * H, NOPE])
            pypto.set_vec_tile_shapes(TT, hv, R)
            rot2 = pypto.reshape(rot, [TT * H, R])
            pypto.set_cube_tile_shapes([128, 128], [64, 64], [128, 128])
            hq = pypto.add(pypto.matmul(qn2, had_nope, F32), pypto.matmul(rot2, had_rope, F32))
            pypto.set_vec_tile_shapes(max(1, min(TT * H, VEC_OPERAND_ELEMS // D)), D)
            qh = to_bf16(pypto.mul(hq, scale))  # (3)
            pypto.set_vec_tile_shapes(TT, H)
            w = pypto.cast(to_bf16(pypto.mul(pypto.cast(to_bf16(wf), F32), wscale)), F32)  # (4)
            # outputs last
            pypto.set_vec_tile_shapes(max(1, min(TT * H, VEC_OPERAND_ELEMS // D)), D)
            pypto.assemble(qh, [off * H, 0], q_out)
            pypto.set_vec_tile_shapes(TT, H)
            pypto.assemble(w, [off, 0], w_out)

    return index_query


def score_pages(block_size: int) -> int:
    """Pages per iteration of the score kernel: about 512 keys (the host pads the table to it)."""
    return max(1, 512 // block_size)


def _score_chunk(qg, wg, vg, keys, table, page_base, lane, scores, g, j, geo):
    """PP pages of group g from page j·PP: per page q·kᵀ on the cube (bf16 out, 5a), ReLU over
    the chunk, wbd · ReLU on the cube (fp32, 5b), then per page the causal cut / page validity
    as a select into the scores. geo = (G, D, BS, PP, mt, nt, rrows, mrows)."""
    G, D, BS, PP, mt, nt, rrows, mrows = geo
    pypto.set_cube_tile_shapes([mt, mt], [D, D], [nt, nt])
    pypto.set_vec_tile_shapes(rrows, BS)
    parts = []
    for p in range(PP):
        kb = pypto.view(keys, [BS, D], [table[g, j * PP + p] * BS, 0])
        parts.append(pypto.matmul(qg, kb, BF16, b_trans=True))  # [G·H, BS] bf16
    pypto.set_vec_tile_shapes(rrows, PP * BS)
    r = pypto.relu(pypto.concat(parts, -1) if PP > 1 else parts[0])  # [G·H, PP·BS]
    pypto.set_cube_tile_shapes([16, 16], [mt, mt], [128, 128])
    sc = pypto.matmul(wg, r, F32)  # [GP, PP·BS]
    for p in range(PP):
        pypto.set_vec_tile_shapes(mrows, BS)
        scp = pypto.view(sc, [G, BS], [0, p * BS])
        col = pypto.add(lane, pypto.view(page_base, [1, 1], [g, j * PP + p]))  # [1, BS] entry ids
        keep = pypto.lt(col, vg)  # [G, BS]
        pypto.assemble(pypto.where(keep, scp, MASKED), [g * G, (j * PP + p) * BS], scores)


def build_score_kernel(cfg, group: int, pages: int, block_size: int, width: int, run_mode=None):
    """Scores of `group` tokens per table row over `pages` pages (a multiple of
    `score_pages(block_size)`) of `block_size` entries, into rows `width` ≥ pages·block_size
    wide. Per iteration PP pages: q·kᵀ per page on the cube (bf16 out), ReLU on the vector
    cores over all PP pages at once, the head weighting and head sum as a second cube matmul
    with the block-diagonal weights, the causal cut and page validity as a select."""
    H, D, G, M, BS, LW = cfg.index_num_heads, cfg.index_head_dim, group, pages, block_size, width
    GH, PP = G * H, score_pages(block_size)
    GP = max(16, G)  # rows of the block-diagonal weights (padded with zero rows)
    CW = PP * BS
    DYN = pypto.DYNAMIC
    T = pypto.Tensor
    mt = min(128, max(16, GH))
    nt = min(128, max(16, BS))
    rrows = max(1, min(GH, VEC_OPERAND_ELEMS // CW))
    mrows = max(1, min(G, VEC_OPERAND_ELEMS // BS))
    geo = (G, D, BS, PP, mt, nt, rrows, mrows)

    @pypto.frontend.jit(runtime_options=jit_options(run_mode))
    def index_score(q: T([DYN, D], BF16), wbd: T([DYN, GH], BF16), keys: T([DYN, D], BF16), table: T([DYN, M], I32),
                    page_base: T([DYN, M], F32), visible: T([DYN, 1], F32), lane: T([1, BS], F32),
                    scores: T([DYN, LW], F32)):
        ng = table.shape[0]
        pypto.set_vec_tile_shapes(G, BS)
        for g in pypto.loop(ng, name="groups", idx_name="g"):
            qg = pypto.view(q, [GH, D], [g * GH, 0])
            wg = pypto.view(wbd, [GP, GH], [g * GP, 0])
            vg = pypto.view(visible, [G, 1], [g * G, 0])
            for j in pypto.loop(M // PP, name="page_chunks", idx_name="j"):
                _score_chunk(qg, wg, vg, keys, table, page_base, lane, scores, g, j, geo)

    return index_score


def build_select_kernel(width: int, topk: int, run_mode=None):
    """Top-`topk` of each row of scores [T, width] (width ≥ topk)."""
    L, K = width, topk
    DYN = pypto.DYNAMIC
    T = pypto.Tensor
    sort_tile = min(L, 8192)

    @pypto.frontend.jit(runtime_options=jit_options(run_mode))
    def index_select(scores: T([DYN, L], F32), picks: T([DYN, K], I32)):
        n = scores.shape[0]
        pypto.set_vec_tile_shapes(1, sort_tile)
        for t in pypto.loop(n, name="tokens", idx_name="t"):
            row = pypto.view(scores, [1, L], [t, 0])
            pypto.set_vec_tile_shapes(1, sort_tile)
            vals, idx = pypto.topk(row, K, -1, True)
            pypto.set_vec_tile_shapes(1, K)
            real = pypto.gt(vals, PICK_FLOOR)
            pypto.assemble(pypto.cast(pypto.where(real, pypto.cast(idx, F32), -1.0), I32), [t, 0], picks)

    return index_select
