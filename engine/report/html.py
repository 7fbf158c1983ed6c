"""The report as one self-contained HTML file: inline CSS, images as base64 data URIs, no scripts.

`render(report)` takes the dict of autostrat.report.build.build_report. The file opens offline in any
browser and can be mailed or archived as it is. Every value is escaped.
"""

from __future__ import annotations

import base64
import html
import math
from typing import Any

from autostrat.honest.ledger import counts_line
from autostrat.honest.red_flags import thresholds
from autostrat.report.bar_html import bar_box, spa_row
from autostrat.report.card import rules_heading
from autostrat.report.iterations import iterations_html, shown
from autostrat.sim.metrics import COUNT, FRACTION, METRIC, RATIO, format_metric

SECTIONS = {
    "summary": "Summary and red flags",
    "progress": "Search progress",
    "equity": "Best strategy against buy and hold",
    "metrics": "Metrics by period",
    "portfolio": "The score's IC over time and the holdings",
    "markets": "Every market of the universe",
    "statistics": "How much of it is real",
    "folds": "Walk-forward folds",
    "null": "Null run: the same search on noise",
    "robustness": "Robustness of the best strategy",
    "card": "Strategy card",
    "lineage": "Lineage of the kept strategies",
    "iterations": "Steps, tuning and constraints",
    "details": "Run details",
}
TABLE_METRICS = (("total_return", "return"), ("cagr", "CAGR"), ("sharpe", "Sharpe"), ("sortino", "Sortino"),
                 ("max_drawdown", "max DD"), ("calmar", "Calmar"), ("num_trades", "trades"),
                 ("win_rate", "win rate"), ("exposure", "exposure"), ("excess_return", "vs buy&hold"))
# A portfolio has no round trips; its tables show what it holds and how well its score ranks.
PORTFOLIO_TABLE_METRICS = (("total_return", "return"), ("sharpe", "Sharpe"), ("max_drawdown", "max DD"),
                           ("holdings", "held"), ("turnover", "turnover"), ("rank_ic_mean", "rank IC"),
                           ("rank_ic_tstat", "rank IC t"), ("excess_return", "vs equal-wt"))
CSS = """
body{font:14px/1.45 system-ui,-apple-system,'Segoe UI',Roboto,sans-serif;color:#1d2530;margin:0;background:#f6f7f9}
main{max-width:1140px;margin:0 auto;padding:18px 24px 48px;background:#fff}
h1{font-size:22px;margin:4px 0 2px}h2{font-size:17px;margin:28px 0 8px;border-bottom:1px solid #dde2e8;padding-bottom:4px}
h3{font-size:14px;margin:14px 0 6px}.sub{color:#5a6675;margin:0 0 12px}
.kpis{display:flex;flex-wrap:wrap;gap:10px;margin:10px 0}
.kpi{border:1px solid #dde2e8;border-radius:6px;padding:8px 12px;min-width:120px}
.kpi b{display:block;font-size:19px}.kpi span{color:#5a6675;font-size:12px}
.bad b{color:#b3261e}.good b{color:#1e7b34}
.flags{background:#fdecea;border:1px solid #f5c2bd;border-radius:6px;padding:8px 14px 8px 30px;margin:8px 0}
.ok{background:#e9f6ec;border:1px solid #b9e0c2;border-radius:6px;padding:8px 14px;margin:8px 0}
table{border-collapse:collapse;margin:6px 0 10px;font-size:13px}
th,td{border:1px solid #dde2e8;padding:3px 8px;text-align:right}th{background:#f1f3f6}
td.l,th.l{text-align:left}tr.hold td{color:#5a6675;font-style:italic}tr.best td{font-weight:600}
.sealed{color:#7b3294;font-weight:600}img{max-width:100%;height:auto;display:block;margin:6px 0}
pre{background:#f6f7f9;border:1px solid #dde2e8;border-radius:6px;padding:10px;overflow-x:auto;font-size:12.5px}
ul.tree{list-style:none;padding-left:18px;margin:2px 0}ul.tree li{margin:2px 0}
.badge{font-size:11px;background:#e3ecfa;color:#1f4e9c;border-radius:3px;padding:0 5px;margin-left:4px}
.stats td.l{max-width:760px}.muted{color:#5a6675}
"""


