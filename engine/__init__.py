"""autostrat: a strategy search engine.

A language model (or the offline mutation proposer) writes trading strategies in a small
declarative language; autostrat parses and checks them, compiles them to a flat instruction tape,
evaluates the tape with a numba interpreter over daily OHLCV arrays, and searches for better ones
while keeping a sealed test period out of reach.

The names a notebook user needs are re-exported here.
"""

__version__ = "0.1.0"
