"""dsv4-attention: one DeepSeek-V4 attention layer (SWA / CSA / HCA; prefill and decode)
over paged caches it owns, composed from the dsv4 module packages' public functions at the
exact versions it was validated with.

    from dsv4_attention import AttentionLayer

    layer = AttentionLayer(config, layer_id, weights, max_requests=8, max_context=4096)
    y = layer.prefill(request, x)     # x [T, hidden] bf16 -> [T, hidden] bf16
    y = layer.decode(requests, x)     # x [B, S, hidden] bf16 -> [B, S, hidden] bf16
    layer.release(request)
"""

from .layer import AttentionLayer
from .pages import PoolExhausted
from .reference import layer_exact
from .weights import LayerWeights, WeightError, dequantize_fp8, expected_weights, load_weights

__version__ = "0.1.23"

__all__ = ["AttentionLayer", "LayerWeights", "PoolExhausted", "WeightError", "dequantize_fp8", "expected_weights",
           "layer_exact", "load_weights", "__version__"]
