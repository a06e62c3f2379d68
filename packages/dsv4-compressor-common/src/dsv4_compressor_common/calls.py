"""The public call of a compressor, either ratio, decode or prefill: validation (every error
names the argument, and is raised before anything is written), the caches' allocation, and
the step (`step.run_step`).

The module packages pin the ratio and the kind: `public_functions` builds their public
`compressor_ratio4`, `prefill_compressor_ratio128`, … and `make_caches` with the signatures
and docstrings of that ratio."""

from __future__ import annotations

import textwrap
from typing import Callable, NamedTuple

import torch

from dsv4_core import AttentionConfig, resolve_backend
from dsv4_core.checks import check_same_device, check_tensor

from .pooling import coff
from .step import run_step


class CompressorOut(NamedTuple):
    kv: torch.Tensor  # [B, S, head_dim] bf16: the entry each closing token produced, 0 elsewhere
    closes: torch.Tensor  # [B, S] bool: the token closes a window


def validate_weights(cfg: AttentionConfig, ratio: int, wkv, wgate, ape, norm_weight, *,
                     head_dim: int | None = None) -> None:
    if not isinstance(cfg, AttentionConfig):
        raise TypeError(f"config must be a dsv4_core.AttentionConfig, got {type(cfg).__name__}")
    HD = head_dim or cfg.head_dim
    C, D = coff(ratio) * HD, cfg.hidden_size
    other = 4 if ratio == 128 else 128
    hint = (f" (a ratio-{ratio} compressor has {C}-wide projections; [{coff(other) * HD}, ...] "
            f"weights belong to a ratio-{other} compressor)")
    for name, w in (("wkv", wkv), ("wgate", wgate)):
        check_tensor(name, w, dtype=torch.bfloat16)
        if tuple(w.shape) != (C, D):
            raise ValueError(f"{name} must have shape [{C}, {D}], got {list(w.shape)}" + hint)
    check_tensor("ape", ape, dtype=torch.float32)
    if tuple(ape.shape) != (ratio, C):
        raise ValueError(f"ape must have shape [{ratio}, {C}], got {list(ape.shape)}" +
                         (f" (wrong compress ratio: this is the ratio-{ratio} compressor)" if ape.dim() == 2 else ""))
    check_tensor("norm_weight", norm_weight, shape=(HD,), dtype=(torch.bfloat16, torch.float32))


CMP_NAMES = ("cmp_kv", "cmp_slot_mapping")


def validate_caches(cfg: AttentionConfig, ratio: int, state, state_pos, cmp_kv, *, head_dim: int | None = None,
                    names: tuple[str, str] = CMP_NAMES) -> None:
    HD = head_dim or cfg.head_dim
    check_tensor("state", state, shape=(None, None, 2 * coff(ratio) * HD), dtype=torch.float32)
    check_tensor("state_pos", state_pos, shape=tuple(state.shape[:2]), dtype=torch.int32)
    check_tensor(names[0], cmp_kv, shape=(None, None, HD), dtype=torch.bfloat16)
    for name, t in (("state", state), ("state_pos", state_pos), (names[0], cmp_kv)):
        if not t.is_contiguous():
            raise ValueError(f"{name} must be contiguous (it is updated in place)")
    if state.shape[1] <= 0:
        raise ValueError(f"state must have a positive page size, got shape {list(state.shape)}")


def start_position(start_pos) -> int:
    """A prefill chunk's first position as an int: an int, or a one-element integer tensor
    (read once on the host: a prefill call's start is host metadata)."""
    if isinstance(start_pos, torch.Tensor):
        if start_pos.numel() != 1 or start_pos.is_floating_point():
            raise TypeError(f"start_pos must be an int (or a one-element integer tensor), got {start_pos!r}")
        start_pos = int(start_pos.item())
    if not isinstance(start_pos, int) or isinstance(start_pos, bool):
        raise TypeError(f"start_pos must be an int, got {type(start_pos).__name__}")
    return start_pos


