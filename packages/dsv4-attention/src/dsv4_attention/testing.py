"""Seeded test inputs for the layer (not part of the runtime API): checkpoint-named random
weights of a layer, token streams, and the comparison against the fp64 evaluation."""

from __future__ import annotations

import torch

from dsv4_core import AttentionConfig
from dsv4_core.compare import Report, compare, compare_topk

from .reference import layer_exact
from .weights import expected_weights, load_weights


def make_weights(cfg: AttentionConfig, layer_id: int, seed: int = 0, *, prefix: str = "") -> dict[str, torch.Tensor]:
    """Random weights of a layer under their checkpoint names (`prefix` e.g. "layers.3.attn."),
    scaled so activations stay O(1): matrices bf16 with `.weight`, norms fp32 (as a checkpoint
    keeps them), ape and attn_sink fp32."""
    g = torch.Generator().manual_seed(seed)
    out = {}
    for name, (shape, role) in expected_weights(cfg, cfg.compress_ratio(layer_id)).items():
        if role == "matrix":
            t = (torch.randn(*shape, generator=g) * shape[-1] ** -0.5).bfloat16()
            out[f"{prefix}{name}.weight"] = t
        elif role == "norm":
            out[f"{prefix}{name}.weight"] = 1 + 0.1 * torch.randn(*shape, generator=g)
        elif name == "attn_sink":
            out[f"{prefix}{name}"] = torch.randn(*shape, generator=g)
        else:  # ape
            out[f"{prefix}{name}"] = 0.5 * torch.randn(*shape, generator=g)
    return out


def make_tokens(cfg: AttentionConfig, n: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed + 1_000_003)
    return torch.randn(n, cfg.hidden_size, generator=g).bfloat16()


# the composed torch layer against fp64: its bf16 rounding points stay within this share of
# the output's scale (a wrong position, sink, window or entry moves outputs by O(1))
TORCH_REL_BOUND = 2.0 ** -6
# CSA picks may differ from the fp64 top-k only among entries whose fp64 scores lie within
# this share of the largest score of the call (bf16 queries and keys move scores by ~2^-8)
TIE_REL = 2.0 ** -5


def check_against_exact(cfg: AttentionConfig, layer_id: int, weights, x: torch.Tensor, y: torch.Tensor,
                        y_ref: torch.Tensor | None = None, *, picks: torch.Tensor | None = None,
                        ref_picks: torch.Tensor | None = None, name: str = "y") -> list[Report]:
    """The layer's output y [N, hidden] (one request, positions 0 … N−1) against the fp64
    evaluation. With y_ref (the layer on the torch backend, the storage-dtype evaluation) the
    bound is the golden rule, 2 × y_ref's error; without it (checking the torch layer itself)
    it is `TORCH_REL_BOUND` × max|exact|. CSA: `picks` [N, index_topk] (the layer's
    `last_picks` of each call, in token order) are compared with the fp64 top-k tie-aware,
    and the fp64 evaluation then attends the layer's picks, so every token's value is
    checked; y_ref's error is taken against the evaluation of its own picks `ref_picks`."""
    w = load_weights(weights, cfg, layer_id, cfg.compress_ratio(layer_id))
    reports = []
    csa = cfg.compress_ratio(layer_id) == 4
    if csa and picks is None:
        raise ValueError("a CSA layer's check needs the layer's picks (AttentionLayer.last_picks)")
    # one evaluation gives both: the output over the layer's picks and the fp64 top-k / scores
    exact, fp64_picks, scores = layer_exact(cfg, layer_id, w, x, picks=picks)
    if csa:
        finite = scores[torch.isfinite(scores)]
        tol = TIE_REL * float(finite.abs().max()) if finite.numel() else 0.0
        reports.append(compare_topk(picks, fp64_picks, scores, name="picks", tie_tol=tol))
    if y_ref is None:
        reports.append(compare(y, exact, exact, name=name, mult=0.0, floor=TORCH_REL_BOUND * float(exact.abs().max())))
    else:
        ref_exact = exact if ref_picks is None else layer_exact(cfg, layer_id, w, x, picks=ref_picks)[0]
        # a reference whose error against `exact` is y_ref's error against its own evaluation
        reports.append(compare(y, exact, exact + (y_ref.double() - ref_exact), name=name))
    return reports