def _e(x: Any) -> str:
    return html.escape(str(x), quote=True)


def _f(x: Any) -> float:
    try:
        return math.nan if x is None else float(x)
    except (TypeError, ValueError):
        return math.nan


def fmt(name: str, value: Any) -> str:
    """A metric for the report's tables: the metric table's units (autostrat.sim.metrics), compact."""
    x = _f(value)
    if math.isnan(x):
        return "n/a"
    if math.isinf(x):
        return "inf" if x > 0 else "-inf"
    unit = METRIC[name].unit if name in METRIC else RATIO
    if unit == FRACTION:
        return format_metric(name, x, METRIC[name].places - 1)  # the report's tables: one decimal fewer
    if unit == COUNT:
        return f"{x:.0f}"
    return f"{x:.3f}" if abs(x) < 100 else f"{x:,.0f}"


def _img(png: bytes, alt: str) -> str:
    data = base64.b64encode(png).decode("ascii")
    return f'<img alt="{_e(alt)}" src="data:image/png;base64,{data}">'


def _section(key: str, body: str) -> str:
    return f'<section id="{key}"><h2>{_e(SECTIONS[key])}</h2>\n{body}\n</section>\n'


def _kpi(label: str, value: str, good: bool | None = None) -> str:
    cls = "" if good is None else (" good" if good else " bad")
    return f'<div class="kpi{cls}"><b>{_e(value)}</b><span>{_e(label)}</span></div>'


def _summary(r: dict[str, Any]) -> str:
    s, best = r["stats"], r["best"]
    test = best["metrics"].get("test")
    dsr, pbo = _f(s["dsr"]), _f(s["pbo"])
    dsr_bar, pbo_bar, _ = thresholds(r)
    kpis = [_kpi(f"best {r['objective']} (iteration {best['iteration']})", fmt(r["objective_metric"], best["objective"])),
            _kpi(f"trials (of {s['n_records']} iterations)", str(s["n_trials"])),
            _kpi(f"DSR (want >= {dsr_bar:g})", fmt("", dsr), None if math.isnan(dsr) else dsr >= dsr_bar),
            _kpi(f"PBO (want < {pbo_bar:g})", fmt("", pbo), None if math.isnan(pbo) else pbo <= pbo_bar),
            _kpi("PSR (ignores the trials)", fmt("", s["psr"]))]
    if test is not None:
        kpis.append(_kpi("test return (sealed) / buy and hold",
                         f"{fmt('total_return', test['total_return'])} / {fmt('total_return', test['buy_hold_return'])}",
                         _f(test["excess_return"]) > 0))
    null = r.get("null")
    if null:
        market_excess = _f((best["metrics"].get("validation") or {}).get("excess_return"))
        beaten = (_f(null["best_objective"]) < _f(best["objective"])
                  and not _f(null["best_validation_excess"]) >= market_excess)
        kpis.append(_kpi("best objective on noise (null run)", fmt(r["objective_metric"], null["best_objective"]),
                         beaten))
    flags = r["flags"]
    box = ('<ul class="flags">' + "".join(f"<li>{_e(x)}</li>" for x in flags) + "</ul>" if flags else
           '<div class="ok">No red flags: the checks below found nothing that explains the result away.</div>')
    return f'<div class="kpis">{"".join(kpis)}</div>\n{bar_box(r)}\n<h3>Red flags ({len(flags)})</h3>\n{box}'


