"""report: what a finished run tells a reader.

Owns the report's dict, built once from the run folder (`build`), its self-contained HTML page
(`html`, with the pass bar and SPA pieces in `bar_html`), the charts (`plots`), the plain-English strategy
card (`card`) and the table of steps, tuning and constraints (`iterations`).

Imports: honest, search, sim, tape, data, lang and the core modules; never cli.
"""
