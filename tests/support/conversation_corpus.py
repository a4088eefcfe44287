"""The written sales texts of tests/data/conversation/ and how the rules extractor is scored on them.

Each text carries what a person reading it would write down: the next steps (a phrase that the
extracted quote must contain, the owner, the due date when the text gives one), the money amounts
and the competitors named. Matching is one-to-one: an extracted item counts once at most.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path
from typing import Any

from okyaku.conversation.quotes import normalise
from okyaku.conversation.rules import Competitor, Perspective, extract_rules
from okyaku.conversation.schema import RulesFindings

CORPUS = Path(__file__).resolve().parents[1] / "data" / "conversation"


@dataclass(frozen=True)
class CorpusText:
    name: str
    type: str
    direction: str | None
    occurred_at: datetime
    subject: str
    body: str
    expected: dict[str, Any]


@dataclass(frozen=True)
class Organization:
    name: str
    competitors: tuple[Competitor, ...]


def load_organization() -> Organization:
    data = json.loads((CORPUS / "organization.json").read_text())
    competitors = tuple(Competitor(c["name"], tuple(c.get("aliases", ()))) for c in data["competitors"])
    return Organization(data["organization_name"], competitors)


def load_corpus(folder: str = "") -> list[CorpusText]:
    """The development texts (``folder=""``) or the held-out ones (``"holdout"``), written after the
    extractor's rules were fixed on the first set and never used to change them."""
    texts = []
    for path in sorted((CORPUS / folder).glob("[0-9h]*.json")):
        data = json.loads(path.read_text())
        texts.append(
            CorpusText(
                name=path.stem,
                type=data["type"],
                direction=data["direction"],
                occurred_at=datetime.fromisoformat(data["occurred_at"].replace("Z", "+00:00")),
                subject=data["subject"],
                body=data["body"],
                expected=data["expected"],
            )
        )
    return texts


def findings_for(text: CorpusText, organization: Organization) -> RulesFindings:
    perspective = Perspective.for_activity(text.type, text.direction, organization.name)
    return extract_rules(
        text.body, anchor=text.occurred_at.date(), perspective=perspective, competitors=organization.competitors
    )


@dataclass
class Score:
    found: int = 0
    expected: int = 0
    matched: int = 0
    owner_right: int = 0
    due_right: int = 0
    misses: list[str] = field(default_factory=list)
    extras: list[str] = field(default_factory=list)

    @property
    def precision(self) -> float:
        return self.matched / self.found if self.found else 1.0

    @property
    def recall(self) -> float:
        return self.matched / self.expected if self.expected else 1.0


def _folded(text: str) -> str:
    return normalise(text).text


def score_next_steps(texts: list[CorpusText], organization: Organization) -> Score:
    score = Score()
    for text in texts:
        items = findings_for(text, organization).action_items
        expected = text.expected["next_steps"]
        score.found += len(items)
        score.expected += len(expected)
        used: set[int] = set()
        for step in expected:
            key = _folded(step["quote"])
            hit = next((i for i, item in enumerate(items) if i not in used and key in _folded(item.quote)), None)
            if hit is None:
                score.misses.append(f"{text.name}: {step['quote']}")
                continue
            used.add(hit)
            score.matched += 1
            item = items[hit]
            owner_ok = item.owner == step["owner"] and (
                step["owner"] != "named" or (item.owner_name or "").casefold() == step["owner_name"].casefold()
            )
            score.owner_right += owner_ok
            due = date.fromisoformat(step["due"]) if step["due"] else None
            score.due_right += item.due_date == due
        score.extras.extend(f"{text.name}: {item.quote}" for i, item in enumerate(items) if i not in used)
    return score


def score_money(texts: list[CorpusText], organization: Organization) -> Score:
    score = Score()
    for text in texts:
        found = [m.amount for m in findings_for(text, organization).money]
        expected = list(text.expected["money"])
        score.found += len(found)
        score.expected += len(expected)
        remaining = list(found)
        for amount in expected:
            if amount in remaining:
                remaining.remove(amount)
                score.matched += 1
            else:
                score.misses.append(f"{text.name}: {amount}")
        score.extras.extend(f"{text.name}: {amount}" for amount in remaining)
    return score


def score_competitors(texts: list[CorpusText], organization: Organization) -> Score:
    """By name per text (a competitor named twice in one text counts once)."""
    score = Score()
    for text in texts:
        found = {c.name for c in findings_for(text, organization).competitors}
        expected = set(text.expected["competitors"])
        score.found += len(found)
        score.expected += len(expected)
        score.matched += len(found & expected)
        score.misses.extend(f"{text.name}: {name}" for name in sorted(expected - found))
        score.extras.extend(f"{text.name}: {name}" for name in sorted(found - expected))
    return score


def report(folder: str = "") -> dict[str, Score]:
    texts, organization = load_corpus(folder), load_organization()
    return {
        "next steps": score_next_steps(texts, organization),
        "money": score_money(texts, organization),
        "competitors": score_competitors(texts, organization),
    }


def format_report(scores: dict[str, Score]) -> str:
    lines = [f"{'what':<12} {'expected':>8} {'found':>6} {'matched':>7} {'precision':>9} {'recall':>6}  owner  due"]
    for name, s in scores.items():
        extra = f"  {s.owner_right}/{s.matched}  {s.due_right}/{s.matched}" if name == "next steps" else ""
        lines.append(
            f"{name:<12} {s.expected:>8} {s.found:>6} {s.matched:>7} {s.precision:>9.2f} {s.recall:>6.2f}{extra}"
        )
    return "\n".join(lines)
