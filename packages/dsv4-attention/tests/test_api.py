"""Bad input to the layer: a clear error naming what is wrong, and every cache unchanged."""

import pytest
import torch

from dsv4_attention import AttentionLayer, WeightError, dequantize_fp8, load_weights
from dsv4_attention.testing import make_tokens, make_weights
from dsv4_core import TINY


def _caches(layer):
    ts = [layer.kv_cache]
    for c in (layer.cmp, layer.idx):
        if c is not None:
            ts += [c.state_pos, c.cmp]
    return [t.clone() for t in ts]


@pytest.fixture(params=[0, 1, 2], ids=["swa", "csa", "hca"])
def layer(request):
    lay = AttentionLayer(TINY, request.param, make_weights(TINY, request.param), max_requests=2, max_context=160,
                         backend="torch", cmp_block=16)
    lay.prefill(0, make_tokens(TINY, 150))
    return lay


def _refused(layer, fn, exc, match):
    before = _caches(layer)
    lengths = {r: q.length for r, q in layer.requests.items()}
    with pytest.raises(exc, match=match):
        fn()
    assert all(torch.equal(a, b) for a, b in zip(before, _caches(layer)))
    assert {r: q.length for r, q in layer.requests.items()} == lengths


def test_bad_calls_are_refused_before_anything_is_written(layer):
    D = TINY.hidden_size
    x1 = make_tokens(TINY, 1)
    _refused(layer, lambda: layer.decode([3], x1[None]), KeyError, "request 3 is unknown")
    _refused(layer, lambda: layer.decode([0, 0], torch.cat([x1, x1])[:, None]), ValueError, "requests must be distinct")
    _refused(layer, lambda: layer.decode([0, 1, 2], x1[None]), ValueError, "exceed max_requests=2")
    _refused(layer, lambda: layer.decode([0], x1), ValueError, r"x must have shape \[1, \?, 512\]")
    _refused(layer, lambda: layer.decode([0], x1[None].float()), TypeError, "x must be bfloat16")
    _refused(layer, lambda: layer.decode([0], torch.zeros(1, 0, D, dtype=torch.bfloat16)), ValueError, "x must have shape")
    _refused(layer, lambda: layer.decode([0], make_tokens(TINY, 11)[None]), ValueError, "exceed max_context=160")
    _refused(layer, lambda: layer.prefill(0, make_tokens(TINY, 11)), ValueError, "150 \\+ 11 positions exceed")
    _refused(layer, lambda: layer.prefill(1, torch.zeros(4, D + 1, dtype=torch.bfloat16)), ValueError,
             r"x must have shape \[\?, 512\]")
    _refused(layer, lambda: layer.decode(torch.tensor([0.0]), x1[None]), TypeError, "requests must be B ints")
    _refused(layer, lambda: layer.prefill("a", x1), TypeError, "request must be an int id")
    layer.prefill(1, make_tokens(TINY, 4))
    _refused(layer, lambda: layer.prefill(2, x1), RuntimeError, "already serves max_requests=2")


def test_weights_accept_checkpoint_names_and_refuse_bad_keys():
    cfg, lid = TINY, 1
    w = make_weights(cfg, lid, prefix="layers.1.attn.")
    assert set(load_weights(w, cfg, lid, 4).tensors) == set(load_weights(make_weights(cfg, lid), cfg, lid, 4).tensors)
    bare = {k.removeprefix("layers.1.attn.").removesuffix(".weight"): v for k, v in w.items()}
    load_weights(bare, cfg, lid, 4)
    with pytest.raises(WeightError, match=r"missing \['indexer.weights_proj'\]"):
        load_weights({k: v for k, v in bare.items() if k != "indexer.weights_proj"}, cfg, lid, 4)
    with pytest.raises(WeightError, match=r"'compressor.bias'\]: not an attention tensor of a CSA layer"):
        load_weights({**bare, "compressor.bias": torch.zeros(3)}, cfg, lid, 4)
    with pytest.raises(WeightError, match=r"weights\['wq_b'\] must have shape \[4096, 256\], got \[4096, 255\]"):
        load_weights({**bare, "wq_b": bare["wq_b"][:, :-1]}, cfg, lid, 4)
    with pytest.raises(WeightError, match=r"weights\['wkv'\] must be torch.bfloat16 .*got torch.float32"):
        load_weights({**bare, "wkv": bare["wkv"].float()}, cfg, lid, 4)
    with pytest.raises(WeightError, match=r"'indexer.wq_b'\]: not an attention tensor of a HCA layer"):
        load_weights(bare, cfg, 2, 128)
    with pytest.raises(WeightError, match="given twice"):
        load_weights({**bare, "wkv.weight": bare["wkv"]}, cfg, lid, 4)
    # norm weights may be bf16 as well as fp32
    load_weights({**bare, "q_norm": bare["q_norm"].bfloat16()}, cfg, lid, 4)


@pytest.mark.skipif(not hasattr(torch, "float8_e4m3fn"), reason="this torch has no float8_e4m3fn")
@pytest.mark.parametrize("suffix", [".scale", ".weight_scale_inv"])
def test_fp8_weights_with_block_scales_are_dequantised(suffix):
    cfg, lid = TINY, 0
    w = make_weights(cfg, lid)
    ref = w["wq_b.weight"]  # [4096, 256] bf16
    scale = torch.rand(32, 2) + 0.5
    q8 = (ref.float() / scale.repeat_interleave(128, 0).repeat_interleave(128, 1)).to(torch.float8_e4m3fn)
    w8 = {**w, "wq_b.weight": q8, f"wq_b{suffix}": scale}
    got = load_weights(w8, cfg, lid, 0)["wq_b"]
    assert got.dtype == torch.bfloat16
    assert torch.equal(got, dequantize_fp8(q8, scale))
    assert (got.float() - ref.float()).abs().max() <= 0.07 * ref.float().abs().max()  # e4m3: 3 mantissa bits
    with pytest.raises(WeightError, match="is fp8 but has no block scale"):
        load_weights({**w, "wq_b.weight": q8}, cfg, lid, 0)
    with pytest.raises(WeightError, match=r"block scale must have shape \[32, 2\]"):
        load_weights({**w8, f"wq_b{suffix}": scale[:, :1]}, cfg, lid, 0)
    with pytest.raises(WeightError, match="only projection matrices may be fp8"):
        load_weights({**w, "q_norm.weight": w["q_norm.weight"].to(torch.float8_e4m3fn), "q_norm.scale": scale},
                     cfg, lid, 0)
