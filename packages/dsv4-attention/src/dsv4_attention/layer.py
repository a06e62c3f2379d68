"""`AttentionLayer`: one DeepSeek-V4 attention layer over paged caches it owns, composed
from the module packages' public functions.

    layer = AttentionLayer(config, layer_id, weights, max_requests=8, max_context=4096)
    y = layer.prefill(request, x)     # x [T, hidden] bf16 -> [T, hidden] bf16
    y = layer.decode(requests, x)     # x [B, S, hidden] bf16 -> [B, S, hidden] bf16
    layer.release(request)

The order of one step follows the official model: projections (`qkv_proj_rope`); the
compressor (and for CSA the indexer's key compressor) writes the step's closing windows;
the indexer picks (CSA); sparse attention reads the ring page, the step's fresh kv and the
compressed cache; then the ring write-back of the step's kv."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch

from dsv4_core import AttentionConfig, resolve_backend
from dsv4_core.config import kind_for_ratio

from . import modules as M
from .pages import PagePool, Request
from .weights import load_weights


def _ceil(a: int, b: int) -> int:
    return -(-a // b)


class _CompressedCaches:
    """One compressor's caches (state + position tags + entries) with their page pools.
    `keep` is how many positions back a future window can still read from the state."""

    def __init__(self, name: str, make_caches, cfg, *, ratio: int, max_requests: int, max_context: int,
                 cmp_block: int, device):
        self.ratio, self.blk = ratio, cmp_block
        self.page = 2 * ratio if ratio == 4 else ratio  # state rows per page
        self.keep = ratio if ratio == 4 else 0  # the overlapping window reads the previous window's half
        self.max_state_pages = _ceil(max_context, self.page)
        self.max_cmp_pages = _ceil(_ceil(max_context, ratio), cmp_block)
        per_request_state = _ceil(2 * ratio + self.keep, self.page) + 1
        self.state_pool = PagePool(f"{name} state pages", max_requests * per_request_state)
        self.cmp_pool = PagePool(f"{name} compressed pages", max_requests * self.max_cmp_pages)
        self.state, self.state_pos, self.cmp = make_caches(
            cfg, state_blocks=self.state_pool.size, state_page=self.page, cmp_blocks=self.cmp_pool.size,
            cmp_block=cmp_block, device=device)

    def keep_from(self, length: int) -> int:
        """The first position a window closing after `length` positions may read from the state."""
        return max(0, (length // self.ratio) * self.ratio - self.keep)

    def plan(self, state_pages: dict, cmp_pages: list, start: int, end: int):
        """Pages (taken from the pools, recorded in the request's dicts) for the positions
        [start, end) that later calls will read, and the compressed-cache pages of the
        entries closing in [start, end). Returns (new state pages, new cmp pages)."""
        first = max(start, self.keep_from(end))
        want = sorted({p // self.page for p in range(first, end)} - set(state_pages))
        need_cmp = _ceil(end // self.ratio, self.blk) - len(cmp_pages)
        new_state = self.state_pool.take(len(want)) if want else []
        try:
            new_cmp = self.cmp_pool.take(need_cmp) if need_cmp > 0 else []
        except Exception:
            self.state_pool.give(new_state)
            raise
        state_pages.update(zip(want, new_state))
        cmp_pages.extend(new_cmp)
        return new_state, new_cmp

    def trim(self, state_pages: dict, length: int) -> None:
        """Give back the state pages no future window reads (their tags are cleared first, so
        a reused page can never pass for another request's rows)."""
        first = self.keep_from(length)
        old = [i for i in state_pages if (i + 1) * self.page <= first]
        self.free_state([state_pages.pop(i) for i in old])

    def free_state(self, pages: list) -> None:
        if pages:
            self.state_pos[torch.tensor(pages, dtype=torch.long, device=self.state_pos.device)] = -1
            self.state_pool.give(pages)

    def state_table(self, reqs: Sequence[dict]) -> torch.Tensor:
        t = torch.full((len(reqs), self.max_state_pages), -1, dtype=torch.int32)
        for b, pages in enumerate(reqs):
            for i, p in pages.items():
                t[b, i] = p
        return t

    def cmp_table(self, reqs: Sequence[list]) -> torch.Tensor:
        t = torch.full((len(reqs), self.max_cmp_pages), -1, dtype=torch.int32)
        for b, pages in enumerate(reqs):
            t[b, :len(pages)] = torch.tensor(pages, dtype=torch.int32)
        return t

    def slot_mapping(self, pages: list, positions: range) -> list[int]:
        """The flat cmp row each position's closing window writes (−1: no window closes)."""
        out = []
        for p in positions:
            if (p + 1) % self.ratio:
                out.append(-1)
            else:
                c = (p + 1) // self.ratio - 1
                out.append(pages[c // self.blk] * self.blk + c % self.blk)
        return out


class AttentionLayer:
    """One attention layer (its kind from `config.compress_ratios[layer_id]`: 0 SWA, 4 CSA
    with the indexer, 128 HCA) owning every paged cache of its kind for up to
    `max_requests` requests of up to `max_context` positions each.

    weights: checkpoint names relative to the layer's attention module (with or without a
    `layers.{i}.attn.` prefix and a `.weight` suffix), bf16 / fp8 e4m3 + block scale
    (dequantised at load), norms bf16 or fp32 (`dsv4_attention.weights`). cmp_block: entries
    per compressed-cache page. backend: "npu" / "sim" / "torch" / "auto", for every module.
    validate: passed to every module call that takes it. The layer builds every block table,
    slot mapping and position itself from its own bookkeeping, so a serving engine may set
    False: those modules then read nothing back from the device (`qkv_proj_rope` and the ring
    write-back still check their positions). The layer's own checks of its arguments run
    either way."""

    def __init__(self, config: AttentionConfig, layer_id: int, weights: Mapping[str, torch.Tensor], *,
                 max_requests: int, max_context: int, backend: str = "auto", cmp_block: int = 64,
                 device: torch.device | str = "cpu", validate: bool = True):
        if not isinstance(config, AttentionConfig):
            raise TypeError(f"config must be a dsv4_core.AttentionConfig, got {type(config).__name__}")
        for name, v in (("max_requests", max_requests), ("max_context", max_context), ("cmp_block", cmp_block)):
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                raise ValueError(f"{name} must be a positive int, got {v!r}")
        if max_context > config.max_position_embeddings:
            raise ValueError(f"max_context ({max_context}) exceeds the config's max_position_embeddings "
                             f"({config.max_position_embeddings})")
        resolve_backend(backend)  # refuse an unknown or unavailable backend now
        if not isinstance(validate, bool):
            raise TypeError(f"validate must be a bool, got {validate!r}")
        self.config, self.layer_id, self.backend, self.validate = config, layer_id, backend, validate
        self.ratio = config.compress_ratio(layer_id)
        self.kind = kind_for_ratio(self.ratio)
        self.max_requests, self.max_context, self.device = max_requests, max_context, torch.device(device)
        self.w = load_weights(weights, config, layer_id, self.ratio, device=self.device)
        self.wo_a = self.w["wo_a"].view(config.o_groups, config.o_lora_rank, config.group_in_dim)
        self.ring_pool = PagePool("ring pages", max_requests)
        self.kv_cache = torch.zeros(max_requests, config.window, config.head_dim, dtype=torch.bfloat16,
                                    device=self.device)
        self.cmp = self.idx = None
        if self.ratio:
            self.cmp = _CompressedCaches("compressor", M.compressor_make_caches(self.ratio), config, ratio=self.ratio,
                                         max_requests=max_requests, max_context=max_context, cmp_block=cmp_block,
                                         device=self.device)
        if self.kind == "csa":
            self.idx = _CompressedCaches("indexer", M.indexer_make_caches, config, ratio=4, max_requests=max_requests,
                                         max_context=max_context, cmp_block=cmp_block, device=self.device)
        self.requests: dict[int, Request] = {}
        # CSA: the indexer's picks of the last call ([tokens, index_topk] int32, token b·S + s),
        # kept for inspection and validation
        self.last_picks: torch.Tensor | None = None

    # ---- bookkeeping --------------------------------------------------------------------
    def _request(self, rid, *, admit: bool) -> Request:
        if isinstance(rid, torch.Tensor) and rid.numel() == 1 and not rid.is_floating_point():
            rid = int(rid)
        if not isinstance(rid, int) or isinstance(rid, bool):
            raise TypeError(f"request must be an int id, got {rid!r}")
        if rid in self.requests:
            return self.requests[rid]
        if not admit:
            raise KeyError(f"request {rid} is unknown to this layer (prefill it first; known: {sorted(self.requests)})")
        if len(self.requests) >= self.max_requests:
            raise RuntimeError(f"request {rid}: the layer already serves max_requests={self.max_requests} requests "
                               f"({sorted(self.requests)}); release one first")
        return Request(rid)

    def _check_x(self, x, shape: tuple, what: str) -> None:
        if not isinstance(x, torch.Tensor):
            raise TypeError(f"x must be a torch.Tensor, got {type(x).__name__}")
        if x.dtype != torch.bfloat16:
            raise TypeError(f"x must be bfloat16, got {x.dtype}")
        if x.dim() != len(shape) or any(s is not None and d != s for d, s in zip(x.shape, shape)) or 0 in x.shape:
            want = ", ".join("?" if s is None else str(s) for s in shape)
            raise ValueError(f"x must have shape [{want}] ({what}), got {list(x.shape)}")
        if x.device != self.device:
            raise ValueError(f"x must be on {self.device} (the layer's caches), got {x.device}")

    def _check_room(self, req: Request, tokens: int) -> None:
        if req.length + tokens > self.max_context:
            raise ValueError(f"request {req.rid}: {req.length} + {tokens} positions exceed max_context="
                             f"{self.max_context}")

    def release(self, request) -> None:
        """Give the request's pages back to the pools; the request id becomes unknown."""
        req = self._request(request, admit=False)
        self.ring_pool.give([req.ring])
        for caches, state, pages in ((self.cmp, req.state_pages, req.cmp_pages),
                                     (self.idx, req.idx_state_pages, req.idx_pages)):
            if caches is not None:
                caches.free_state(list(state.values()))
                caches.cmp_pool.give(pages)
        del self.requests[req.rid]

    def _allocate(self, reqs: list[Request], start: list[int], tokens: int) -> list:
        """Pages for this call (all or nothing); returns an undo list."""
        undo = []
        try:
            for req, s in zip(reqs, start):
                if req.ring < 0:
                    req.ring = self.ring_pool.take()[0]
                    undo.append(("ring", req))
                for caches, state, pages in ((self.cmp, req.state_pages, req.cmp_pages),
                                             (self.idx, req.idx_state_pages, req.idx_pages)):
                    if caches is not None:
                        new_state, new_cmp = caches.plan(state, pages, s, s + tokens)
                        undo.append((caches, state, pages, new_state, new_cmp))
        except Exception:
            self._undo(undo)
            raise
        return undo

    def _undo(self, undo: list) -> None:
        for u in reversed(undo):
            if u[0] == "ring":
                self.ring_pool.give([u[1].ring])
                u[1].ring = -1
                continue
            caches, state, pages, new_state, new_cmp = u
            for i in [i for i, p in state.items() if p in new_state]:
                del state[i]
            caches.free_state(new_state)
            del pages[len(pages) - len(new_cmp):]
            caches.cmp_pool.give(new_cmp)

    def _finish(self, reqs: list[Request], tokens: int) -> None:
        for req in reqs:
            req.length += tokens
            self.requests[req.rid] = req
            for caches, state in ((self.cmp, req.state_pages), (self.idx, req.idx_state_pages)):
                if caches is not None:
                    caches.trim(state, req.length)

    # ---- the two calls ------------------------------------------------------------------
    def prefill(self, request, x: torch.Tensor) -> torch.Tensor:
        """A chunk of T tokens of one request, continuing where it stands; returns [T, hidden] bf16."""
        cfg = self.config
        req = self._request(request, admit=True)
        self._check_x(x, (None, cfg.hidden_size), "[T, hidden]: one request's chunk")
        T, start = x.shape[0], req.length
        self._check_room(req, T)
        undo = self._allocate([req], [start], T)
        try:
            y = M.prefill_step(self, req, x, start)
        except Exception:
            self._undo(undo)
            raise
        self._finish([req], T)
        return y

    def decode(self, requests, x: torch.Tensor) -> torch.Tensor:
        """S new tokens for each of B known requests; returns [B, S, hidden] bf16."""
        cfg = self.config
        if isinstance(requests, torch.Tensor):
            if requests.dim() != 1 or requests.is_floating_point():
                raise TypeError(f"requests must be B ints (a list or a 1-D int tensor), got {requests.dtype} "
                                f"shape {list(requests.shape)}")
            requests = requests.tolist()
        if not isinstance(requests, (list, tuple)) or not requests:
            raise TypeError(f"requests must be a non-empty list of request ids, got {requests!r}")
        if len(requests) > self.max_requests:
            raise ValueError(f"requests: {len(requests)} requests exceed max_requests={self.max_requests}")
        reqs = [self._request(r, admit=False) for r in requests]
        if len({r.rid for r in reqs}) != len(reqs):
            raise ValueError(f"requests must be distinct, got {list(requests)}")
        self._check_x(x, (len(reqs), None, cfg.hidden_size), "[B, S, hidden]")
        S = x.shape[1]
        for req in reqs:
            self._check_room(req, S)
        start = [r.length for r in reqs]
        undo = self._allocate(reqs, start, S)
        try:
            y = M.decode_step(self, reqs, x, start)
        except Exception:
            self._undo(undo)
            raise
        self._finish(reqs, S)
        return y
