"""Golden cases of the composed layer (`nox -s golden`): per kind (SWA, CSA, HCA) one
serving scenario on the simulator, every output checked against the fp64 evaluation of its
request's whole token stream (the bound set by the same scenario on the torch backend). One
scenario shows each equivalence the layer promises, on the simulator:

- request A arrives in two uneven prefill chunks (≡ one chunk: both are checked against the
  one-stream evaluation), request B in one;
- A and B are decoded together, S = 1, then 2, then 8 tokens each (≡ each alone);
- A is released and C admitted on its pages with A's tokens in one chunk (reused pages ≡ a
  fresh layer)."""

from __future__ import annotations

import torch

from dsv4_core import TINY
from dsv4_core.golden import BenchOutcome, GoldenOutcome

MODULE = "attention"
# kind -> (layer id in TINY, A's two prefill chunks, B's prefill, max_context); HCA needs more
# than 128 positions before a window closes
_KINDS = {"swa": (0, (12, 9), 15, 64), "csa": (1, (17, 13), 23, 64), "hca": (2, (70, 61), 129, 256)}
_DECODE = (1, 2, 8)
GOLDEN_CASES = [(f"tiny-{k}-serving", "small") for k in _KINDS]
BENCH_CASES: list[str] = []  # the modules' own bench cases time every kernel the layer runs


def _serving(kind: str, backend: str):
    """The scenario on `backend`. Returns the weights and, per request, (tokens, outputs in
    token order, the CSA indexer's picks in token order or None)."""
    from . import AttentionLayer
    from .testing import make_tokens, make_weights

    lid, (a1, a2), nb, ctx = _KINDS[kind]
    dec = sum(_DECODE)
    w = make_weights(TINY, lid, seed=lid)
    xa, xb = make_tokens(TINY, a1 + a2 + dec, seed=10 + lid), make_tokens(TINY, nb + dec, seed=20 + lid)
    layer = AttentionLayer(TINY, lid, w, max_requests=2, max_context=ctx, backend=backend, cmp_block=16)
    ya, yb, pa, pb = [], [], [], []

    def keep(ys, ps, y, picks):
        ys.append(y)
        ps.append(picks)

    keep(ya, pa, layer.prefill(0, xa[:a1]), layer.last_picks)
    keep(yb, pb, layer.prefill(1, xb[:nb]), layer.last_picks)
    keep(ya, pa, layer.prefill(0, xa[a1:a1 + a2]), layer.last_picks)
    at_a, at_b = a1 + a2, nb
    for s in _DECODE:
        y = layer.decode([0, 1], torch.stack([xa[at_a:at_a + s], xb[at_b:at_b + s]]))
        picks = layer.last_picks
        keep(ya, pa, y[0], None if picks is None else picks[:s])
        keep(yb, pb, y[1], None if picks is None else picks[s:])
        at_a, at_b = at_a + s, at_b + s
    layer.release(0)
    yc = layer.prefill(2, xa)
    pc = layer.last_picks

    def cat(ps):
        return None if ps[0] is None else torch.cat(ps)

    return w, {"A (chunks, batched decode)": (xa, torch.cat(ya), cat(pa)),
               "B (batched decode)": (xb, torch.cat(yb), cat(pb)),
               "C (A's tokens on reused pages)": (xa, yc, pc)}


def golden(name: str) -> GoldenOutcome:
    from .testing import check_against_exact

    kind = name.split("-")[1]
    w, got = _serving(kind, "sim")
    _, ref = _serving(kind, "torch")
    lid, (a1, a2), nb, _ = _KINDS[kind]
    reports = []
    for who, (x, y, picks) in got.items():
        reports += check_against_exact(TINY, lid, w, x, y, ref[who][1], picks=picks, ref_picks=ref[who][2],
                                       name=f"y {who}")
    note = (f"{kind}: A in chunks {a1}+{a2}, B {nb}, decoded together S={'/'.join(map(str, _DECODE))}, "
            "A's pages reused by C")
    return GoldenOutcome(MODULE, name, reports, None, note=note)


def bench(name: str) -> BenchOutcome:  # pragma: no cover - no bench cases
    raise KeyError(f"{MODULE} has no bench cases, got {name!r}")
