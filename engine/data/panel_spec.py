"""Load a Panel (a universe on one calendar) from a data spec.

A portfolio data spec is any universe spec (`SPY,QQQ,IWM`, `synthetic:seed=1..20`,
`universe:FILE`, see autostrat.data.universe), or `synthetic-universe:...` (autostrat.data.
synthetic_universe): many synthetic assets with a planted cross-sectional premium.
"""

from __future__ import annotations

from autostrat.config import DataSettings
from autostrat.data.load import load_universe
from autostrat.data.panel import Panel, panel_from_universe
from autostrat.data.synthetic_universe import universe_from_spec


def is_panel_spec(spec: str) -> bool:
    """A spec that names many synthetic assets at once (`synthetic-universe:...`)."""
    return (spec or "").strip().lower().startswith("synthetic-universe")


def load_panel(spec: str, settings: DataSettings | None = None) -> Panel:
    """A Panel from a universe spec or a `synthetic-universe:...` spec."""
    if is_panel_spec(spec):
        return universe_from_spec(spec)
    return panel_from_universe(load_universe(spec, settings))