def _metrics_tables(r: dict[str, Any]) -> str:
    out = []
    sealed = r["sealed"]
    for period, info in r["periods"].items():
        title = f"{period}: {info['first']} to {info['last']}, {info['bars']} bars"
        if period == "test":
            n = sealed.get("times_opened", 1)
            title = (f'<span class="sealed">test (sealed)</span>: {_e(info["first"])} to {_e(info["last"])}, '
                     f'{info["bars"]} bars; opened {n} time{"s" if n != 1 else ""}, first at {_e(sealed.get("opened_at"))}'
                     + (", and before that an unknown number of times" if sealed.get("count_unknown") else ""))
        else:
            title = _e(title)
        shown = PORTFOLIO_TABLE_METRICS if r.get("portfolio") else TABLE_METRICS
        head = '<tr><th class="l">strategy</th>' + "".join(f"<th>{_e(label)}</th>" for _, label in shown) + "</tr>"
        rows = []
        for i, t in enumerate(r["top"]):
            m = t["metrics"].get(period)
            cells = "".join(f"<td>{fmt(k, (m or {}).get(k))}</td>" for k, _ in shown)
            rows.append(f'<tr class="{"best" if i == 0 else ""}"><td class="l">iter {t["iteration"]}'
                        f'{" (best)" if i == 0 else ""}</td>{cells}</tr>')
        hold = r["buy_hold"].get(period) or {}
        cells = "".join(f"<td>{fmt(k, hold.get(k))}</td>" for k, _ in shown)
        rows.append(f'<tr class="hold"><td class="l">buy and hold</td>{cells}</tr>')
        out.append(f"<h3>{title}</h3>\n<table>{head}{''.join(rows)}</table>")
    if "test" not in r["periods"]:
        out.append(f'<p class="muted">No test period: {_e(sealed.get("reason", ""))}.</p>')
    if r.get("ledger"):
        out.append(_looks(r))
    return "\n".join(out)


def _looks(r: dict[str, Any]) -> str:
    """Every run's look at this test period (the ledger), their best test results beside this run's."""
    ledger, test = r["ledger"], r["best"]["metrics"].get("test") or {}
    rows = [f'<tr class="best"><td class="l">this run ({_e(r["run"])})</td><td class="l">'
            f'{_e((r["sealed"].get("openings") or [{}])[-1].get("opened_at", ""))}</td>'
            f'<td>{fmt("total_return", test.get("total_return"))}</td><td>{fmt("sharpe", test.get("sharpe"))}</td>'
            f'<td>{fmt("excess_return", test.get("excess_return"))}</td></tr>']
    for e in ledger["earlier"]:
        b = e.get("best") or {}
        rows.append(f'<tr><td class="l">{_e(e["run"])}</td><td class="l">{_e(e["opened_at"])}</td>'
                    f'<td>{fmt("total_return", b.get("total_return"))}</td><td>{fmt("sharpe", b.get("sharpe"))}</td>'
                    f'<td>{fmt("excess_return", b.get("excess_return"))}</td></tr>')
    head = ('<tr><th class="l">look</th><th class="l">opened at</th><th>test return</th><th>Sharpe</th>'
            "<th>excess return</th></tr>")
    return (f'<h3>Looks at this test period, across runs</h3><p class="muted">This data\'s test period was '
            f'{_e(counts_line(ledger))} (ledger {_e(ledger["path"])}). Below: this run\'s best strategy, then '
            "every other run's look before this one with the best test result among the strategies it opened. "
            "A test number that is the best of many looks is a validation number.</p>"
            f"<table>{head}{''.join(rows)}</table>")


def _markets(r: dict[str, Any]) -> str:
    """Per market of a universe: the best strategy's return, buy and hold and Sharpe in every period."""
    u = r["universe"]
    periods = list(r["periods"])
    head = ('<tr><th class="l" rowspan="2">market</th>' + "".join(f'<th colspan="3">{_e(p)}</th>' for p in periods)
            + "</tr><tr>" + "<th>return</th><th>buy&amp;hold</th><th>Sharpe</th>" * len(periods) + "</tr>")
    rows = []
    for name, metrics in u["markets"].items():
        cells = ""
        for p in periods:
            m, h = metrics.get(p) or {}, (u["buy_hold"].get(name) or {}).get(p) or {}
            cells += (f"<td>{fmt('total_return', m.get('total_return'))}</td>"
                      f"<td>{fmt('total_return', h.get('total_return'))}</td><td>{fmt('sharpe', m.get('sharpe'))}</td>")
        cls = ' class="best"' if name == u["median_market"] else ""
        rows.append(f'<tr{cls}><td class="l">{_e(name)}</td>{cells}</tr>')
    note = (f'<p class="muted">The tables above show the {_e(u["across"])} over the markets; each market is '
            f'traded on its own dates. The equity chart shows {_e(u["median_market"])} (bold), the market whose '
            "objective is the median.</p>")
    return note + f"<table>{head}{''.join(rows)}</table>"


