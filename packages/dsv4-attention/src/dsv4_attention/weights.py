"""The layer's weights: checkpoint names in, validated canonical tensors out.

A checkpoint names a layer's attention tensors relative to `layers.{i}.attn.`; the layer
accepts them with or without that prefix and with or without a `.weight` suffix. fp8 e4m3
matrices come with per-128×128-block scales (`<name>.scale` as in the official inference
code, `<name>.weight_scale_inv` as in HF-format checkpoints) and are dequantised to bf16
at load. Every missing, extra, mis-shaped or mis-typed key is an error that names it."""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping

import torch

from dsv4_core import AttentionConfig

FP8_BLOCK = 128
_FP8 = tuple(getattr(torch, n) for n in ("float8_e4m3fn", "float8_e4m3fnuz") if hasattr(torch, n))
_SCALE_SUFFIXES = (".scale", ".weight_scale_inv")
# roles: "matrix" (bf16, or fp8 + block scale), "norm" (bf16 or fp32), "fp32" (fp32, bf16 accepted)
_MATRIX, _NORM, _FP32 = "matrix", "norm", "fp32"


class WeightError(ValueError):
    """A checkpoint tensor is missing, unexpected, mis-shaped or mis-typed."""


def expected_weights(cfg: AttentionConfig, compress_ratio: int) -> dict[str, tuple[tuple[int, ...], str]]:
    """name -> (shape, role) of every attention tensor of a layer with this compress ratio."""
    D, H, HD, QL = cfg.hidden_size, cfg.num_heads, cfg.head_dim, cfg.q_lora_rank
    G, OL = cfg.o_groups, cfg.o_lora_rank
    w = {
        "wq_a": ((QL, D), _MATRIX), "q_norm": ((QL,), _NORM), "wq_b": ((H * HD, QL), _MATRIX),
        "wkv": ((HD, D), _MATRIX), "kv_norm": ((HD,), _NORM),
        "wo_a": ((G * OL, cfg.group_in_dim), _MATRIX), "wo_b": ((D, G * OL), _MATRIX), "attn_sink": ((H,), _FP32),
    }
    if compress_ratio:
        coff = 2 if compress_ratio == 4 else 1
        w.update({"compressor.wkv": ((coff * HD, D), _MATRIX), "compressor.wgate": ((coff * HD, D), _MATRIX),
                  "compressor.ape": ((compress_ratio, coff * HD), _FP32), "compressor.norm": ((HD,), _NORM)})
    if compress_ratio == 4:
        IH, IHD = cfg.index_num_heads, cfg.index_head_dim
        w.update({"indexer.wq_b": ((IH * IHD, QL), _MATRIX), "indexer.weights_proj": ((IH, D), _MATRIX),
                  "indexer.compressor.wkv": ((2 * IHD, D), _MATRIX),
                  "indexer.compressor.wgate": ((2 * IHD, D), _MATRIX),
                  "indexer.compressor.ape": ((4, 2 * IHD), _FP32), "indexer.compressor.norm": ((IHD,), _NORM)})
    return w


