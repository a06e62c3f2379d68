"""The lightning indexer's shared core, used by dsv4-indexer (decode) and
dsv4-prefill-indexer (prefill) — module packages may not import each other:

- `reference`: the torch golden (queries, scores, top-k selection) and a dense fp64
  formulation written apart from it;
- `kernel`: the three pypto kernels (query, score, select), built per config;
- `host`: argument checks, the O(step) metadata the kernels take, the launches;
- `keys`: the key compressor's public functions — the family's ratio-4 compressor at
  `index_head_dim` with the Hadamard after RoPE (`rotate=True`), writing the paged
  index-key cache.

The Hadamard rotation itself is `dsv4_compressor_common.hadamard`; the test kit is
`dsv4_compressor_common.testing.indexer`."""

from .keys import KEY_NAMES, key_functions
from .reference import RATIO

__all__ = ["KEY_NAMES", "RATIO", "key_functions"]
