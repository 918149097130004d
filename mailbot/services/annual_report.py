"""`mailbot report`: the annual review's figures (``domain.report``) over the cases opened in a period, as HTML
with charts for the trustees, CSV (one row per case) for the charity's own spreadsheets, or JSON.

The charts are SVG drawn by pygal and written into the page itself: the report opens from a file, prints to PDF,
and fetches nothing. pygal's SVG carries a script for its tooltips; it is taken out, and the page's Content
Security Policy allows no script at all.
"""

from __future__ import annotations

import csv
import io
import json
import math
import re
import sys
from datetime import date, datetime, time, timedelta
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape
from markupsafe import Markup
from sqlalchemy.engine import Engine

from mailbot.domain import report
from mailbot.domain.workdays import WorkingCalendar
from mailbot.store import report_reads
from mailbot.store.db import reading

FORMATS = ("html", "csv", "json")
_SCRIPT = re.compile(r"<script\b.*?</script>", re.S | re.I)
_COMMENT = re.compile(r"<!--.*?-->", re.S)


def period_bounds(calendar: WorkingCalendar, start: date, end: date) -> tuple[datetime, datetime]:
    """UK midnight at the start of ``start`` to UK midnight after ``end``: both days included."""
    return (datetime.combine(start, time(0), tzinfo=calendar.zone),
            datetime.combine(end + timedelta(days=1), time(0), tzinfo=calendar.zone))


def label(key: str) -> str:
    """A stored word as a person reads it: not-upheld -> Not upheld, data_protection -> Data protection."""
    if key in report.CHANNELS:
        return report.CHANNELS[key]
    words = key.replace("_", " ").replace("-", " ").strip()
    return words[:1].upper() + words[1:] if words else key


def month_label(key: str) -> str:
    return datetime.strptime(key, "%Y-%m").strftime("%b %Y")


def _pygal():  # type: ignore[no-untyped-def]
    """pygal, without the import hook it adds for its map plugins: that hook is an old-style finder, which makes
    every later import in the process warn (and fail under `-W error`), and the report draws no maps."""
    import pygal

    sys.meta_path[:] = [f for f in sys.meta_path if not isinstance(f, pygal.PluginImportFixer)]
    return pygal


def _chart(kind: str, title: str, rows: list[dict[str, Any]], key_label=label,  # type: ignore[no-untyped-def]
           percent: bool = False) -> Markup:
    pygal = _pygal()
    from pygal.style import Style

    style = Style(background="white", plot_background="white", foreground="#0b0c0c", foreground_strong="#0b0c0c",
                  foreground_subtle="#505a5f", colors=("#1d70b8",), font_family="Arial, Helvetica, sans-serif",
                  label_font_size=13, major_label_font_size=13, title_font_size=18, value_font_size=13,
                  value_label_font_size=13, opacity="1", opacity_hover="1", transition="0s")
    horizontal = kind == "hbar"
    chart_type = pygal.HorizontalBar if horizontal else pygal.Bar
    # Whole numbers on the value axis (counts have no fractions); a percentage runs 0 to 100.
    top = 100 if percent else max([r["count"] for r in rows] + [1])
    step = 20 if percent else max(1, math.ceil(top / 8))
    chart = chart_type(js=[], disable_xml_declaration=True, style=style, show_legend=False, print_values=True,
                       y_labels=list(range(0, top + step, step)), range=(0, top),
                       width=760, height=max(220, 34 * len(rows) + 90) if horizontal else 320,
                       x_label_rotation=0 if horizontal or len(rows) <= 6 else 45, margin=12,
                       min_scale=1, max_scale=8, explicit_size=False, title=title, no_data_text="None")
    labels = [key_label(r["key"]) for r in rows]
    values = [r["count"] for r in rows]
    if horizontal:  # pygal draws the first bar at the bottom: reversed, the list reads top to bottom
        labels, values = labels[::-1], values[::-1]
    chart.x_labels = labels
    chart.add(title, values)
    svg = chart.render(is_unicode=True)
    svg = _COMMENT.sub("", _SCRIPT.sub("", svg))
    svg = svg.replace("<svg ", f'<svg role="img" aria-label="{Markup.escape(title)} (the table below gives the '
                               f'figures)" ', 1)
    return Markup(svg)


def build(engine: Engine, calendar: WorkingCalendar, start: date, end: date, now: datetime) -> tuple[
        dict[str, Any], list[report.CaseFacts]]:
    begin, finish = period_bounds(calendar, start, end)
    with reading(engine) as conn:
        cases, merged = report_reads.cases_opened(conn, begin, finish)
        unfiled = report_reads.unfiled_mail(conn, begin, finish)
    data = report.figures(cases, calendar, start, end, now, unfiled)
    data["merged"] = merged
    return data, cases


def render(fmt: str, data: dict[str, Any], cases: list[report.CaseFacts], calendar: WorkingCalendar,
           now: datetime, templates_dir: Path, org_name: str) -> str:
    if fmt == "json":
        return json.dumps(data, indent=2, ensure_ascii=False) + "\n"
    if fmt == "csv":
        out = io.StringIO()
        writer = csv.DictWriter(out, fieldnames=report.CSV_FIELDS, lineterminator="\r\n")
        writer.writeheader()
        for case in cases:
            writer.writerow(report.csv_row(case, calendar, now))
        return out.getvalue()
    env = Environment(loader=FileSystemLoader(str(templates_dir)), autoescape=select_autoescape(["html"]),
                      undefined=StrictUndefined, trim_blocks=True, lstrip_blocks=True)
    env.filters["label"] = label
    env.filters["month"] = month_label
    charts = {
        "by_month": _chart("bar", "Complaints by month", data["by_month"], month_label),
        "by_category": _chart("hbar", "Complaints by category", data["by_category"]),
        "by_channel": _chart("hbar", "How complaints reached us", data["by_channel"]),
        "outcomes": _chart("hbar", "Outcomes", data["outcomes"]),
        "on_time": _chart("hbar", "Answered on time (%)",
                          [{"key": r["label"], "count": r["on_time_pct"] or 0} for r in data["responses"]],
                          lambda k: k, percent=True),
    }
    return env.get_template("report/annual.html").render(
        data=data, charts=charts, org_name=org_name,
        start=calendar.format_date(date.fromisoformat(data["period"]["from"])),
        end=calendar.format_date(date.fromisoformat(data["period"]["to"])),
        made=calendar.format_datetime(now))
