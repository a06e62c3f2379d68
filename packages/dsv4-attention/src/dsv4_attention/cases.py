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
GOLDEN_CASES = [(f"tiny-{k}-prefill-decode", "small") for k in _KINDS]
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


def golden(name: str) -> GoldenOutcome:
    from .testing import check_against_exact

    kind = name.split("-")[1]
    w, x, y, picks = _feed(kind, "sim")
    _, _, y_ref, ref_picks = _feed(kind, "torch")
    reports = check_against_exact(TINY, _KINDS[kind][0], w, x, y, y_ref, picks=picks, ref_picks=ref_picks)
    note = f"{kind}: prefill {_KINDS[kind][1]} + decode S={'/'.join(map(str, _DECODE))}"
    return GoldenOutcome(MODULE, name, reports, None, note=note)


def bench(name: str) -> BenchOutcome:  # pragma: no cover - no bench cases
    raise KeyError(f"{MODULE} has no bench cases, got {name!r}")
