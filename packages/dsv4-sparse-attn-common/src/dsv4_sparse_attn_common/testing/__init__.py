"""Scenario kits of the sparse-attention packages — seeded inputs, the decode scenario record,
the golden check and its perturbations, the cost-model timing run, `DecodeKit` (a decode
package's whole `cases.py` protocol) — and, in `suites`, the pytest suites the packages'
tests share (API contract, kernel-vs-golden on the simulator).

Used by the packages' `cases.py` (tests, `nox -s golden`, `nox -s bench`) and tests; not
part of the runtime API (nothing outside `testing` imports it)."""

from .golden import (
    PERTURBATIONS,
    DecodeKit,
    check_decode_case,
    check_golden,
    run_resolved,
    semantic_exact,
    serving_bench,
    time_case,
)
from .inputs import DecodeCase, decode_inputs, make_attention_inputs, seeded_starts, serving_decode_cases

try:  # the suites assert inside this package: let pytest explain their failures
    import pytest

    pytest.register_assert_rewrite(f"{__name__}.suites")
except ImportError:  # pragma: no cover - pytest is a test extra
    pass

__all__ = [
    "PERTURBATIONS", "DecodeCase", "DecodeKit", "check_decode_case", "check_golden", "decode_inputs",
    "make_attention_inputs", "run_resolved", "seeded_starts", "semantic_exact", "serving_bench",
    "serving_decode_cases", "time_case",
]
