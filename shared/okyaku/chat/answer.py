"""Answers from data: templated text (the fallback, and the safety net of the LLM path) and the
check that every number in the LLM's phrasing appears in the data it was given."""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from typing import Any

from okyaku.chat.execute import DataTable
from okyaku.chat.plan import QueryPlan

SHOWN_ROWS = 10
# A number as written in prose: "12", "-3", "1,200", "45.7" (not the "7" of "v1.7" or "x7").
PROSE_NUMBER = re.compile(r"(?<![\w.])-?\d(?:[\d,]*\d)?(?:\.\d+)?")


def format_value(value: Any) -> str:
    if value is None:
        return "—"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        return f"{value:,.2f}".rstrip("0").rstrip(".")
    text = str(value)
    if re.fullmatch(r"\d{4}-\d\d-\d\dT[\d:.]+(?:[+-]\d\d:\d\d|Z)?", text):
        return text[:10]
    return text


def _row_text(columns: Sequence[str], row: Sequence[Any]) -> str:
    first, *rest = [format_value(v) for v in row] or [""]
    details = [
        f"{c.replace('.', ' ').replace('_', ' ')}: {v}" for c, v in zip(columns[1:], rest, strict=False) if v != "—"
    ]
    return first + (f" ({'; '.join(details)})" if details else "")


def _listing(data: DataTable, limit: int = SHOWN_ROWS) -> str:
    lines = [f"- {_row_text(data.columns, row)}" for row in data.rows[:limit]]
    if len(data.rows) > limit:
        lines.append(f"- … and {len(data.rows) - limit} more in the table")
    return "\n".join(lines)


_SINGULAR = {"deals": "deal", "contacts": "contact", "companies": "company", "activities": "activity", "tasks": "task"}


def singular(subject: str) -> str:
    """ "deals won" -> "deal won": the first plural entity word of a subject, for a count of one."""
    words = subject.split(" ")
    for i, word in enumerate(words):
        if word in _SINGULAR:
            words[i] = _SINGULAR[word]
            break
    return " ".join(words)


def _count_phrase(data: DataTable) -> int:
    return data.total if data.total is not None else len(data.rows)


def templated_answer(plan: QueryPlan, data: DataTable, *, family: str = "", subject: str = "") -> str:
    """A plain answer that states only what the data says."""
    subject = subject or plan.entity.replace("_", " ")
    if plan.is_aggregate:
        return _aggregate_answer(plan, data, family, subject)
    count = _count_phrase(data)
    if count == 0 and family == "hottest_leads":
        return "No contact has a lead score yet: the scoring function has not scored any lead."
    if count == 0:
        return f"No {subject} found."
    head = f"{count:,} {singular(subject) if count == 1 else subject}"
    total_amount = data.totals.get("total_amount")
    if family in ("deals_closing", "deals_won", "deals_lost") and total_amount is not None:
        head += f", {format_value(total_amount)} in total"
    elif family == "activities_with" and data.totals.get("latest_at"):
        head += f", from {format_value(data.totals.get('first_at'))} to {format_value(data.totals.get('latest_at'))}"
    elif data.totals:
        head += ", " + ", ".join(f"{k.replace('_', ' ')} {format_value(v)}" for k, v in data.totals.items())
    if family == "hottest_leads":
        head = f"Your top {len(data.rows)} leads by current lead score"
    if family == "list_top" and plan.order_by:
        order = plan.order_by[0]
        by = order.field.replace(".", " ").replace("_", " ")
        first = "largest" if order.direction == "desc" else "smallest"
        if order.field.endswith(("_at", "_date")):
            first = "latest" if order.direction == "desc" else "earliest"
        head = f"The {len(data.rows):,} {subject} with the {first} {by} (of {count:,})"
        return f"{head}:\n{_listing(data)}"
    shown = "" if len(data.rows) >= count else f" (showing {len(data.rows):,})"
    return f"{head}{shown}:\n{_listing(data)}"


_MEASURE_WORDS = {"sum": "Total", "avg": "Average", "min": "Smallest", "max": "Largest"}


def _percent(part: int, whole: int) -> str:
    return f"{100 * part / whole:.1f}".removesuffix(".0") + "%"


def _win_rate_answer(plan: QueryPlan, data: DataTable, subject: str) -> str:
    """Won ÷ (won + lost), from the database's counts per status (and per group)."""
    groups = len(plan.group_by) - 1
    counts: dict[tuple[Any, ...], dict[str, int]] = {}
    for row in data.rows:
        key = tuple(row[:groups])
        counts.setdefault(key, {})[str(row[groups])] = int(row[groups + 1] or 0)
    scope = f" ({subject})" if subject and subject not in ("records", "deals") else ""

    def line(tally: dict[str, int]) -> str:
        won, lost = tally.get("won", 0), tally.get("lost", 0)
        return f"{_percent(won, won + lost)} ({won:,} won, {lost:,} lost)"

    if not counts:
        return f"No won or lost deals{scope}, so there is no win rate yet."
    if groups == 0:
        return f"Win rate{scope}: {line(counts[()])}."
    lines = [
        f"- {' / '.join(format_value(v) if v is not None else '(none)' for v in key)}: {line(tally)}"
        for key, tally in counts.items()
    ]
    by = ", ".join(g.field.replace(".name", "").replace("_", " ") for g in plan.group_by[:-1])
    heading = f"Win rate{scope}" if "by " in subject else f"Win rate{scope} by {by}"
    return f"{heading}:\n" + "\n".join(lines)


