"""The kernels of every built-in function and operator of the strategy language, gathered.

One kernel per language name, `<name>_nb(*args, out)`: float64 1-D series and int64 (windows) or
float64 (k, value) scalars in, the result written into the preallocated float64 array `out` of the
same length (never aliasing an input), None returned. Number series carry NaN for missing and
warm-up values; boolean series are 1.0/0.0 and never NaN. Arithmetic propagates NaN, x/0 is NaN,
every comparison with NaN is false (`!=` included), min/max/clip propagate NaN.

The kernels live by what they hold: autostrat.tape.kernels_elementwise (operators, math, change,
events), autostrat.tape.kernels_rolling (rolling primitives, averages, statistics) and
autostrat.tape.kernels_indicators (oscillators, volatility, volume, trend). This module gathers
them in `KERNELS`, says what each parameter is (`PARAM_KINDS`) and compiles them all
(`warm_up_all`). docs/builtins.md defines every function.

Kernels call jitted functions of other modules; numba's on-disk cache does not notice edits to
them, so NUMBA_CACHE_DIR changes whenever the jitted sources do (autostrat._numba_cache keys it on
their hash). The dispatch loop calls these kernels through autostrat.tape.kernel_table, which
compiles each one the first time a tape uses it, for the argument types `PARAM_KINDS` gives.
"""

from __future__ import annotations

import inspect

import numpy as np
from numba.core.dispatcher import Dispatcher

from autostrat.tape import kernels_elementwise, kernels_indicators, kernels_rolling

# Every public `<name>_nb` of the three kernel modules, keyed by its language-level name ("sma", "add", "and").
KERNELS: dict[str, Dispatcher] = {
    name[: -len("_nb")]: obj
    for module in (kernels_elementwise, kernels_rolling, kernels_indicators)
    for name, obj in sorted(vars(module).items())
    if name.endswith("_nb") and not name.startswith("_") and isinstance(obj, Dispatcher)
    and obj.py_func.__module__ == module.__name__
}

# What each kernel parameter is, by its name; warm_up_all and the tests build calls from this.
PARAM_KINDS: dict[str, str] = {
    **dict.fromkeys(("x", "y", "lo", "hi", "high", "low", "close", "volume"), "number"),
    **dict.fromkeys(("c", "a", "b"), "boolean"),
    **dict.fromkeys(("n", "m", "fast", "slow", "signal"), "window"),
    **dict.fromkeys(("k", "value"), "float"),
    "out": "out",
}


def kernel_params(name: str) -> tuple[str, ...]:
    """Parameter names of the kernel for language name `name`, `out` excluded."""
    params = inspect.signature(KERNELS[name].py_func).parameters
    return tuple(p for p in params if p != "out")


def warm_up_all() -> None:
    """Compile every kernel (or load it from numba's cache) by calling it once on a tiny series.

    Windows are passed as int and k/value as float, the types the VM passes, so the compiled
    specialisations are the ones used later.
    """
    bars = 8
    price = np.linspace(10.0, 11.0, bars)
    flags = (np.arange(bars) % 2).astype(np.float64)
    for name in KERNELS:
        args: list[object] = []
        for param in kernel_params(name):
            kind = PARAM_KINDS[param]
            if kind == "number":
                args.append(price)
            elif kind == "boolean":
                args.append(flags)
            elif kind == "window":
                args.append(2)
            else:
                args.append(1.5)
        KERNELS[name](*args, np.empty(bars))
