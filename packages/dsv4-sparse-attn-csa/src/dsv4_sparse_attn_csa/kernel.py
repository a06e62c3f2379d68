"""The pypto kernel: dsv4-core's shared sparse-attention block (gather of physical KV rows,
tiled online softmax with sink, inverse RoPE, grouped output projection), built per config
with dsv4-rope-tables' rotation block. See `dsv4_core.attention.build_sparse_attn_kernel`.

No `from __future__ import annotations`: pypto reads kernel annotations as objects."""

from dsv4_core.attention import AttnTiling, build_sparse_attn_kernel, default_tiling
from dsv4_rope_tables.pypto_block import rope_rotate

__all__ = ["AttnTiling", "build_kernel", "default_tiling"]


def build_kernel(cfg, tiling=None, run_mode=None, *, inverse_rope: bool = True):
    return build_sparse_attn_kernel(cfg, tiling, run_mode, inverse_rope=inverse_rope, rope_block=rope_rotate)
