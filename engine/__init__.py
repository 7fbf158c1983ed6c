"""autostrat: a strategy search engine.

A language model (or the offline mutation proposer) writes trading strategies in a small
declarative language; autostrat parses and checks them, compiles them to a flat instruction tape,
evaluates the tape with a numba interpreter over daily OHLCV arrays, and searches for better ones
while keeping a sealed test period out of reach.

The names a notebook user needs are re-exported here.
"""

__version__ = "0.1.0"

# Re-exports resolve on first use (PEP 562), so `autostrat --help` does not pay for numba.
_EXPORTS = {
    "Result": "backtest", "backtest": "backtest", "load_strategy": "backtest",
    "evaluate_many": "bulk", "sweep": "bulk",
    "TypedProgram": "check", "check": "check",
    "Tape": "compile", "compile": "compile", "compile_many": "compile",
    "Settings": "config",
    "Market": "data", "load_market": "data",
    "AutostratError": "errors", "DataError": "errors", "StrategyError": "errors",
    "canonical_hash": "fmt", "fmt": "fmt",
    "parse": "parse",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        import importlib

        value = getattr(importlib.import_module(f"autostrat.{_EXPORTS[name]}"), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'autostrat' has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(_EXPORTS))
