"""Work counted in Python function calls: a cost that is the same on every machine.

"This input is handled fast" is a claim about how much work it takes, not about a clock: a slow or
busy machine takes longer for the same work, and a wall-clock limit in a test then passes on one
machine and fails on another. Counting the Python-level calls a function makes (sys.setprofile)
measures the work itself: the same code on the same input makes the same calls everywhere. A
quadratic parser or a Python loop over every combination shows up as a count far above the bound.
Numeric work done inside numpy or numba is one call, which is what the vectorised paths promise.
"""

from __future__ import annotations

import sys
from typing import Any, Callable


def python_calls(fn: Callable[..., Any], *args, **kwargs) -> tuple[Any, int]:
    """Run `fn(*args, **kwargs)`; (its result or the exception it raised, Python calls made)."""
    count = 0

    def profile(frame, event, arg):
        nonlocal count
        if event == "call":
            count += 1

    previous = sys.getprofile()
    sys.setprofile(profile)
    try:
        result = fn(*args, **kwargs)
    except Exception as exc:  # noqa: BLE001 - the caller asserts on what was raised
        result = exc
    finally:
        sys.setprofile(previous)
    return result, count
