"""The composed layer on the torch backend: against the independent fp64 evaluation, the
equivalences of the ways a request can be fed, and the page allocator."""

import pytest
import torch

from dsv4_attention import AttentionLayer, layer_exact, load_weights
from dsv4_attention.testing import check_against_exact, make_tokens, make_weights
from dsv4_core import TINY

KINDS = {"swa": 0, "csa": 1, "hca": 2}  # TINY layer ids
N = 272  # > 2 HCA windows, 68 CSA entries (> top-k 16)


def _layer(layer_id, **kw):
    kw.setdefault("max_requests", 3)
    kw.setdefault("max_context", 512)
    return AttentionLayer(TINY, layer_id, make_weights(TINY, layer_id, seed=layer_id), backend="torch",
                          cmp_block=16, **kw)


def _feed(layer, rid, x, plan, picks=None):
    """Feed x [N, D] to request rid: ("p", n) prefill chunks, ("d", S) decode steps; the
    layer's CSA picks of each call are appended to `picks`."""
    out, at = [], 0
    for how, n in plan:
        if how == "p":
            out.append(layer.prefill(rid, x[at:at + n]))
        else:
            out.append(layer.decode([rid], x[None, at:at + n])[0])
        if picks is not None:
            picks.append(layer.last_picks)
        at += n
    assert at == x.shape[0]
    return torch.cat(out)


class _Whole(dict):
    """Each kind's (tokens, layer output, CSA picks) for one request prefilled in one chunk,
    on first use."""

    def __missing__(self, kind):
        lid = KINDS[kind]
        x = make_tokens(TINY, N, seed=lid)
        layer = _layer(lid)
        self[kind] = (x, layer.prefill(0, x), layer.last_picks)
        return self[kind]


@pytest.fixture(scope="module")
def whole():
    return _Whole()


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_layer_matches_the_fp64_evaluation(kind, whole):
    lid = KINDS[kind]
    x, y, picks = whole[kind]
    reports = check_against_exact(TINY, lid, make_weights(TINY, lid, seed=lid), x, y, picks=picks)
    assert reports and all(r.ok for r in reports), [str(r) for r in reports]
    assert [r.name for r in reports] == (["picks", "y"] if kind == "csa" else ["y"])


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_the_check_fails_on_a_perturbed_output(kind, whole):
    lid = KINDS[kind]
    x, y, picks = whole[kind]
    w = make_weights(TINY, lid, seed=lid)
    bad = y.clone()
    bad[N - 1] = (bad[N - 1].float() * 1.1).bfloat16()  # one token's output 10 % off
    assert not check_against_exact(TINY, lid, w, x, bad, picks=picks)[-1].ok
    w2 = dict(w)
    w2["attn_sink"] = w["attn_sink"] + 1.0  # a layer built with another sink
    lay2 = AttentionLayer(TINY, lid, w2, max_requests=1, max_context=512, backend="torch", cmp_block=16)
    y2 = lay2.prefill(0, x)
    assert not check_against_exact(TINY, lid, w, x, y2, picks=lay2.last_picks)[-1].ok
    if kind == "csa":  # a pick that is not among the top-k (the lowest-scored visible entry) fails
        _, _, scores = layer_exact(TINY, lid, load_weights(w, TINY, lid, 4), x)
        last = scores[-1].masked_fill(~torch.isfinite(scores[-1]), float("inf"))
        wrong = picks.clone()
        wrong[-1, 0] = int(last.argmin())
        assert not check_against_exact(TINY, lid, w, x, y, picks=wrong)[0].ok


def _close(a, b, what):
    err = (a.float() - b.float()).abs().max().item()
    scale = b.float().abs().max().item()
    assert err <= 2.0 ** -6 * scale, f"{what}: max diff {err:.3e} vs scale {scale:.3e}"


