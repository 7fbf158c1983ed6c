"""Charts: PNGs of a fixed size, the curves they draw, and `autostrat backtest --plot`."""

from __future__ import annotations

import struct
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest

from autostrat.sim.backtest import ALL_PERIODS, backtest
from autostrat.cli import main
from autostrat.report.plots import (DPI, EQUITY_SIZE, PROGRESS_SIZE, _chained, equity_png, hold_equity, png_size,
                             progress_png, result_curves)
from autostrat.resources import example_path

sys.path.insert(0, str(Path(__file__).parent))
from test_loop import DATA, SPLIT_FLAGS, small_settings  # noqa: E402
from test_loop import market, warm  # noqa: E402,F401 - fixtures

EQUITY_PX = (int(EQUITY_SIZE[0] * DPI), int(EQUITY_SIZE[1] * DPI))
PROGRESS_PX = (int(PROGRESS_SIZE[0] * DPI), int(PROGRESS_SIZE[1] * DPI))


def header(data: bytes) -> tuple[int, int]:
    """(width, height) read from a PNG's first chunk, checking its signature and CRC."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    length, kind = struct.unpack(">I4s", data[8:16])
    assert kind == b"IHDR" and length == 13
    body = data[16:16 + length]
    (crc,) = struct.unpack(">I", data[16 + length:20 + length])
    assert crc == zlib.crc32(kind + body)
    width, height = struct.unpack(">II", body[:8])
    assert data.endswith(b"IEND\xaeB`\x82")
    return width, height


def test_progress_png_marks_every_status():
    records = [{"iteration": 0, "status": "keep", "objective": 0.1},
               {"iteration": 1, "status": "discard", "objective": -0.2},
               {"iteration": 2, "status": "invalid"}, {"iteration": 3, "status": "duplicate"},
               {"iteration": 4, "status": "error"}, {"iteration": 5, "status": "keep", "objective": 0.3},
               {"iteration": 6, "status": "discard", "objective": None}]
    data = progress_png(records, "validation.total_return", buy_hold=0.05, null_best=0.2)
    assert header(data) == png_size(data) == PROGRESS_PX and len(data) > 10_000
    assert header(progress_png(records[:1], "x")) == PROGRESS_PX  # one iteration, no lines to draw


def test_equity_png_and_its_curves(warm):
    settings = small_settings()
    result = backtest(example_path("sma_cross"), warm, settings, periods=ALL_PERIODS)
    curves = result_curves(result)
    assert [c.name for c in curves] == list(ALL_PERIODS) and [c.sealed for c in curves] == [False, False, True]
    for c, (a, b) in zip(curves, result.spans.values()):
        np.testing.assert_array_equal(c.equity, result.simulation(c.name).equity)
        np.testing.assert_allclose(c.hold, 10_000 * warm.close[a:b] / warm.close[a])
        hold_return = result.metrics[c.name]["buy_hold_return"]
        assert c.hold[-1] / c.hold[0] - 1 == pytest.approx(hold_return, rel=1e-12)
    chained = _chained(curves, "equity")
    assert chained[0][0] == 1.0 and chained[1][0] == pytest.approx(chained[0][-1])  # periods continue
    growth = np.prod([c.equity[-1] / c.equity[0] for c in curves])
    assert chained[-1][-1] == pytest.approx(growth)
    data = equity_png(curves, "title")
    assert header(data) == EQUITY_PX and len(data) > 20_000
    assert hold_equity(np.array([2.0, 3.0, 1.0]), 1, 3, 10.0).tolist() == [10.0, 10.0 / 3]


def test_backtest_plot_writes_a_png(tmp_path, warm, capsys):
    out = tmp_path / "eq.png"
    args = ["backtest", str(example_path("donchian_atr")), "--data", DATA, *SPLIT_FLAGS]
    assert main([*args, "--plot", str(out)]) == 0
    assert header(out.read_bytes()) == EQUITY_PX and out.stat().st_size > 20_000
    assert f"plot: {out}" in capsys.readouterr().err
    assert main([*args, "--plot", str(tmp_path / "eq.jpg")]) == 2
    assert "ending in .png" in capsys.readouterr().err
    with pytest.raises(ValueError):
        png_size(b"GIF89a" + bytes(30))


@pytest.mark.parametrize("name", ["$x^{", "a $\\frac{1}{0}$ b", "50$ and 60$", "\\$ \\\\ $$"])
def test_names_with_dollar_signs_are_drawn_as_plain_text(warm, name):
    # matplotlib would read "$...$" as mathtext and fail on a broken formula; names are the user's text.
    result = backtest(example_path("sma_cross"), warm, small_settings(), periods=ALL_PERIODS)
    assert header(equity_png(result_curves(result), f"{name} on synthetic")) == EQUITY_PX
    assert header(progress_png([{"iteration": 0, "status": "keep", "objective": 0.1}], name, 0.0, None)) \
        == PROGRESS_PX


def test_plot_paths_that_cannot_be_written_are_clear_errors(tmp_path, warm, capsys):
    args = ["backtest", str(example_path("sma_cross")), "--data", DATA, *SPLIT_FLAGS, "--plot"]
    assert main([*args, str(tmp_path / "new" / "eq.png")]) == 0  # a missing folder is made
    assert (tmp_path / "new" / "eq.png").is_file()
    (tmp_path / "eq.png").mkdir()
    (tmp_path / "file").write_text("")
    for target, message in ((tmp_path / "eq.png", "this is a folder"), (tmp_path / "file" / "eq.png", "is a file, not a folder")):
        assert main([*args, str(target)]) == 2
        err = capsys.readouterr().err
        assert message in err and "Traceback" not in err, err
