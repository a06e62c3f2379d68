"""dsv4-core: configs, backends, the CPU simulator runner, cost-model figures, golden
comparators and pypto building blocks shared by the dsv4-kernels packages."""

from .backends import BACKENDS, BackendUnavailable, explain_auto, resolve_backend
from .config import FLASH, PRO, SMALL, TINY, AttentionConfig, from_hf_config, get_preset, shard_heads

__version__ = "0.3.16"

__all__ = [
    "BACKENDS", "BackendUnavailable", "explain_auto", "resolve_backend", "FLASH", "PRO", "SMALL", "TINY",
    "AttentionConfig", "from_hf_config", "get_preset", "shard_heads", "__version__",
]