def _stat(name: str, value: str, sentence: str) -> str:
    return f'<tr><td class="l"><b>{_e(name)}</b></td><td><b>{_e(value)}</b></td><td class="l">{_e(sentence)}</td></tr>'


def _statistics(r: dict[str, Any]) -> str:
    s = r["stats"]
    n, days, sel = s["n_trials"], s["track_record"], s["selection"]
    psr, dsr, pbo = _f(s["psr"]), _f(s["dsr"]), _f(s["pbo"])
    sr, sr_star = _f(s["sharpe_annual"]), _f(s["expected_max_sharpe_annual"])
    out = [f'<p class="muted">Computed from the run folder: {n} trials (every evaluated candidate; {s["n_invalid"]} '
           f'invalid, {s["n_duplicate"]} duplicate and {s["n_error"]} failed iterations are not trials), their daily '
           f'returns on train and validation, and the best strategy\'s {_e(sel)} record ({_e(days)} days). '
           + (f'On this universe the record is {_e(s["series"])}; each market\'s own figures are in the '
              'markets table. ' if s.get("series") else "")
           + 'The sealed test period is not used. docs/report.md explains each number.</p>']
    out.append(_stat("PSR", fmt("", psr),
                     f"Taken alone, the best strategy's {sel} record (annual Sharpe {fmt('', sr)}) gives a "
                     f"{_pct(psr)} probability that its true Sharpe ratio is above zero; this ignores that it "
                     f"was picked as the best of {n}."))
    dsr_bar = thresholds(r)[0]
    verdict = ("so the result survives the selection" if dsr >= dsr_bar else
               f"below {dsr_bar:g}, so picking the best of that many tries explains the result as well as skill does")
    out.append(_stat("DSR", fmt("", dsr),
                     f"Among {n} strategies with no skill the best would show an annual Sharpe around "
                     f"{fmt('', sr_star)}; the probability that the best one beats that bar is {_pct(dsr)}, "
                     f"{verdict}." if not math.isnan(dsr) else "Could not be computed for this run."))
    if not math.isnan(pbo):
        out.append(_stat("PBO", fmt("", pbo),
                         f"In {_pct(pbo)} of the {s['pbo_n_combinations']:,} ways of splitting train and validation "
                         f"into halves ({s['pbo_n_splits']} blocks), the candidate that was best in one half did no "
                         "better than the median candidate in the other (0.5 is what choosing among noise gives)."))
        out.append(_stat("Probability of loss out of sample", fmt("", s["prob_oos_loss"]),
                         f"In {_pct(_f(s['prob_oos_loss']))} of those splits the in-sample best lost money in the "
                         "other half."))
        out.append(_stat("Degradation slope", fmt("", s["degradation_slope"]),
                         "Out-of-sample Sharpe per unit of in-sample Sharpe of the chosen candidate across the splits; "
                         "near -1 or below, a better-looking half went with a worse other half."))
    else:
        out.append(_stat("PBO", "n/a", f"Not computed: {s['pbo_reason']}"))
    out.append(_stat(*spa_row(s)))
    mtrl, mtrl_d = _f(s["min_track_record"]), _f(s["min_track_record_deflated"])
    enough = "the record is long enough" if mtrl <= _f(days) else "the record is too short"
    out.append(_stat("Minimum track record", fmt("num_trades", mtrl) + " days",
                     f"Days of returns like these needed for 95% confidence that the Sharpe ratio is above zero; "
                     f"{enough} ({days} days). Against the bar of the best of {n} no-skill tries it is "
                     f"{fmt('num_trades', mtrl_d)} days."))
    return (out[0] + '<table class="stats"><tr><th class="l">statistic</th><th>value</th>'
            '<th class="l">what it means for this run</th></tr>' + "".join(out[1:]) + "</table>")


def _pct(x: float) -> str:
    """A probability in words' reach: 85%, and 99.6% rather than a rounded 100%."""
    if math.isnan(x):
        return "n/a"
    return f"{x:.1%}" if 0.99 < x < 1 or 0 < x < 0.01 else f"{x:.0%}"


