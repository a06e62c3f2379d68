"""Test and tool support of the compressor family — not part of the runtime API (nothing
under `dsv4_compressor_common` outside this package imports it):

- `scenarios`: seeded inputs of one call (`Case`, `make_inputs`, `make_weights`, …);
- `golden`: the golden check and the cost-model bench of a scenario, and `CaseSet`, the
  `cases` module protocol of a module package over its scenarios;
- `streams`: one request's tokens fed in chunks, for the equivalence tests (`PLANS`);
- `official`: the official model's decode loop, an independent formulation;
- `api_suites`, `reference_suites`, `kernel_suites`: the test suites every module package
  binds to its public function (they need pytest).
"""

from .golden import CaseSet, bench, golden, traffic
from .scenarios import (
    CALL_ARGS,
    Case,
    call_args,
    checked_meta,
    clone_inputs,
    make_inputs,
    make_weights,
    plan_of,
    prefill_inputs,
)
from .streams import PLANS, Stream, equivalence_reports, exact_stream, make_stream, run_stream, stream_reports

__all__ = ["CALL_ARGS", "PLANS", "Case", "CaseSet", "Stream", "bench", "call_args", "checked_meta", "clone_inputs",
           "equivalence_reports", "exact_stream", "golden", "make_inputs", "make_stream", "make_weights", "plan_of",
           "prefill_inputs", "run_stream", "stream_reports", "traffic"]
