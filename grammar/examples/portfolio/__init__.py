"""Example portfolio (cross-sectional) strategies: they rank a universe, so they are kept apart from the single-asset examples."""