def _folds(r: dict[str, Any]) -> str:
    metric = r["objective_metric"]
    best = r["best"]["metrics"]
    head = (f'<tr><th class="l">fold</th><th class="l">dates</th><th>bars</th><th>{_e(metric)}</th>'
            f"<th>buy&amp;hold {_e(metric)}</th><th>return</th><th>trades</th></tr>")
    rows = []
    for name, p in r["fold_periods"].items():
        m, h = best.get(name) or {}, r["fold_buy_hold"].get(name) or {}
        rows.append(f'<tr><td class="l">{_e(name)}</td><td class="l">{_e(p["first"])} to {_e(p["last"])}</td>'
                    f'<td>{p["bars"]}</td><td>{fmt(metric, m.get(metric))}</td><td>{fmt(metric, h.get(metric))}</td>'
                    f'<td>{fmt("total_return", m.get("total_return"))}</td><td>{fmt("num_trades", m.get("num_trades"))}</td></tr>')
    return (f"<p>The objective is the {_e(r['objective'])}: each fold traded on its own from flat. The best "
            f"strategy fold by fold:</p><table>{head}{''.join(rows)}</table>")


def _null(r: dict[str, Any]) -> str:
    null, s = r.get("null"), r["stats"]
    if not null:
        return (f'<p class="muted">No null run. <code>autostrat evolve --run {_e(r["run"])} --null</code> runs the same '
                "search with the same budget on a synthetic market with this market's volatility, and shows here "
                "the objective a search reaches when there is nothing to find.</p>")
    metric = r["objective_metric"]
    rows = [("run folder", r["run"], null["run"]), ("iterations", s["n_records"], null["records"]),
            ("trials", s["n_trials"], null["trials"]),
            (f"best {r['objective']}", fmt(metric, s["best_objective"]), fmt(metric, null["best_objective"])),
            ("best validation Sharpe", fmt("sharpe", (r["best"]["metrics"].get("validation") or {}).get("sharpe")),
             fmt("sharpe", null["best_validation_sharpe"])),
            ("buy and hold validation return", fmt("total_return", r["buy_hold"]["validation"]["total_return"]),
             fmt("total_return", null["best_validation_buy_hold"])),
            ("best validation excess over buy and hold",
             fmt("total_return", (r["best"]["metrics"].get("validation") or {}).get("excess_return")),
             fmt("total_return", null["best_validation_excess"])),
            ("DSR", fmt("", s["dsr"]), fmt("", null["dsr"])), ("PBO", fmt("", s["pbo"]), fmt("", null["pbo"])),
            ("daily volatility (log returns)", f"{_f(null['daily_vol']):.3%}", f"{_f(null['null_daily_vol']):.3%}")]
    body = "".join(f'<tr><td class="l">{_e(a)}</td><td>{_e(b)}</td><td>{_e(c)}</td></tr>' for a, b, c in rows)
    beat = _f(s["best_objective"]) > _f(null["best_objective"])
    verdict = ("The search reached a better objective on the market than on noise." if beat else
               "The search did at least as well on noise as on the market: its result is what searching finds anyway.")
    market_excess = _f((r["best"]["metrics"].get("validation") or {}).get("excess_return"))
    if beat and _f(null["best_validation_excess"]) >= market_excess:
        verdict += (" But on noise its best beat buy and hold on validation by as much or more "
                    f"({fmt('total_return', null['best_validation_excess'])} against "
                    f"{fmt('total_return', market_excess)}).")
    return (f"<p>Same settings and budget, on a synthetic market with the same dates, drift and daily volatility "
            f"(seed {_e(null['seed'])}) and no pattern to find. {_e(verdict)} The drift of a single period differs "
            "between the two markets, so compare the excess over buy and hold as well as the objective.</p>"
            f'<table><tr><th class="l"></th><th>market</th><th>noise</th></tr>{body}</table>')


