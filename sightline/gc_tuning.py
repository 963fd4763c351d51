"""Garbage-collector settings of a serving process (the WSGI app, and benchmarks that mimic it).

A request allocates tens of thousands of objects that reference counting frees; the cyclic
collector's defaults (700, 10, 10) still run a full collection every few requests, and a full
collection walks every long-lived object. Measured with bench/worklist.py: full collections added
30-80 ms to about one worklist request in ten.
"""

import gc

# Young collections every 7,000 net allocations, middle every 20 of those, and a full collection
# considered only after 100 middle ones (still subject to CPython's own 25%-growth rule).
THRESHOLDS = (7_000, 20, 100)


def serving_gc_setup() -> None:
    """Move everything loaded so far out of the collector's view, and collect less often."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(*THRESHOLDS)
