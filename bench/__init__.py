"""Hookgate's benchmark harness: ``python -m bench [--quick] [SCENARIO…]``.

Every figure the issues name comes out of this one harness, measured against an nginx
``return 202`` ceiling in the same run so that numbers from different machines compare as ratios.
A scenario starts what it needs in a temporary directory, warms up, measures for a bounded time
and either returns rows of figures or raises :class:`bench.errors.BenchFailure` — a run with
errors is never reported as a result.
"""
