"""One prefill chunk and one decode step, wired from the module packages' public functions
(nothing else: this package owns no kernel)."""

from __future__ import annotations

import torch

from dsv4_compressor_ratio4 import compressor_ratio4
from dsv4_compressor_ratio4 import make_caches as _make_caches_4
from dsv4_compressor_ratio128 import compressor_ratio128
from dsv4_compressor_ratio128 import make_caches as _make_caches_128
from dsv4_indexer import indexer, indexer_compressor
from dsv4_indexer import make_caches as indexer_make_caches
from dsv4_prefill_compressor_ratio4 import prefill_compressor_ratio4
from dsv4_prefill_compressor_ratio128 import prefill_compressor_ratio128
from dsv4_prefill_indexer import prefill_indexer, prefill_indexer_compressor
from dsv4_prefill_sparse_attn import prefill_sparse_attn
from dsv4_prefill_sparse_attn import update_window_cache as prefill_update_window_cache
from dsv4_qkv_proj_rope import qkv_proj_rope
from dsv4_sparse_attn_csa import sparse_attn_csa
from dsv4_sparse_attn_hca import sparse_attn_hca
from dsv4_sparse_attn_swa import sparse_attn_swa
from dsv4_sparse_attn_swa import update_window_cache as decode_update_window_cache

__all__ = ["compressor_make_caches", "decode_step", "indexer_make_caches", "prefill_step"]

_DECODE_COMPRESSOR = {4: compressor_ratio4, 128: compressor_ratio128}
_PREFILL_COMPRESSOR = {4: prefill_compressor_ratio4, 128: prefill_compressor_ratio128}


def compressor_make_caches(ratio: int):
    return {4: _make_caches_4, 128: _make_caches_128}[ratio]


def _opts(layer) -> dict:
    """The keywords every module call after the projections takes from the layer."""
    return {"backend": layer.backend, "validate": layer.validate}


def _long(values, device) -> torch.Tensor:
    return torch.tensor(values, dtype=torch.int64, device=device)


def _qkv(layer, x2d: torch.Tensor, positions: torch.Tensor):
    w = layer.w
    return qkv_proj_rope(x2d, w["wq_a"], w["q_norm"], w["wq_b"], w["wkv"], w["kv_norm"], positions,
                         config=layer.config, compress_ratio=layer.ratio, backend=layer.backend)


def _compressor_args(w, prefix: str) -> tuple:
    return tuple(w[f"{prefix}.{n}"] for n in ("wkv", "wgate", "ape", "norm"))


def prefill_step(layer, req, x: torch.Tensor, start: int) -> torch.Tensor:
    cfg, w, dev, T = layer.config, layer.w, layer.device, x.shape[0]
    positions = torch.arange(start, start + T, dtype=torch.int64, device=dev)
    q, kv, qr = _qkv(layer, x, positions)
    ring = _long([req.ring], dev)
    extra = {}
    if layer.ratio:
        c = layer.cmp
        _PREFILL_COMPRESSOR[layer.ratio](
            x, *_compressor_args(w, "compressor"), start, c.state, c.state_pos,
            c.state_table([req.state_pages])[0].to(dev), c.cmp,
            _long(c.slot_mapping(req.cmp_pages, range(start, start + T)), dev), config=cfg, **_opts(layer))
        extra = dict(cmp_kv=c.cmp, cmp_block_table=c.cmp_table([req.cmp_pages])[0].to(dev))
    if layer.kind == "csa":
        i = layer.idx
        prefill_indexer_compressor(
            x, *_compressor_args(w, "indexer.compressor"), start, i.state, i.state_pos,
            i.state_table([req.idx_state_pages])[0].to(dev), i.cmp,
            _long(i.slot_mapping(req.idx_pages, range(start, start + T)), dev), config=cfg, **_opts(layer))
        layer.last_picks = prefill_indexer(x, qr, w["indexer.wq_b"], w["indexer.weights_proj"], start, i.cmp,
                                           i.cmp_table([req.idx_pages])[0].to(dev), config=cfg, **_opts(layer))
        extra["topk_idxs"] = layer.last_picks
    y = prefill_sparse_attn(q, kv, layer.kv_cache, ring, start, w["attn_sink"], layer.wo_a, w["wo_b"],
                            compress_ratio=layer.ratio, config=cfg, **_opts(layer), **extra)
    prefill_update_window_cache(layer.kv_cache, ring, start, kv)
    return y


def decode_step(layer, reqs, x: torch.Tensor, start: list[int]) -> torch.Tensor:
    cfg, w, dev = layer.config, layer.w, layer.device
    B, S = x.shape[0], x.shape[1]
    positions = _long([[s + j for j in range(S)] for s in start], dev)  # [B, S], token b·S + s
    x2d = x.reshape(B * S, cfg.hidden_size)
    q, kv, qr = _qkv(layer, x2d, positions.reshape(-1))
    ring = _long([r.ring for r in reqs], dev)
    start_t = _long(start, dev)
    if layer.ratio:
        c = layer.cmp
        _DECODE_COMPRESSOR[layer.ratio](
            x, *_compressor_args(w, "compressor"), start_t, c.state, c.state_pos,
            c.state_table([r.state_pages for r in reqs]).to(dev), c.cmp,
            _long([c.slot_mapping(r.cmp_pages, range(s, s + S)) for r, s in zip(reqs, start)], dev),
            config=cfg, **_opts(layer))
        cmp_table = c.cmp_table([r.cmp_pages for r in reqs]).to(dev)
    if layer.kind == "swa":
        y = sparse_attn_swa(q, kv, layer.kv_cache, ring, positions, w["attn_sink"], layer.wo_a, w["wo_b"],
                            config=cfg, **_opts(layer))
    elif layer.kind == "hca":
        y = sparse_attn_hca(q, kv, layer.kv_cache, ring, c.cmp, cmp_table, positions, w["attn_sink"], layer.wo_a,
                            w["wo_b"], config=cfg, **_opts(layer))
    else:
        i = layer.idx
        indexer_compressor(
            x, *_compressor_args(w, "indexer.compressor"), start_t, i.state, i.state_pos,
            i.state_table([r.idx_state_pages for r in reqs]).to(dev), i.cmp,
            _long([i.slot_mapping(r.idx_pages, range(s, s + S)) for r, s in zip(reqs, start)], dev),
            config=cfg, **_opts(layer))
        topk = layer.last_picks = indexer(x2d, qr, w["indexer.wq_b"], w["indexer.weights_proj"], positions, i.cmp,
                       i.cmp_table([r.idx_pages for r in reqs]).to(dev), config=cfg, **_opts(layer))
        y = sparse_attn_csa(q, kv, layer.kv_cache, ring, c.cmp, cmp_table, topk, positions, w["attn_sink"],
                            layer.wo_a, w["wo_b"], config=cfg, **_opts(layer))
    decode_update_window_cache(layer.kv_cache, ring, positions, kv)
    return y.reshape(B, S, cfg.hidden_size)
