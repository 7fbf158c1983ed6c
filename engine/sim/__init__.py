"""sim: simulation and scoring, from a tape and a market to metrics.

Owns the trade simulator (`simulate`), the metric table and the metrics kernel (`metrics`), the
backtest settings as the kernels take them (`costs`), the pure evaluation core over tape and
market arrays (`evaluate`), the public `backtest` API (`backtest`), bulk evaluation and sweeps
(`bulk`), the Dask executor (`cluster`), walk-forward folds (`walkforward`), the search objective
(`objective`) and the evaluators that score one candidate on the search periods (`evaluator`).

Imports: tape, data, lang and the core modules; never search, honest, report or cli.
"""
