"""honest: evaluation that a search cannot fool.

Owns the sealed test period (`sealed`) and the ledger of its openings across runs (`ledger`), the Probabilistic and Deflated Sharpe Ratios and the
minimum track record (`deflated_sharpe`), the Probability of Backtest Overfitting by CSCV
(`backtest_overfitting`), a run's statistics read from its folder (`run_statistics`), the SPA and
Reality Check test over every trial (`spa`), the grading of the registered pass bar (`verdict`),
robustness checks (`robustness`) and the red-flag thresholds and rules (`red_flags`).

Imports: search (the run folder), sim, tape, data, lang and the core modules; never report or cli.
"""