def _robustness(r: dict[str, Any]) -> str:
    rob = r.get("robustness")
    if not rob:
        return '<p class="muted">Not computed (report written with --no-robustness).</p>'
    found = rob["found"]
    groups = [("objective", r["objective"], r["objective_metric"])]
    if r["objective"] != "validation.total_return":
        groups.append(("validation_return", "validation return", "total_return"))
    if r["objective"] != "validation.sharpe":
        groups.append(("validation_sharpe", "validation Sharpe", "sharpe"))
    head = ('<tr><th class="l" rowspan="2">check</th><th class="l" rowspan="2">what</th><th rowspan="2">n</th>'
            + "".join(f'<th colspan="3">{_e(label)}</th>' for _, label, _ in groups)
            + '<th rowspan="2">beats buy&amp;hold</th></tr><tr>' + "<th>min</th><th>median</th><th>max</th>" * len(groups)
            + "</tr>")
    rows = []
    for row in rob["rows"]:
        cells = "".join(f"<td>{_fine(metric, x)}</td>" for key, _, metric in groups for x in row[key])
        rows.append(f'<tr><td class="l">{_e(row["name"])}</td><td class="l">{_e(row["detail"])}</td><td>{row["n"]}</td>'
                    f'{cells}<td>{_pct(_f(row["beats_buy_hold"]))}</td></tr>')
    knobs = ", ".join(f"{k['label']} ({k.get('text') or k['value']})" for k in rob["knobs"]) or "none (nothing to jitter)"
    return (f"<p>As found: objective {fmt(r['objective_metric'], found['objective'])}, validation return "
            f"{fmt('total_return', found['validation_return'])}, validation Sharpe {fmt('sharpe', found['validation_sharpe'])}. "
            f"Train and validation only.</p><table>{head}{''.join(rows)}</table>"
            f'<p class="muted">Numbers jittered: {_e(knobs)}.</p>')


def _fine(name: str, value: Any) -> str:
    """One more decimal than `fmt`: small differences between checks stay visible."""
    x = _f(value)
    if name in METRIC and METRIC[name].unit == FRACTION and not math.isnan(x) and not math.isinf(x):
        return format_metric(name, x)
    return fmt(name, value)


def _card(r: dict[str, Any]) -> str:
    c = r["card"]
    parts = [f"<p><b>{_e(c.name)}</b>: {_e(c.direction)}.</p>"]
    if c.hypothesis:
        parts.append(f"<p>Hypothesis: {_e(c.hypothesis)}</p>")
    parts.append(f"<h3>{_e(rules_heading(c))}</h3><ul>" +
                 "".join(f"<li>{_e(label)} {_e(text)}.</li>" for label, text in c.rules) + "</ul>")
    if c.definitions:
        parts.append("<h3>Where</h3><ul>" + "".join(f"<li><code>{_e(n)}</code> = {_e(t)}</li>"
                                                   for n, t in c.definitions) + "</ul>")
    if c.parameters:
        parts.append('<h3>Parameters</h3><table><tr><th class="l">param</th><th>value</th><th>range</th>'
                     '<th class="l">used by</th></tr>' + "".join(
                         f'<tr><td class="l">{_e(n)}</td><td>{_e(v)}</td><td>{_e(g)}</td><td class="l">{_e(u)}</td></tr>'
                         for n, v, g, u in c.parameters) + "</table>")
    parts.append("<h3>Exits</h3><ul>" + "".join(f"<li>{_e(x)}</li>" for x in c.exits) + "</ul>")
    parts.append(f"<p><b>Warm-up:</b> {_e(c.warmup)}</p>")
    if c.activity:
        parts.append("<h3>Trading activity</h3><ul>" + "".join(f"<li>{_e(a)}</li>" for a in c.activity) + "</ul>")
    parts.append(f"<h3>Source (best.strat)</h3><pre>{_e(r['source'])}</pre>")
    return "\n".join(parts)


def _tree(nodes: list[dict[str, Any]], metric: str, best_path: set[int]) -> str:
    items = []
    for n in nodes:
        label = (f"iter {n['iteration']}: {fmt(metric, n['objective'])} <span class=\"muted\">"
                 f"{_e(n['description'])}</span>")
        if n["iteration"] in best_path:
            label = f"<b>{label}</b>"
        badge = '<span class="badge">top</span>' if n["in_top"] else ""
        tried = f' <span class="muted">({n["tried"]} tried from it)</span>' if n["tried"] else ""
        kids = _tree(n["children"], metric, best_path) if n["children"] else ""
        items.append(f"<li>{label}{badge}{tried}{kids}</li>")
    return f'<ul class="tree">{"".join(items)}</ul>'


