"""autostrat: a strategy search engine.

A language model (or the offline mutation proposer) writes trading strategies in a small
declarative language; autostrat parses and checks them, compiles them to a flat instruction tape,
evaluates the tape with a numba interpreter over daily OHLCV arrays, and searches for better ones
while keeping a sealed test period out of reach.

The names a notebook user needs are re-exported here.
"""

__version__ = "0.1.0"

from autostrat import _numba_cache  # noqa: E402  (before anything imports numba)

_numba_cache.configure()

# Several re-exported functions share their module's name (parse, check, compile, fmt, backtest):
# importing them here binds the function, which a later `import autostrat.lang.parse` leaves alone.
from autostrat.sim.backtest import Result, UniverseResult, backtest, load_strategy  # noqa: E402
from autostrat.sim.bulk import across_assets_frame, evaluate_many, sweep  # noqa: E402
from autostrat.lang.check import TypedProgram, check  # noqa: E402
from autostrat.tape.compile import Tape, compile, compile_many  # noqa: E402,A004
from autostrat.config import Settings  # noqa: E402
from autostrat.data.load import load_market  # noqa: E402
from autostrat.data.market import Market  # noqa: E402
from autostrat.errors import AutostratError, DataError, StrategyError  # noqa: E402
from autostrat.lang.fmt import canonical_hash, fmt  # noqa: E402
from autostrat.lang.parse import parse  # noqa: E402
from autostrat.data.load import load_universe  # noqa: E402
from autostrat.data.universe import Universe  # noqa: E402
from autostrat.sim.portfolio_backtest import PortfolioResult, backtest_portfolio  # noqa: E402

__all__ = [
    "AutostratError", "DataError", "Market", "PortfolioResult", "Result", "Settings", "StrategyError", "Tape",
    "TypedProgram", "Universe", "UniverseResult", "across_assets_frame", "backtest", "backtest_portfolio", "canonical_hash",
    "check", "compile", "compile_many", "evaluate_many", "fmt", "load_market", "load_strategy",
    "load_universe", "parse", "sweep",
]
