"""The lightning indexer's pypto kernels, built per config (every size from it).

    index_query(qr [T, QL] bf16, wq_b [H·D, QL] bf16, x [T, hidden] bf16, wp [H, hidden] bf16,
                cos [T, R] f32, sin [T, R] f32, swap [R] i32, had_nope [D−R, D] bf16,
                had_rope [R, D] bf16, q_out [T·H, D] bf16, w_out [T, H] f32)
        reference.py steps 1–4; the Hadamard is one ±1 matmul split over the nope and the rope
        lanes (so the rotated rope lanes never leave the core), scale applied in fp32.

    index_score(q [NG·G·H, D] bf16, wbd [NG·max(16, G), G·H] bf16 (block-diagonal head weights:
                row s of group g holds w[g·G + s] in columns s·H … s·H + H − 1, zeros elsewhere),
                keys [P·bs, D] bf16 (the index-key cache viewed flat, in place), table [NG, M]
                i32, page_base [NG, M] f32, visible [NG·G, 1] f32, cpage / clane [1, CW] i32
                (a chunk column's page in the chunk and row in the page), clanef [1, CW] f32
                (clane as f32), scores [NG·G, ≥ M·bs] f32 (out))
        step 5 for NG groups of G tokens that share one block-table row (decode: a request's S
        tokens; prefill: G consecutive tokens of the chunk) as cube work: per iteration a chunk
        of `score_pages` pages (CW ≤ CHUNK_KEYS keys): the chunk's cache rows table[g, j]·bs + r
        gathered with one index_select (read in place through the table; nothing is copied
        outside the kernel), q·kᵀ → bf16 (5a), ReLU, then wbd · ReLU on the cube with fp32
        accumulation (5b). Column c = j·bs + r is kept where c < visible[t] and its page is
        real (page_base = j·bs, +3e38 for a −1 / out-of-range page, whose table entry the host
        clamps to a real page) — one select per chunk, so a NaN in an unreferenced row never
        gets out.

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


QUERY_TILES = (128, 64, 32, 16)  # token tiles of the query kernel, largest first


def query_tiling(rows: int) -> QueryTiling:
    """The query kernel's tiles for `rows` tokens (a multiple of 16): the largest token tile in
    QUERY_TILES that divides them, with cube tiles as many rows deep. wq_b and wp are streamed
    once per token tile: 16-token tiles streamed them eight times per decode step of 128 tokens
    (FLASH B=64 × S=2: index_query 240.8 → 90.8 µs)."""
    tt = next((t for t in QUERY_TILES if rows % t == 0), None)
    if tt is None:
        raise ValueError(f"rows: {rows} must be a multiple of {QUERY_TILES[-1]}")
    return QueryTiling(tt=tt, cube=((tt, tt), (128, 512), (128, 128)))


def build_query_kernel(cfg, run_mode=None, tiling: QueryTiling = None):
    tl = tiling or QueryTiling()
    H, D, R = cfg.index_num_heads, cfg.index_head_dim, cfg.rope_dim
    QL, DM, NOPE, TT = cfg.q_lora_rank, cfg.hidden_size, D - R, tl.tt
    scale = D ** -0.5
    from .reference import weights_scale

    wscale = weights_scale(cfg)
    hv = max(1, min(H, VEC_OPERAND_ELEMS // D))  # heads per [1, heads, D] tile
    hl = max(1, min(H, VEC_OPERAND_ELEMS // (TT * max(NOPE, R))))  # heads per [TT, heads, lanes] tile
    hr = max(1, min(H, VEC_OPERAND_ELEMS // R))  # heads per [1, heads, R] rope tile
    rows_d = max(1, min(TT * H, VEC_OPERAND_ELEMS // D))  # rows per [rows, D] tile
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
            pypto.set_vec_tile_shapes(1, hr, R)
            rot = to_bf16(rope_rotate(pypto.cast(qp, F32), ct, st, swap))  # (2)
            pypto.set_vec_tile_shapes(TT, hl, NOPE)
            qn2 = pypto.reshape(qn, [TT * H, NOPE])
            pypto.set_vec_tile_shapes(TT, hl, R)
            rot2 = pypto.reshape(rot, [TT * H, R])
            pypto.set_cube_tile_shapes([128, 128], [64, 64], [128, 128])
            hn, hp = pypto.matmul(qn2, had_nope, F32), pypto.matmul(rot2, had_rope, F32)
            pypto.set_vec_tile_shapes(rows_d, D)  # the sum on [rows, D] tiles, not the reshape's
            qh = to_bf16(pypto.mul(pypto.add(hn, hp), scale))  # (3)
            pypto.set_vec_tile_shapes(TT, H)
            w = pypto.cast(to_bf16(pypto.mul(pypto.cast(to_bf16(wf), F32), wscale)), F32)  # (4)
            # outputs last
            pypto.set_vec_tile_shapes(rows_d, D)
            pypto.assemble(qh, [off * H, 0], q_out)
            pypto.set_vec_tile_shapes(TT, H)
            pypto.assemble(w, [off, 0], w_out)

    return index_query


CHUNK_KEYS = 8192  # keys per iteration of the score kernel (at most; fewer for a narrower table)
# tokens × keys per iteration at most: pypto 0.2.0's cost model fails to build a chunk of
# 7168 keys for 8 tokens (a prefill group; `CostModel::ParseInput::BuildFunction`), and
# builds 5120; decode groups (S ≤ 2 tokens) keep whole 8192-key chunks
CHUNK_TOKEN_KEYS = 32768
# (2048 / 4096 / 16384 keys per iteration modelled slower at FLASH decode: more iterations, or
# row tiles split further)


def score_pages(block_size: int, pages: int | None = None, group: int = 1) -> int:
    """Pages per iteration of the score kernel for groups of `group` tokens: at most
    min(CHUNK_KEYS, CHUNK_TOKEN_KEYS / group) keys, the table's `pages` split into that many
    equal chunks, rounded up to whole 1024-key tiles (a power of two for a smaller table); the
    host pads the table to whole chunks."""
    pmax = max(1, min(CHUNK_KEYS, CHUNK_TOKEN_KEYS // max(1, group)) // block_size)
    if pages is None:
        return pmax
    n = -(-int(pages) // pmax)
    pp = -(-int(pages) // n)
    q = min(max(1, 1024 // block_size), 1 << max(0, pp - 1).bit_length())
    return min(pmax, -(-pp // q) * q)


def _score_chunk(qg, wg, vg, keys, table, page_base, cpage, clane, clanef, scores, g, j, geo):
    """CW = PP·BS keys of group g from page j·PP: the chunk's cache rows table[g, p]·BS + r
    gathered with one index_select, q·kᵀ on the cube (bf16 out, 5a), ReLU, wbd · ReLU on the
    cube (fp32, 5b), then the causal cut / page validity as one select into the scores.
    geo = (G, D, BS, PP, CW, mt, nt, n2, rtile, mtile, gtile)."""
    G, D, BS, PP, CW, mt, nt, n2, rtile, mtile, gtile = geo
    pypto.set_vec_tile_shapes(1, min(CW, VEC_OPERAND_ELEMS))
    tb = pypto.view(table, [1, PP], [g, j * PP])
    rows = pypto.add(pypto.mul(pypto.gather(tb, -1, cpage), BS), clane)  # [1, CW] cache rows
    col = pypto.add(pypto.gather(pypto.view(page_base, [1, PP], [g, j * PP]), -1, cpage), clanef)  # entry ids
    pypto.set_vec_tile_shapes(*gtile)
    kc = pypto.index_select(keys, 0, pypto.reshape(rows, [CW]))  # [CW, D]
    pypto.set_cube_tile_shapes([mt, mt], [D, D], [nt, nt])
    s = pypto.matmul(qg, kc, BF16, b_trans=True)  # [G·H, CW] bf16
    pypto.set_vec_tile_shapes(*rtile)
    r = pypto.relu(s)
    pypto.set_cube_tile_shapes([16, 16], [min(32, mt), mt], [n2, n2])
    sc = pypto.matmul(wg, r, F32)  # [GP, CW]
    pypto.set_vec_tile_shapes(*mtile)
    keep = pypto.lt(col, vg)  # [G, CW]
    pypto.assemble(pypto.where(keep, pypto.view(sc, [G, CW], [0, 0]), MASKED), [g * G, j * CW], scores)


def build_score_kernel(cfg, group: int, pages: int, block_size: int, width: int, run_mode=None):
    """Scores of `group` tokens per table row over `pages` pages (a multiple of
    `score_pages(block_size, pages, group)`) of `block_size` entries, into rows `width` ≥ pages·block_size
    wide. Per iteration a chunk of PP pages (CW = PP·block_size keys): the chunk's rows
    gathered in place through the table (one index_select), q·kᵀ on the cube (bf16 out), ReLU
    on the vector cores, the head weighting and head sum as a second cube matmul with the
    block-diagonal weights, the causal cut and page validity as one select."""
    H, D, G, M, BS, LW = cfg.index_num_heads, cfg.index_head_dim, group, pages, block_size, width
    GH, PP = G * H, score_pages(block_size, pages, G)
    GP = max(16, G)  # rows of the block-diagonal weights (padded with zero rows)
    CW = PP * BS
    DYN = pypto.DYNAMIC
    T = pypto.Tensor
    mt = min(128, max(16, GH))
    nt = min(256, max(16, CW))  # q·kᵀ: [128, 256] fp32 accumulator tiles
    n2 = min(1024, max(16, CW))  # wbd · ReLU: [16, 1024] accumulator tiles, K in steps of 32
    # bf16 vector tiles of up to 4·VEC_OPERAND_ELEMS (64 KB): ReLU, the gathered rows, the q view
    # (a view left at a small tile shape is copied in many small tasks)
    rc = min(CW, 512)
    rtile = (max(1, min(GH, 4 * VEC_OPERAND_ELEMS // rc)), rc)
    gtile = (max(1, min(CW, 4 * VEC_OPERAND_ELEMS // D)), D)
    qtile = (max(1, min(GH, 4 * VEC_OPERAND_ELEMS // D)), D)
    mtile = (G, max(1, min(CW, VEC_OPERAND_ELEMS // G)))
    geo = (G, D, BS, PP, CW, mt, nt, n2, rtile, mtile, gtile)

    @pypto.frontend.jit(runtime_options=jit_options(run_mode))
    def index_score(q: T([DYN, D], BF16), wbd: T([DYN, GH], BF16), keys: T([DYN, D], BF16), table: T([DYN, M], I32),
                    page_base: T([DYN, M], F32), visible: T([DYN, 1], F32), cpage: T([1, CW], I32),
                    clane: T([1, CW], I32), clanef: T([1, CW], F32), scores: T([DYN, LW], F32)):
        ng = table.shape[0]
        for g in pypto.loop(ng, name="groups", idx_name="g"):
            pypto.set_vec_tile_shapes(*qtile)
            qg = pypto.view(q, [GH, D], [g * GH, 0])
            wg = pypto.view(wbd, [GP, GH], [g * GP, 0])
            vg = pypto.view(visible, [G, 1], [g * G, 0])
            for j in pypto.loop(M // PP, name="page_chunks", idx_name="j"):
                _score_chunk(qg, wg, vg, keys, table, page_base, cpage, clane, clanef, scores, g, j, geo)

    return index_score


# one top-k over 262144 columns with k = 512 fails in pypto 0.2.0's cost model
# (`CostModel::ParseInput::BuildFunction`), and so do two parts of 131072; rows wider than
# SELECT_PART are selected in two stages: the top k of each part, then the top k of those
SELECT_PART = 32768


def build_select_kernel(width: int, topk: int, run_mode=None):
    """Top-`topk` of each row of scores [T, width] (width ≥ topk): one top-k, or for rows
    wider than SELECT_PART the top-k of each part and then of the parts' candidates (the
    same entries: every global top-k entry is in its part's top-k)."""
    L, K = width, topk
    DYN = pypto.DYNAMIC
    T = pypto.Tensor
    sort_tile = min(L, 8192)
    parts = -(-L // SELECT_PART) if L > SELECT_PART else 1
    part = -(-L // parts)

    @pypto.frontend.jit(runtime_options=jit_options(run_mode))
    def index_select(scores: T([DYN, L], F32), picks: T([DYN, K], I32)):
        n = scores.shape[0]
        pypto.set_vec_tile_shapes(1, sort_tile)
        for t in pypto.loop(n, name="tokens", idx_name="t"):
            if parts == 1:
                row = pypto.view(scores, [1, L], [t, 0])
                pypto.set_vec_tile_shapes(1, sort_tile)
                vals, idx = pypto.topk(row, K, -1, True)
            else:
                cv, ci = [], []
                for u in range(parts):
                    w = min(part, L - u * part)
                    pypto.set_vec_tile_shapes(1, sort_tile)
                    v, i = pypto.topk(pypto.view(scores, [1, w], [t, u * part]), K, -1, True)
                    pypto.set_vec_tile_shapes(1, K)
                    cv.append(v)
                    ci.append(pypto.add(i, u * part))
                pypto.set_vec_tile_shapes(1, parts * K)
                vals, j = pypto.topk(pypto.concat(cv, -1), K, -1, True)
                idx = pypto.gather(pypto.concat(ci, -1), -1, j)
            pypto.set_vec_tile_shapes(1, K)
            real = pypto.gt(vals, PICK_FLOOR)
            pypto.assemble(pypto.cast(pypto.where(real, pypto.cast(idx, F32), -1.0), I32), [t, 0], picks)

    return index_select