@pytest.mark.parametrize("kind", sorted(KINDS))
@pytest.mark.parametrize("plan", [
    [("p", 100), ("p", 37), ("p", 135)],  # uneven chunks
    [("p", 130)] + [("d", 1)] * 6 + [("d", 2)] * 4 + [("d", 8)] * 16,  # prefill(k), then S = 1, 2, 8
], ids=["chunks", "prefill+decode"])
def test_feeding_a_request_differently_gives_the_same_output(kind, plan, whole):
    lid = KINDS[kind]
    x, y, picks = whole[kind]
    n = sum(k for _, k in plan)
    got_picks = []
    got = _feed(_layer(lid), 5, x[:n], plan, got_picks)
    if kind == "csa":  # the picks are the same too, up to ties (the values are checked on all tokens)
        rep = check_against_exact(TINY, lid, make_weights(TINY, lid, seed=lid), x[:n], got,
                                  picks=torch.cat(got_picks))[0]
        assert rep.ok, str(rep)
    _close(got, y[:n], f"{kind} {plan[:3]}…")


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_two_requests_in_one_decode_call_equal_each_alone(kind):
    lid = KINDS[kind]
    xa, xb = make_tokens(TINY, 140, seed=11), make_tokens(TINY, 70, seed=12)
    both = _layer(lid)
    both.prefill(1, xa[:130])
    both.prefill(2, xb[:60])
    ya = [both.decode([1, 2], torch.stack([xa[130 + 2 * i:132 + 2 * i], xb[60 + 2 * i:62 + 2 * i]])) for i in range(5)]
    alone_a, alone_b = _layer(lid), _layer(lid)
    alone_a.prefill(1, xa[:130])
    alone_b.prefill(2, xb[:60])
    for i in range(5):
        _close(ya[i][0], alone_a.decode([1], xa[None, 130 + 2 * i:132 + 2 * i])[0], f"{kind} request 1 step {i}")
        _close(ya[i][1], alone_b.decode([2], xb[None, 60 + 2 * i:62 + 2 * i])[0], f"{kind} request 2 step {i}")


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_released_pages_are_reused_and_give_a_fresh_layers_output(kind):
    lid = KINDS[kind]
    layer = _layer(lid, max_requests=1)
    layer.prefill(7, make_tokens(TINY, 200, seed=3))
    layer.decode([7], make_tokens(TINY, 3, seed=4)[None])
    layer.release(7)
    with pytest.raises(KeyError, match="request 7 is unknown"):
        layer.decode([7], make_tokens(TINY, 1)[None])
    x = make_tokens(TINY, 150, seed=5)
    got = layer.prefill(8, x)  # the only slot: every page is a reused one
    _close(got, _layer(lid, max_requests=1).prefill(8, x), f"{kind} reused pages")
    pools = [layer.ring_pool] + [p for c in (layer.cmp, layer.idx) if c for p in (c.state_pool, c.cmp_pool)]
    layer.release(8)
    assert all(p.free == p.size for p in pools)


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_validate_false_gives_the_same_bits(kind):
    """validate=False (the modules read nothing back) computes what validate=True computes:
    prefill chunks, then two requests decoded together."""
    lid = KINDS[kind]
    xa, xb = make_tokens(TINY, 150, seed=21), make_tokens(TINY, 60, seed=22)
    outs = []
    for validate in (True, False):
        layer = _layer(lid, validate=validate)
        ys = [layer.prefill(1, xa[:100]), layer.prefill(1, xa[100:140]), layer.prefill(2, xb[:50])]
        for i in range(5):
            ys.append(layer.decode([1, 2], torch.stack([xa[140 + 2 * i:142 + 2 * i], xb[50 + 2 * i:52 + 2 * i]])))
        outs.append(ys)
    for i, (a, b) in enumerate(zip(*outs)):
        assert torch.equal(a, b), f"{kind} call {i}"


@pytest.mark.parametrize("validate", [True, False])
def test_validate_reaches_every_module_that_takes_it(validate, monkeypatch):
    from dsv4_attention import modules

    seen = []
    names = ["prefill_compressor_ratio4", "prefill_indexer_compressor", "prefill_indexer", "prefill_sparse_attn",
             "indexer_compressor", "indexer", "sparse_attn_csa"]
    for name in names:
        real = getattr(modules, name)
        monkeypatch.setattr(modules, name, lambda *a, _f=real, _n=name, **kw: seen.append((_n, kw["validate"]))
                            or _f(*a, **kw))
    monkeypatch.setitem(modules._PREFILL_COMPRESSOR, 4, modules.prefill_compressor_ratio4)
    real4 = modules._DECODE_COMPRESSOR[4]
    monkeypatch.setitem(modules._DECODE_COMPRESSOR, 4, lambda *a, **kw: seen.append(("compressor_ratio4",
                                                                                       kw["validate"])) or real4(*a, **kw))
    layer = _layer(KINDS["csa"], validate=validate)
    x = make_tokens(TINY, 40, seed=23)
    layer.prefill(1, x[:38])
    layer.decode([1], x[None, 38:40])
    assert sorted({n for n, _ in seen}) == sorted(names + ["compressor_ratio4"])
    assert {v for _, v in seen} == {validate}


def test_validate_must_be_a_bool():
    with pytest.raises(TypeError, match="validate must be a bool"):
        _layer(0, validate="no")