def dequantize_fp8(w: torch.Tensor, scale: torch.Tensor, *, name: str = "weight") -> torch.Tensor:
    """bf16 from an fp8 e4m3 matrix [out, in] and its per-128×128-block scales
    [ceil(out/128), ceil(in/128)] (w · scale, blockwise)."""
    if w.dim() != 2:
        raise WeightError(f"{name}: an fp8 weight must be 2-D, got shape {list(w.shape)}")
    rows, cols = -(-w.shape[0] // FP8_BLOCK), -(-w.shape[1] // FP8_BLOCK)
    if tuple(scale.shape) != (rows, cols):
        raise WeightError(f"{name}: its block scale must have shape [{rows}, {cols}] (one per {FP8_BLOCK}×"
                          f"{FP8_BLOCK} block of {list(w.shape)}), got {list(scale.shape)}")
    s = scale.float().repeat_interleave(FP8_BLOCK, 0).repeat_interleave(FP8_BLOCK, 1)
    return (w.float() * s[:w.shape[0], :w.shape[1]]).to(torch.bfloat16)


def _canonical(key: str, layer_id: int) -> str:
    k = re.sub(rf"^(model\.)?layers\.{layer_id}\.attn\.", "", key)
    return k[: -len(".weight")] if k.endswith(".weight") else k


@dataclasses.dataclass(frozen=True)
class LayerWeights:
    """Canonical tensors by checkpoint name (bf16 matrices, norms as given, fp32 ape / sink)."""

    tensors: Mapping[str, torch.Tensor]

    def __getitem__(self, name: str) -> torch.Tensor:
        return self.tensors[name]


def load_weights(weights: Mapping[str, torch.Tensor], cfg: AttentionConfig, layer_id: int,
                 compress_ratio: int, device: torch.device | str | None = None) -> LayerWeights:
    """Validate and canonicalise a layer's checkpoint tensors (see the module docstring)."""
    if not isinstance(weights, Mapping):
        raise TypeError(f"weights must be a mapping of checkpoint names to tensors, got {type(weights).__name__}")
    want = expected_weights(cfg, compress_ratio)
    found: dict[str, tuple[str, torch.Tensor]] = {}
    scales: dict[str, tuple[str, torch.Tensor]] = {}
    for key, t in weights.items():
        if not isinstance(key, str):
            raise WeightError(f"weights: keys must be checkpoint names (str), got {key!r}")
        if not isinstance(t, torch.Tensor):
            raise WeightError(f"weights[{key!r}] must be a torch.Tensor, got {type(t).__name__}")
        base = _canonical(key, layer_id)
        for suf in _SCALE_SUFFIXES:
            if base.endswith(suf) and base[: -len(suf)] in want:
                if base[: -len(suf)] in scales:
                    raise WeightError(f"weights: two block scales for {base[: -len(suf)]!r} "
                                      f"({scales[base[: -len(suf)]][0]!r} and {key!r})")
                scales[base[: -len(suf)]] = (key, t)
                break
        else:
            if base not in want:
                kind = {0: "SWA", 4: "CSA", 128: "HCA"}[compress_ratio]
                raise WeightError(f"weights[{key!r}]: not an attention tensor of a {kind} layer "
                                  f"(layer {layer_id}); expected keys: {sorted(want)}")
            if base in found:
                raise WeightError(f"weights: {base!r} given twice ({found[base][0]!r} and {key!r})")
            found[base] = (key, t)
    missing = sorted(set(want) - set(found))
    if missing:
        raise WeightError(f"weights: missing {missing} (layer {layer_id}, compress ratio {compress_ratio})")
    out = {}
    for name, (shape, role) in want.items():
        key, t = found[name]
        scale = scales.pop(name, None)
        if list(t.shape) != list(shape):
            raise WeightError(f"weights[{key!r}] must have shape {list(shape)}, got {list(t.shape)}")
        if t.dtype in _FP8:
            if role != _MATRIX:
                raise WeightError(f"weights[{key!r}]: only projection matrices may be fp8, got {t.dtype}")
            if scale is None:
                raise WeightError(f"weights[{key!r}] is fp8 but has no block scale "
                                  f"({' or '.join(name + s for s in _SCALE_SUFFIXES)})")
            t = dequantize_fp8(t, scale[1], name=key)
        elif scale is not None:
            raise WeightError(f"weights[{scale[0]!r}]: a block scale for {key!r}, which is {t.dtype}, not fp8")
        allowed = {_MATRIX: (torch.bfloat16,), _NORM: (torch.bfloat16, torch.float32),
                   _FP32: (torch.float32, torch.bfloat16)}[role]
        if t.dtype not in allowed:
            raise WeightError(f"weights[{key!r}] must be {' or '.join(str(a) for a in allowed)}"
                              f"{' (or fp8 e4m3 with a block scale)' if role == _MATRIX else ''}, got {t.dtype}")
        if role == _FP32:
            t = t.float()
        out[name] = t.to(device) if device is not None else t
    return LayerWeights(out)
