"""Model configuration for the DeepSeek-V4 attention kernels.

`AttentionConfig` holds every size and constant the attention kernels read: nothing in a
kernel package is a module-level model constant. Presets: `FLASH` and `PRO` carry the
public HuggingFace `config.json` values; `TINY` and `SMALL` keep the per-head geometry
(head_dim 512, rope dim 64, window 128) with fewer heads and smaller hidden / LoRA ranks so
CPU-simulator tests stay fast. `shard_heads` derives the per-rank config of a
tensor-parallel shard.
"""

from __future__ import annotations

import dataclasses
import json
import os
from typing import Any, Literal, Mapping

LayerKind = Literal["swa", "csa", "hca"]

_KIND_BY_RATIO: dict[int, LayerKind] = {0: "swa", 4: "csa", 128: "hca"}


@dataclasses.dataclass(frozen=True)
class AttentionConfig:
    """Every field the attention kernels need, in the official model's words."""

    name: str
    hidden_size: int  # D (`dim`)
    num_heads: int  # H query heads on this rank (`n_heads` / TP)
    head_dim: int  # 512: [nope | rope] latent, K = V
    rope_dim: int  # 64 (`qk_rope_head_dim`), interleaved pairs on the last lanes
    q_lora_rank: int
    o_lora_rank: int
    o_groups: int  # G output groups on this rank (heads in contiguous groups)
    window: int  # sliding window (`window_size`)
    index_num_heads: int
    index_head_dim: int
    index_topk: int
    compress_ratios: tuple[int, ...]  # per layer: 0 (SWA), 4 (CSA), 128 (HCA)
    rope_theta: float  # main profile (SWA layers)
    compress_rope_theta: float  # compress profile (CSA / HCA layers)
    rope_factor: float  # YaRN factor (compress profile only)
    original_max_position_embeddings: int  # YaRN original length; 0 disables YaRN
    beta_fast: float
    beta_slow: float
    max_position_embeddings: int
    eps: float = 1e-6
    tp_size: int = 1  # tensor-parallel degree this config was sharded with

    def __post_init__(self) -> None:
        positive = (
            "hidden_size", "num_heads", "head_dim", "rope_dim", "q_lora_rank", "o_lora_rank",
            "o_groups", "window", "index_num_heads", "index_head_dim", "index_topk",
            "max_position_embeddings", "tp_size",
        )
        for f in positive:
            v = getattr(self, f)
            if not isinstance(v, int) or v <= 0:
                raise ValueError(f"AttentionConfig.{f} must be a positive int, got {v!r}")
        if self.rope_dim % 2:
            raise ValueError(f"AttentionConfig.rope_dim must be even (interleaved pairs), got {self.rope_dim}")
        if self.rope_dim > self.head_dim:
            raise ValueError(f"AttentionConfig.rope_dim ({self.rope_dim}) exceeds head_dim ({self.head_dim})")
        if self.num_heads % self.o_groups:
            raise ValueError(
                f"AttentionConfig.num_heads ({self.num_heads}) must be a multiple of o_groups ({self.o_groups})"
            )
        for i, r in enumerate(self.compress_ratios):
            if r not in _KIND_BY_RATIO:
                raise ValueError(f"AttentionConfig.compress_ratios[{i}] = {r}: expected 0, 4 or 128")

    # ---- derived sizes -------------------------------------------------------------
    @property
    def nope_dim(self) -> int:
        return self.head_dim - self.rope_dim

    @property
    def heads_per_group(self) -> int:
        return self.num_heads // self.o_groups

    @property
    def group_in_dim(self) -> int:
        """Input width of one `wo_a` group: heads_per_group × head_dim."""
        return self.heads_per_group * self.head_dim

    @property
    def softmax_scale(self) -> float:
        return self.head_dim ** -0.5

    @property
    def index_weights_scale(self) -> float:
        return self.index_head_dim ** -0.5 * self.index_num_heads ** -0.5

    @property
    def num_layers(self) -> int:
        return len(self.compress_ratios)

    def layer_kind(self, layer: int) -> LayerKind:
        """'swa' / 'csa' / 'hca' from the layer's compress ratio (0 / 4 / 128)."""
        return _KIND_BY_RATIO[self.compress_ratio(layer)]

    def compress_ratio(self, layer: int) -> int:
        if not 0 <= layer < len(self.compress_ratios):
            raise IndexError(f"layer must be in [0, {len(self.compress_ratios)}), got {layer}")
        return self.compress_ratios[layer]

    def replace(self, **changes: Any) -> AttentionConfig:
        return dataclasses.replace(self, **changes)


def kind_for_ratio(compress_ratio: int) -> LayerKind:
    if compress_ratio not in _KIND_BY_RATIO:
        raise ValueError(f"compress_ratio must be 0, 4 or 128, got {compress_ratio!r}")
    return _KIND_BY_RATIO[compress_ratio]


def shard_heads(cfg: AttentionConfig, tp: int) -> AttentionConfig:
    """The config one tensor-parallel rank sees: H/tp query heads, G/tp output groups and
    index heads / tp (the indexer all-reduces its head sum across ranks)."""
    if tp <= 0 or cfg.num_heads % tp or cfg.o_groups % tp or cfg.index_num_heads % tp:
        raise ValueError(
            f"tp={tp} must divide num_heads ({cfg.num_heads}), o_groups ({cfg.o_groups}) "
            f"and index_num_heads ({cfg.index_num_heads})"
        )
    return cfg.replace(
        name=f"{cfg.name}-tp{cfg.tp_size * tp}",
        num_heads=cfg.num_heads // tp,
        o_groups=cfg.o_groups // tp,
        index_num_heads=cfg.index_num_heads // tp,
        tp_size=cfg.tp_size * tp,
    )