def _lineage(r: dict[str, Any]) -> str:
    parents = {rec["iteration"]: rec.get("parent") for rec in r["records"]}
    path, i = set(), r["best"]["iteration"]
    while i is not None and i not in path:
        path.add(i)
        i = parents.get(i)
    return ("<p>Each kept strategy under the parent it was written from; the best one's line is in bold, the "
            "final population is marked <span class=\"badge\">top</span>.</p>" + _tree(r["lineage"], r["objective_metric"], path))


def _details(r: dict[str, Any]) -> str:
    cfg, s = r["config"], r["config"].get("settings", {})
    bt, search = s.get("backtest", {}), s.get("search", {})
    rows = [("data", f"{r['market_name']} ({cfg.get('data', {}).get('bars')} bars, sha256 "
                     f"{str(cfg.get('data', {}).get('sha256', ''))[:16]}...)"),
            ("proposer", search.get("proposer")), ("model", (cfg.get("model") or {}).get("model", "none")),
            ("objective", r["objective"]), ("population, max fails, iterations, seed",
                                            f"{search.get('population')}, {search.get('max_fails')}, "
                                            f"{search.get('iterations')}, {search.get('seed')}"),
            ("parallel, tune (pick), dedupe", f"{search.get('parallel', 1)}, {search.get('tune', 0)} "
                                              f"({search.get('tune_pick', 'best')}), {search.get('dedupe', 'text')}"),
            ("constraints", f"min trades {search.get('min_trades') or 'off'}, max drawdown "
                            f"{search.get('max_drawdown') or 'off'}"),
            ("fill and costs", f"{bt.get('fill')}; {bt.get('commission_bps')} + {bt.get('slippage_bps')} bps per side"),
            ("created", cfg.get("created")), ("autostrat", cfg.get("autostrat_version"))]
    openings = r["sealed"].get("openings") or []
    for o in openings:
        rows.append(("test period opened", f"{o['opened_at']} by {o['by']} after iteration {o['after_iteration']}, "
                                           f"for iterations {', '.join(str(x['iteration']) for x in o['strategies'])}"))
    return "<table>" + "".join(f'<tr><td class="l">{_e(a)}</td><td class="l">{_e(b)}</td></tr>' for a, b in rows) + "</table>"


def render(r: dict[str, Any]) -> str:
    """The report dict as a complete HTML document."""
    plots = r["plots"]
    body = [_section("summary", _summary(r)),
            _section("progress", _img(plots["progress"], "search progress") +
                     '<p class="muted">Every iteration\'s objective: kept (green), discarded (grey), the best so far '
                     "(blue line); invalid, duplicate and error iterations are ticks along the bottom.</p>"),
            _section("equity", _img(plots["equity"], "equity against buy and hold") +
                     '<p class="muted">Growth of 1, each period traded from flat with the initial capital and chained '
                     "to the previous one; drawdowns are within each period. The test period is sealed: the search "
                     "never saw it.</p>"),
            _section("metrics", _metrics_tables(r))]
    if "portfolio" in plots:
        body.append(_section("portfolio", _img(plots["portfolio"], "IC per rebalance and holdings") +
                                '<p class="muted">How well the score ranked the next rebalance period\'s returns '
                                "at each rebalance (IC: Pearson; rank IC: Spearman), the running mean of the IC, "
                                "and the number of assets held at each close. The buy and hold of every table and "
                                "chart is the universe's equal-weight index.</p>"))
    if r.get("universe"):
        body.append(_section("markets", _markets(r)))
    body.append(_section("statistics", _statistics(r)))
    if r.get("fold_periods"):
        body.append(_section("folds", _folds(r)))
    body += [_section("null", _null(r)), _section("robustness", _robustness(r)), _section("card", _card(r)),
             _section("lineage", _lineage(r))]
    if shown(r["records"]):
        body.append(_section("iterations", iterations_html(r["records"])))
    body.append(_section("details", _details(r)))
    title = f"autostrat report: {r['run']}"
    sub = (f"{r['market_name']}; objective {r['objective']}; {r['stats']['n_records']} iterations, "
           f"{r['stats']['n_trials']} evaluated")
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\"><title>{_e(title)}</title>"
            f"<style>{CSS}</style></head><body><main>\n<h1>{_e(title)}</h1><p class=\"sub\">{_e(sub)}</p>\n"
            + "".join(body) + "</main></body></html>\n")
