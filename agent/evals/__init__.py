"""Evals as a product feature: suites of tickets with expectations, run end to end against the
sandbox k times (pass^k), reported, compared with an earlier report, and grown from human
corrections (`docs/evals.md`)."""
