"""data: market data, from a data spec to read-only arrays.

Owns `Market` (`market`), CSV reading and validation (`csv_file`), the train / validation / test
split (`splits`), synthetic markets (`synthetic`), Yahoo Finance downloads (`yahoo`), preparing
files under data/ (`prepare`), universes of markets (`universe`) and the one loader that knows
every source (`load`: `load_market`, `load_universe`, `load_data`).

Imports: only the flat core modules. It knows nothing of strategies: lang, tape and every layer
above may import it.
"""
