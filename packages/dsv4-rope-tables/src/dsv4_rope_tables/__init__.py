"""dsv4-rope-tables: the RoPE ABI every dsv4 kernel consumes (frequencies, the canonical
table layout and its validator, converters, the torch reference rotation and the pypto
building block that applies it inside kernels)."""

from .reference import apply_rope, rotate, swap_pairs
from .tables import (
    KNOWN_LAYOUTS,
    LAYOUT,
    ROPE_ABI,
    RopeLayoutError,
    RopeProfile,
    RopeRows,
    build_table,
    check_positions,
    correction_range,
    detect_layout,
    frequencies,
    from_freqs_cis,
    from_half,
    from_split_duplicated,
    gather_rows,
    profile_for_layer,
    profile_for_ratio,
    rope_rows,
    to_freqs_cis,
    to_split_duplicated,
    validate_table,
)

__version__ = "0.2.1"


def require_abi(consumer: str, wanted: str) -> None:
    """Called by kernel packages at import: fail with a clear message when the installed
    rope-tables speaks another ABI major than the one the consumer was written for."""
    have_major = ROPE_ABI.rsplit("/", 1)[-1]
    want_major = wanted.rsplit("/", 1)[-1]
    if wanted.rsplit("/", 1)[0] != ROPE_ABI.rsplit("/", 1)[0] or have_major != want_major:
        raise ImportError(f"{consumer} consumes RoPE ABI {wanted!r} but the installed dsv4-rope-tables "
                          f"{__version__} provides {ROPE_ABI!r}; install a matching dsv4-rope-tables")


__all__ = [
    "KNOWN_LAYOUTS", "LAYOUT", "ROPE_ABI", "RopeLayoutError", "RopeProfile", "RopeRows", "apply_rope", "build_table",
    "check_positions", "correction_range", "detect_layout", "frequencies", "from_freqs_cis", "from_half",
    "from_split_duplicated", "gather_rows", "profile_for_layer", "profile_for_ratio", "require_abi", "rope_rows",
    "rotate", "swap_pairs", "to_freqs_cis", "to_split_duplicated", "validate_table", "__version__",
]