def _measure_answer(plan: QueryPlan, data: DataTable, subject: str) -> str:
    """One aggregate (and the count it is over) of the matching records."""
    measure = plan.aggregations[0]
    assert measure.field is not None
    what = f"{_MEASURE_WORDS[measure.function]} {measure.field.replace('.', ' ').replace('_', ' ')}"
    noun = plan.entity
    if not plan.group_by:
        value, count = data.rows[0][0], data.rows[0][1]
        if not count:
            return f"No {subject} found."
        return f"{what} of {subject}: {format_value(value)} (across {format_value(count)} {noun})."
    groups = len(plan.group_by)
    lines = []
    for row in data.rows[: SHOWN_ROWS * 2]:
        key = " / ".join(format_value(v) if v is not None else "(none)" for v in row[:groups])
        lines.append(f"- {key}: {format_value(row[groups])} ({format_value(row[groups + 1])} {noun})")
    if len(data.rows) > SHOWN_ROWS * 2:
        lines.append(f"- … and {len(data.rows) - SHOWN_ROWS * 2} more groups in the table")
    by = ", ".join(g.field.replace(".name", "").replace("_", " ") for g in plan.group_by)
    heading = subject if " by " in f" {subject} " else f"{subject} by {by}"
    return f"{what} of {heading}:\n" + "\n".join(lines)


def _aggregate_answer(plan: QueryPlan, data: DataTable, family: str, subject: str) -> str:
    if family == "win_rate":
        return _win_rate_answer(plan, data, subject)
    if not data.rows:
        return f"No {subject} found."
    names = [a.name for a in plan.aggregations]
    if family.startswith("measure_") and family != "measure_count":
        return _measure_answer(plan, data, subject)
    if not plan.group_by:
        row = data.rows[0]
        values = dict(zip(data.columns, row, strict=False))
        if family == "pipeline_value":
            return (
                f"Open pipeline: {format_value(values.get('value'))} across {format_value(values.get('deals'))} deals."
            )
        if family == "count":
            return f"You have {format_value(values.get('count'))} {subject}."
        return "; ".join(f"{n.replace('_', ' ')}: {format_value(values.get(n))}" for n in names) + "."
    groups = len(plan.group_by)
    lines = []
    for row in data.rows[: SHOWN_ROWS * 2]:
        key = " / ".join(format_value(v) if v is not None else "(none)" for v in row[:groups])
        parts = [f"{n.replace('_', ' ')} {format_value(v)}" for n, v in zip(names, row[groups:], strict=False)]
        if family == "pipeline_value":
            lines.append(f"- {key}: {format_value(row[groups])} ({format_value(row[groups + 1])} deals)")
        else:
            lines.append(f"- {key}: {', '.join(parts)}")
    if len(data.rows) > SHOWN_ROWS * 2:
        lines.append(f"- … and {len(data.rows) - SHOWN_ROWS * 2} more groups in the table")
    return f"{subject[:1].upper()}{subject[1:]}:\n" + "\n".join(lines)


# --- grounding ---------------------------------------------------------------------------------


def _numbers_in(value: Any) -> Iterable[float]:
    if isinstance(value, bool) or value is None:
        return
    if isinstance(value, (int, float)):
        yield float(value)
        return
    for match in PROSE_NUMBER.finditer(str(value)):
        yield float(match.group().replace(",", ""))


_ISO_DATE = re.compile(r"\d{4}-\d\d-\d\d(?:T[\d:.]+(?:[+-]\d\d:\d\d|Z)?)?")


def allowed_numbers(data: DataTable, question: str, answer: str = "") -> set[float]:
    """Numbers the answer may use: numeric cells, dates, totals, the question's own numbers, counts
    up to the number of rows — and digits inside a text cell only where the answer quotes that
    whole text (a name such as "Plan 3000"), so a number written in a note is not a fact."""
    allowed: set[float] = set()
    quoted = answer.lower()
    for row in data.rows:
        for cell in row:
            if isinstance(cell, str) and not _ISO_DATE.fullmatch(cell):
                if cell.lower() in quoted:
                    allowed.update(_numbers_in(cell))
                continue
            allowed.update(_numbers_in(cell))
    for value in (data.total, *data.totals.values()):
        allowed.update(_numbers_in(value))
    allowed.update(_numbers_in(question))
    allowed.update(float(n) for n in range(0, len(data.rows) + 1))  # counts and enumerations
    return allowed


def _matches(number: float, allowed: set[float]) -> bool:
    if number in allowed:
        return True
    return any(
        abs(a - number) < 1e-9 or round(a) == number or round(a, 1) == number or round(a, 2) == number for a in allowed
    )


def ungrounded_numbers(answer: str, data: DataTable, question: str) -> list[str]:
    """The numbers in ``answer`` that the data (or the question) does not contain."""
    allowed = allowed_numbers(data, question, answer)
    missing = []
    for match in PROSE_NUMBER.finditer(answer):
        text = match.group()
        if not _matches(float(text.replace(",", "")), allowed):
            missing.append(text)
    return missing
