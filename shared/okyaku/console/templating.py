"""The console's Jinja2 environment: templates packaged with okyaku.console, autoescaped, and
the filters the pages use."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from jinja2 import Environment, PackageLoader, pass_context, select_autoescape
from jinja2.runtime import Context


def template_environment() -> Environment:
    env = Environment(
        loader=PackageLoader("okyaku.console", "templates"),
        autoescape=select_autoescape(["html"]),
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["money"] = format_money
    env.filters["when"] = when_in_zone
    env.filters["pct"] = lambda value: "—" if value is None else f"{float(value) * 100:.0f}%"
    return env


def format_money(value: Any, currency: str | None = None) -> str:
    if value is None or value == "":
        return "—"
    amount = float(value)
    text = f"{amount:,.0f}" if abs(amount) >= 100 else f"{amount:,.2f}"
    return f"{text} {currency}" if currency else text


@pass_context
def when_in_zone(context: Context, value: Any) -> str:
    """``format_when`` on the wall clock of the page's zone (console/timezones.py)."""
    zone = context.get("zone")
    if zone is not None and isinstance(value, datetime) and value.tzinfo is not None:
        value = value.astimezone(zone)
    return format_when(value)


def format_when(value: Any) -> str:
    if value is None:
        return "—"
    if hasattr(value, "strftime"):
        return str(value.strftime("%Y-%m-%d %H:%M" if hasattr(value, "hour") else "%Y-%m-%d"))
    return str(value)[:16].replace("T", " ")
