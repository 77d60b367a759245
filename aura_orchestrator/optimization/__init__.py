"""Parameter optimisation and cost estimation (issue 5).

types.py      constraints, drafts, suggestions, safe ranges, the 422 error
history.py    what telemetry says about an operation type (percentiles, error rate)
fitting.py    every constraint applied to a draft: tokens, cost, latency
rules.py      a draft from the preset and the priority
learned.py    a draft from the observed history
assisted.py   a draft asked from an LLM through the pipeline, clamped, with fallback
suggest.py    the entry point: rules or telemetry, then optionally the LLM
explain.py    plain-language effect of each changed parameter (template or LLM)
estimate.py   tokens, worst-case and typical cost, budget admission (read-only)
selectors.py  the admin's current suggestion for a preset
services.py   apply a suggestion to a preset, recorded in the audit log
"""