def make_caches(config: AttentionConfig, *, ratio: int, state_blocks: int, state_page: int, cmp_blocks: int,
                cmp_block: int, device: torch.device | str = "cpu",
                head_dim: int | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(state, state_pos, cmp_kv) for a ratio-`ratio` compressor: state rows uninitialised
    (never read before written), position tags -1 (no position), cmp_kv zero."""
    HD = head_dim or config.head_dim
    state = torch.empty(state_blocks, state_page, 2 * coff(ratio) * HD, dtype=torch.float32, device=device)
    state_pos = torch.full((state_blocks, state_page), -1, dtype=torch.int32, device=device)
    cmp_kv = torch.zeros(cmp_blocks, cmp_block, HD, dtype=torch.bfloat16, device=device)
    return state, state_pos, cmp_kv


def decode_call(ratio, x, wkv, wgate, ape, norm_weight, start_pos, state, state_pos, state_block_table, cmp_kv,
                cmp_slot_mapping, *, config, backend, head_dim: int | None = None, rotate: bool = False,
                names: tuple[str, str] = CMP_NAMES, validate: bool = True) -> CompressorOut:
    """The decode entry point for either ratio: B requests × S tokens, x [B, S, D],
    start_pos [B], state_block_table [B, max_pages], cmp_slot_mapping [B, S]. `head_dim`: the
    entries' width (default the config's); `rotate=True`: the Hadamard after RoPE (the
    indexer's keys); `names`: the caller's names of cmp_kv and cmp_slot_mapping (errors use them);
    `validate=False` (kernel backends): skip the value checks that read indices, tables and
    tags back (shape and dtype checks stay)."""
    cfg = config
    validate_weights(cfg, ratio, wkv, wgate, ape, norm_weight, head_dim=head_dim)
    dims: dict = {}
    check_tensor("x", x, shape=("B", "S", cfg.hidden_size), dtype=torch.bfloat16, dims=dims)
    if x.shape[0] == 0 or x.shape[1] == 0:
        raise ValueError(f"x must hold at least one request and one token, got shape {list(x.shape)}")
    check_tensor("start_pos", start_pos, shape=("B",), dtype=(torch.int32, torch.int64), dims=dims)
    validate_caches(cfg, ratio, state, state_pos, cmp_kv, head_dim=head_dim, names=names)
    check_tensor("state_block_table", state_block_table, shape=("B", None), dtype=(torch.int32, torch.int64), dims=dims)
    check_tensor(names[1], cmp_slot_mapping, shape=("B", "S"), dtype=(torch.int32, torch.int64), dims=dims)
    check_same_device(x=x, wkv=wkv, wgate=wgate, ape=ape, norm_weight=norm_weight, state=state, state_pos=state_pos,
                      **{names[0]: cmp_kv})
    be = resolve_backend(backend)
    B, S = x.shape[:2]
    out, closes = run_step(cfg, ratio, be, x.reshape(B * S, -1), wkv, wgate, ape, norm_weight, start_pos, S, state,
                           state_pos, state_block_table, cmp_kv, cmp_slot_mapping, head_dim=head_dim, rotate=rotate,
                           names=names, validate=validate)
    return CompressorOut(out.reshape(B, S, -1), closes.reshape(B, S))


def prefill_call(ratio, x, wkv, wgate, ape, norm_weight, start_pos, state, state_pos, state_block_table, cmp_kv,
                 cmp_slot_mapping, *, config, backend, head_dim: int | None = None, rotate: bool = False,
                 names: tuple[str, str] = CMP_NAMES, validate: bool = True) -> CompressorOut:
    """The prefill entry point for either ratio: one request, x [T, D] from `start_pos` (any
    position; windows straddling it read the stored state), state_block_table [max_pages],
    cmp_slot_mapping [T]. Same math, paging and kernels as the decode call with B = 1;
    `head_dim`, `rotate`, `names`, `validate` as `decode_call` (the chunk's start is host
    metadata: an int)."""
    cfg = config
    validate_weights(cfg, ratio, wkv, wgate, ape, norm_weight, head_dim=head_dim)
    dims: dict = {}
    check_tensor("x", x, shape=("T", cfg.hidden_size), dtype=torch.bfloat16, dims=dims)
    if x.shape[0] == 0:
        raise ValueError("x must hold at least one token, got shape [0, D]")
    start_pos = start_position(start_pos)
    validate_caches(cfg, ratio, state, state_pos, cmp_kv, head_dim=head_dim, names=names)
    check_tensor("state_block_table", state_block_table, shape=(None,), dtype=(torch.int32, torch.int64))
    check_tensor(names[1], cmp_slot_mapping, shape=("T",), dtype=(torch.int32, torch.int64), dims=dims)
    check_same_device(x=x, wkv=wkv, wgate=wgate, ape=ape, norm_weight=norm_weight, state=state, state_pos=state_pos,
                      **{names[0]: cmp_kv})
    be = resolve_backend(backend)
    start = torch.tensor([start_pos], device=x.device)
    out, closes = run_step(cfg, ratio, be, x, wkv, wgate, ape, norm_weight, start, x.shape[0],
                           state, state_pos, state_block_table.reshape(1, -1), cmp_kv, cmp_slot_mapping.reshape(1, -1),
                           head_dim=head_dim, rotate=rotate, names=names, validate=validate, first_pos=start_pos)
    return CompressorOut(out, closes)


# ---- the module packages' public functions, one ratio each -----------------------------------
_ARGS_DOC = ("x {x} bf16; wkv, wgate [{C}, D] bf16 (checkpoint [out, in]); ape [{R}, {C}] fp32; norm_weight [{d}] "
             "bf16/fp32; start_pos {start}; state [num_state_blocks, page, {C2}] fp32 (row = [kv_proj {C} | score + ape "
             "{C}]); state_pos [num_state_blocks, page] int32; state_block_table {table} int32/int64 (−1: no page); "
             "cmp_kv [num_blocks, block_size, {d}] bf16; cmp_slot_mapping {slots} int32/int64 (flat cmp_kv row of the "
             "entry a closing token produces, −1: do not write); backend \"npu\" / \"sim\" / \"torch\" / \"auto\"; "
             "validate=False: the kernel backends skip the value checks that read indices back (an out-of-range "
             "or −1 entry then selects nothing). "
             "Widths at head_dim {d} (every preset). Returns CompressorOut(kv {out} bf16: the entries of closing "
             "tokens, 0 elsewhere; closes {closes} bool).")


def _named(fn: Callable, name: str, module: str, doc: str) -> Callable:
    fn.__name__ = fn.__qualname__ = name
    fn.__module__, fn.__doc__ = module, doc
    return fn


def _doc(ratio: int, head: str, **shapes: str) -> str:
    C = coff(ratio) * 512
    args = _ARGS_DOC.format(R=ratio, C=C, C2=2 * C, d=512, **shapes)
    return textwrap.fill(head, 92) + "\n\n" + textwrap.fill(args, 92, initial_indent="    ", subsequent_indent="    ")


def public_functions(module: str, name: str, ratio: int, kind: str) -> tuple[Callable[..., CompressorOut], Callable]:
    """The public functions of a compressor module package (`module`, its `__name__`):
    `name`, the ratio-`ratio` compressor of kind "decode" (B requests × S tokens,
    `decode_call`) or "prefill" (one request's chunk, `prefill_call`), and its `make_caches`;
    with the signatures and docstrings of that ratio and kind."""
    return _compressor_function(ratio, kind, name=name, module=module), _caches_function(ratio, module=module)


def _compressor_function(ratio: int, kind: str, *, name: str, module: str) -> Callable[..., CompressorOut]:
    if kind not in ("decode", "prefill"):
        raise ValueError(f"kind must be 'decode' or 'prefill', got {kind!r}")
    call = decode_call if kind == "decode" else prefill_call

    def compressor(x: torch.Tensor, wkv: torch.Tensor, wgate: torch.Tensor, ape: torch.Tensor,
                   norm_weight: torch.Tensor, start_pos: torch.Tensor, state: torch.Tensor, state_pos: torch.Tensor,
                   state_block_table: torch.Tensor, cmp_kv: torch.Tensor, cmp_slot_mapping: torch.Tensor, *,
                   config: AttentionConfig, backend: str = "auto", validate: bool = True) -> CompressorOut:
        return call(ratio, x, wkv, wgate, ape, norm_weight, start_pos, state, state_pos, state_block_table, cmp_kv,
                    cmp_slot_mapping, config=config, backend=backend, validate=validate)

    if kind == "decode":
        head = (f"One decode step of the ratio-{ratio} compressor for B requests × S new consecutive tokens "
                "each; updates state, state_pos, cmp_kv in place.")
        doc = _doc(ratio, head, x="[B, S, D]", start="[B] int (each request's first new position)",
                   table="[B, max_pages]", slots="[B, S]", out="[B, S, 512]", closes="[B, S]")
    else:
        compressor.__annotations__["start_pos"] = "int"
        head = (f"One prefill chunk of the ratio-{ratio} compressor (one request, T tokens from any start "
                "position); updates state, state_pos, cmp_kv in place.")
        doc = _doc(ratio, head, x="[T, D]", start="int (or a one-element integer tensor): the chunk's first position",
                   table="[max_pages]", slots="[T]", out="[T, 512]", closes="[T]")
    return _named(compressor, name, module, doc)


def _caches_function(ratio: int, *, module: str) -> Callable[..., tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
    def caches(config: AttentionConfig, *, state_blocks: int, state_page: int, cmp_blocks: int, cmp_block: int,
               device: torch.device | str = "cpu") -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        return make_caches(config, ratio=ratio, state_blocks=state_blocks, state_page=state_page,
                           cmp_blocks=cmp_blocks, cmp_block=cmp_block, device=device)

    C2 = 2 * coff(ratio) * 512
    doc = (f"(state [state_blocks, state_page, {C2}] fp32 uninitialised, state_pos [state_blocks, state_page] int32 "
           f"filled with -1, cmp_kv [cmp_blocks, cmp_block, 512] bf16 zero) for the ratio-{ratio} compressor "
           "(widths at head_dim 512).")
    return _named(caches, "make_caches", module, doc)