_COMMON = dict(
    head_dim=512, rope_dim=64, o_lora_rank=1024, window=128, index_num_heads=64,
    index_head_dim=128, rope_theta=10000.0, compress_rope_theta=160000.0, rope_factor=16.0,
    original_max_position_embeddings=65536, beta_fast=32.0, beta_slow=1.0,
    max_position_embeddings=1_048_576, eps=1e-6,
)

FLASH = AttentionConfig(
    name="flash", hidden_size=4096, num_heads=64, q_lora_rank=1024, o_groups=8, index_topk=512,
    compress_ratios=(0, 0) + (4, 128) * 20 + (4, 0), **_COMMON,
)

PRO = AttentionConfig(
    name="pro", hidden_size=7168, num_heads=128, q_lora_rank=1536, o_groups=16, index_topk=1024,
    compress_ratios=(128, 128) + (4, 128) * 29 + (4, 0), **_COMMON,
)

# Small presets for fast CPU tests: same head geometry, fewer heads, smaller ranks.
SMALL = AttentionConfig(
    name="small", hidden_size=1024, num_heads=16, q_lora_rank=512, o_groups=4, index_topk=64,
    compress_ratios=(0, 4, 128, 4), **{**_COMMON, "o_lora_rank": 256, "index_num_heads": 16},
)

TINY = AttentionConfig(
    name="tiny", hidden_size=512, num_heads=8, q_lora_rank=256, o_groups=2, index_topk=16,
    compress_ratios=(0, 4, 128, 4), **{**_COMMON, "o_lora_rank": 128, "index_num_heads": 8},
)

PRESETS: dict[str, AttentionConfig] = {c.name: c for c in (FLASH, PRO, SMALL, TINY)}


def get_preset(name: str) -> AttentionConfig:
    try:
        return PRESETS[name]
    except KeyError:
        raise KeyError(f"unknown preset {name!r}; known: {sorted(PRESETS)}") from None


# HuggingFace config.json key -> field; inference `ModelArgs` names accepted as aliases.
_HF_KEYS: dict[str, tuple[str, ...]] = {
    "hidden_size": ("hidden_size", "dim"),
    "num_heads": ("num_attention_heads", "n_heads"),
    "head_dim": ("head_dim",),
    "rope_dim": ("qk_rope_head_dim", "rope_head_dim"),
    "q_lora_rank": ("q_lora_rank",),
    "o_lora_rank": ("o_lora_rank",),
    "o_groups": ("o_groups",),
    "window": ("sliding_window", "window_size"),
    "index_num_heads": ("index_n_heads",),
    "index_head_dim": ("index_head_dim",),
    "index_topk": ("index_topk",),
    "compress_ratios": ("compress_ratios",),
    "rope_theta": ("rope_theta",),
    "compress_rope_theta": ("compress_rope_theta",),
    "max_position_embeddings": ("max_position_embeddings",),
    "eps": ("rms_norm_eps", "norm_eps"),
}
_YARN_KEYS: dict[str, tuple[str, ...]] = {
    "rope_factor": ("factor", "rope_factor"),
    "original_max_position_embeddings": ("original_max_position_embeddings", "original_seq_len"),
    "beta_fast": ("beta_fast",),
    "beta_slow": ("beta_slow",),
}


def _pick(src: Mapping[str, Any], keys: tuple[str, ...], field: str, where: str) -> Any:
    for k in keys:
        if k in src:
            return src[k]
    raise KeyError(f"config {where} lacks {field!r} (looked for {', '.join(keys)})")


def from_hf_config(path_or_dict: str | os.PathLike | Mapping[str, Any], *, name: str | None = None,
                   num_layers: int | None = None) -> AttentionConfig:
    """Build a config from a HuggingFace `config.json` (path, directory or parsed dict).

    `compress_ratios` keeps every entry the checkpoint ships (MTP layers included) unless
    `num_layers` truncates it."""
    if isinstance(path_or_dict, Mapping):
        src: Mapping[str, Any] = path_or_dict
        where = "dict"
    else:
        p = os.fspath(path_or_dict)
        if os.path.isdir(p):
            p = os.path.join(p, "config.json")
        with open(p, encoding="utf-8") as f:
            src = json.load(f)
        where = repr(p)
    vals: dict[str, Any] = {f: _pick(src, ks, f, where) for f, ks in _HF_KEYS.items()}
    scaling = src.get("rope_scaling") or {}
    yarn_src = {**src, **scaling}
    for f, ks in _YARN_KEYS.items():
        vals[f] = _pick(yarn_src, ks, f, where)
    ratios = tuple(int(r) for r in vals.pop("compress_ratios"))
    if num_layers is not None:
        ratios = ratios[:num_layers]
    for f in ("rope_theta", "compress_rope_theta", "rope_factor", "beta_fast", "beta_slow", "eps"):
        vals[f] = float(vals[f])
    for f in _HF_KEYS:
        if f not in ("compress_ratios", "rope_theta", "compress_rope_theta", "eps"):
            vals[f] = int(vals[f])
    vals["original_max_position_embeddings"] = int(vals["original_max_position_embeddings"])
    return AttentionConfig(name=name or str(src.get("_name_or_path") or src.get("model_type") or "hf"),
                           compress_ratios=ratios, **vals)
