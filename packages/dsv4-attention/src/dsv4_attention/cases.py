"""Golden cases of the composed layer (`nox -s golden`): one request fed as a prefill chunk
and decode steps of S = 1, 2 and 8 on the simulator, against the fp64 evaluation of the
layer with the bound set by the same feed on the torch backend."""

from __future__ import annotations

import torch

from dsv4_core import TINY
from dsv4_core.golden import BenchOutcome, GoldenOutcome

MODULE = "attention"
# (layer id in TINY, prefill length): HCA needs more than 128 positions to close a window
_KINDS = {"swa": (0, 20), "csa": (1, 30), "hca": (2, 130)}
_DECODE = (1, 2, 8)
GOLDEN_CASES = [(f"tiny-{k}-prefill-decode", "small") for k in _KINDS] + [("tiny-swa-serving", "small")]
BENCH_CASES: list[str] = []  # the modules' own bench cases time every kernel the layer runs


def _feed(kind: str, backend: str):
    from . import AttentionLayer
    from .testing import make_tokens, make_weights

    lid, n0 = _KINDS[kind]
    n = n0 + sum(_DECODE)
    w = make_weights(TINY, lid, seed=lid)
    x = make_tokens(TINY, n, seed=lid)
    layer = AttentionLayer(TINY, lid, w, max_requests=1, max_context=256, backend=backend, cmp_block=16)
    out, picks, at = [layer.prefill(0, x[:n0])], [layer.last_picks], n0
    for s in _DECODE:
        out.append(layer.decode([0], x[None, at:at + s])[0])
        picks.append(layer.last_picks)
        at += s
    return w, x, torch.cat(out), (torch.cat(picks) if picks[0] is not None else None)


def _serving(backend: str):
    """Three requests through a two-slot SWA layer: A in uneven prefill chunks, B in one; A and
    B decoded together (S = 2, twice); A released and C admitted on its pages (C's tokens are
    A's, so a reused page must give a fresh layer's result). Returns the weights and, per
    request, (tokens, outputs in token order)."""
    from . import AttentionLayer
    from .testing import make_tokens, make_weights

    w = make_weights(TINY, 0, seed=7)
    xa, xb = make_tokens(TINY, 25, seed=8), make_tokens(TINY, 19, seed=9)
    layer = AttentionLayer(TINY, 0, w, max_requests=2, max_context=64, backend=backend, cmp_block=16)
    ya = [layer.prefill(0, xa[:12]), layer.prefill(0, xa[12:21])]
    yb = [layer.prefill(1, xb[:15])]
    for i in range(2):
        y = layer.decode([0, 1], torch.stack([xa[21 + 2 * i:23 + 2 * i], xb[15 + 2 * i:17 + 2 * i]]))
        ya.append(y[0])
        yb.append(y[1])
    layer.release(0)
    yc = [layer.prefill(2, xa)]
    return w, {"A (chunks 12+9, decode)": (xa, torch.cat(ya)), "B (batched decode)": (xb, torch.cat(yb)),
               "C (reused pages)": (xa, torch.cat(yc))}


def golden(name: str) -> GoldenOutcome:
    if name == "tiny-swa-serving":
        return _golden_serving(name)
    from .testing import check_against_exact

    kind = name.split("-")[1]
    w, x, y, picks = _feed(kind, "sim")
    _, _, y_ref, ref_picks = _feed(kind, "torch")
    reports = check_against_exact(TINY, _KINDS[kind][0], w, x, y, y_ref, picks=picks, ref_picks=ref_picks)
    note = f"{kind}: prefill {_KINDS[kind][1]} + decode S={'/'.join(map(str, _DECODE))}"
    return GoldenOutcome(MODULE, name, reports, None, note=note)


def bench(name: str) -> BenchOutcome:  # pragma: no cover - no bench cases
    raise KeyError(f"{MODULE} has no bench cases, got {name!r}")


def _golden_serving(name: str) -> GoldenOutcome:
    from .testing import check_against_exact

    w, got = _serving("sim")
    _, ref = _serving("torch")
    reports = []
    for who, (x, y) in got.items():
        reports += check_against_exact(TINY, 0, w, x, y, ref[who][1], name=f"y {who}")
    return GoldenOutcome(MODULE, name, reports, None, note="swa: uneven chunks, two requests per decode call, "
                         "a released request's pages reused")
