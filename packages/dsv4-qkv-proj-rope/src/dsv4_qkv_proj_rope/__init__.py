"""dsv4-qkv-proj-rope: DeepSeek-V4's Q / KV projection for one attention layer.

    q, kv, qr = qkv_proj_rope(x, wq_a, q_norm_weight, wq_b, wkv, kv_norm_weight, positions,
                              config=FLASH, compress_ratio=4, backend="auto")

computes, for T tokens at arbitrary absolute positions, `qr = q_norm(x @ wq_aᵀ)`,
`q = rope(head_norm(qr @ wq_bᵀ))` and `kv = rope(kv_norm(x @ wkvᵀ))` with the RoPE profile of
the layer (compress ratio 0: main, 4 / 128: compress YaRN)."""

from __future__ import annotations

import torch

from dsv4_core import AttentionConfig, resolve_backend
from dsv4_core.backends import launch, run_mode
from dsv4_core.checks import check_same_device, check_tensor
from dsv4_rope_tables import profile_for_ratio, require_abi, rope_rows
from dsv4_rope_tables.pypto_block import swap_index

from .reference import QKV, qkv_exact, qkv_reference

__version__ = "0.2.4"
ROPE_ABI_CONSUMED = "dsv4-rope/1"
require_abi("dsv4-qkv-proj-rope", ROPE_ABI_CONSUMED)

__all__ = ["QKV", "ROPE_ABI_CONSUMED", "qkv_exact", "qkv_proj_rope", "qkv_reference", "__version__"]


def _validate(cfg: AttentionConfig, x, wq_a, q_norm_weight, wq_b, wkv, kv_norm_weight, positions) -> None:
    if not isinstance(cfg, AttentionConfig):
        raise TypeError(f"config must be a dsv4_core.AttentionConfig, got {type(cfg).__name__}")
    bf16 = torch.bfloat16
    D, QL, H, HD = cfg.hidden_size, cfg.q_lora_rank, cfg.num_heads, cfg.head_dim
    dims: dict = {}
    check_tensor("x", x, shape=("T", D), dtype=bf16, dims=dims)
    if x.shape[0] == 0:
        raise ValueError("x must hold at least one token, got shape [0, D]")
    check_tensor("wq_a", wq_a, shape=(QL, D), dtype=bf16)
    check_tensor("q_norm_weight", q_norm_weight, shape=(QL,), dtype=(bf16, torch.float32))
    check_tensor("wq_b", wq_b, shape=(H * HD, QL), dtype=bf16)
    check_tensor("wkv", wkv, shape=(HD, D), dtype=bf16)
    check_tensor("kv_norm_weight", kv_norm_weight, shape=(HD,), dtype=(bf16, torch.float32))
    check_tensor("positions", positions, shape=("T",), dtype=(torch.int32, torch.int64), dims=dims)
    check_same_device(x=x, wq_a=wq_a, q_norm_weight=q_norm_weight, wq_b=wq_b, wkv=wkv,
                      kv_norm_weight=kv_norm_weight, positions=positions)


def qkv_proj_rope(x: torch.Tensor, wq_a: torch.Tensor, q_norm_weight: torch.Tensor, wq_b: torch.Tensor,
                  wkv: torch.Tensor, kv_norm_weight: torch.Tensor, positions: torch.Tensor, *,
                  config: AttentionConfig, compress_ratio: int, backend: str = "auto") -> QKV:
    """Q / KV projection with RMSNorms and forward RoPE; returns `QKV(q, kv, qr)`, bf16.

    x [T, D] bf16; wq_a [q_lora_rank, D], q_norm_weight [q_lora_rank], wq_b [H·head_dim,
    q_lora_rank], wkv [head_dim, D] bf16, kv_norm_weight [head_dim] — checkpoint [out, in]
    layout, the norm weights bf16 or fp32 (as the checkpoint stores them); positions [T]
    int32/int64 in [0, max_position_embeddings). backend: "npu", "sim" (CPU simulator;
    `dsv4_core.sim.last_run()` holds the cost-model time), "torch" (the golden) or "auto"."""
    cfg = config
    _validate(cfg, x, wq_a, q_norm_weight, wq_b, wkv, kv_norm_weight, positions)
    profile = profile_for_ratio(cfg, compress_ratio)
    cos, sin = rope_rows(profile, positions)  # validates the positions' range
    be = resolve_backend(backend)
    if be == "torch":
        dev = x.device
        return qkv_reference(x, wq_a, q_norm_weight, wq_b, wkv, kv_norm_weight, cos.to(dev), sin.to(dev),
                             num_heads=cfg.num_heads, eps=cfg.eps)
    return _run_kernel(cfg, be, x, wq_a, q_norm_weight, wq_b, wkv, kv_norm_weight, cos, sin)


def _run_kernel(cfg, backend, x, wq_a, q_norm_weight, wq_b, wkv, kv_norm_weight, cos, sin) -> QKV:
    from .kernel import build_qkv_kernel

    T, dev = x.shape[0], x.device
    q = torch.empty(T, cfg.num_heads, cfg.head_dim, dtype=torch.bfloat16, device=dev)
    kv = torch.empty(T, cfg.head_dim, dtype=torch.bfloat16, device=dev)
    qr = torch.empty(T, cfg.q_lora_rank, dtype=torch.bfloat16, device=dev)
    args = [x.contiguous(), wq_a.contiguous(), q_norm_weight.float().reshape(1, -1).contiguous(), wq_b.contiguous(),
            wkv.contiguous(), kv_norm_weight.float().reshape(1, -1).contiguous(), cos.to(dev), sin.to(dev),
            swap_index(cfg.rope_dim).to(dev), q, kv, qr]
    launch(build_qkv_kernel(cfg, run_mode=run_mode(backend), tokens=T), args, backend=backend, name="qkv_proj_rope")
    return QKV(q, kv, qr)
