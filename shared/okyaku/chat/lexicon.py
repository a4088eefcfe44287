"""The organization's own words, for the parser: stage and pipeline names, owners, companies,
contacts, countries, industries, cities and the currencies its deals use.

Built per request under the caller's organization (read-only, RLS), one query per kind. Small
vocabularies (stages, pipelines, users, countries…) are read whole; companies and contacts, which
may be many, only where a name matches a run of the question's words, so the cost does not grow
with the organization. The parser itself stays pure: it is given a :class:`Lexicon`.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import String, any_, bindparam, cast, func, literal, or_, select, union_all
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.orm import Session

from okyaku.db.models import Company, Contact, Deal, Pipeline, PipelineStage, User

MAX_NAME_WORDS = 5
# A partial name (a company's first word, a person's first name) must not be a word the parser
# reads as vocabulary, nor so short that it is likely a word of the question by chance.
_MIN_PARTIAL = 3


# English words that are also first or last names: never a partial name, capitalised or not.
COMMON_WORDS = frozenset(
    [
        "will",
        "may",
        "can",
        "could",
        "would",
        "should",
        "shall",
        "must",
        "might",
        "mark",
        "bill",
        "grant",
        "chase",
        "hope",
        "faith",
        "rose",
        "page",
        "price",
        "day",
        "long",
        "little",
        "young",
        "king",
        "hill",
        "best",
        "rich",
        "hunt",
        "love",
        "case",
        "cash",
        "ford",
        "brown",
        "green",
        "white",
        "black",
        "gray",
        "grey",
        "wood",
        "stone",
        "park",
        "bell",
        "cook",
        "baker",
        "miller",
        "summer",
        "winter",
        "spring",
        "rush",
        "lane",
        "hall",
        "ward",
        "west",
        "north",
        "south",
        "east",
        "new",
        "old",
        "big",
        "small",
        "please",
        "show",
        "list",
        "give",
        "find",
        "tell",
        "get",
        "how",
        "why",
        "when",
        "where",
        "what",
        "which",
        "who",
        "whom",
        "whose",
        "does",
        "did",
        "do",
        "are",
        "is",
        "has",
        "have",
        "had",
        "was",
        "were",
        "the",
        "all",
        "any",
        "our",
        "my",
        "me",
        "i",
    ]
)


@dataclass(frozen=True)
class Named:
    """One thing a phrase may name. ``value`` is what a filter compares: a record's id for
    companies, contacts and owners; the stored spelling for the other kinds."""

    kind: str  # company | contact | owner | stage | pipeline | country | industry | city
    value: str
    label: str
    exact: bool = True  # the phrase is the whole name (not only a first word / first name)


@dataclass
class Lexicon:
    names: dict[str, tuple[Named, ...]] = field(default_factory=dict)
    currencies: tuple[str, ...] = ()

    @property
    def mixed_currencies(self) -> bool:
        return len(self.currencies) > 1

    def add(self, phrase: str, named: Named) -> None:
        key = normalise_name(phrase)
        if not key:
            return
        present = self.names.get(key, ())
        if named in present:
            return
        if named.exact:  # a whole name outranks partial matches of the same phrase
            present = tuple(p for p in present if p.exact)
        elif any(p.exact for p in present):
            return
        self.names[key] = (*present, named)

    def lookup(self, phrase: str) -> tuple[Named, ...]:
        return self.names.get(phrase, ())


def normalise_name(text: str) -> str:
    text = text.replace("\u2019", "'").lower()
    text = re.sub(r"[^\w&'+-]+", " ", text)
    return re.sub(r"\s+", " ", text).strip()


def question_grams(question: str) -> list[str]:
    """Every run of up to MAX_NAME_WORDS words of the question, normalised."""
    words = normalise_name(re.sub(r"'s\b", "", question.replace("\u2019", "'"))).split()
    grams = set()
    for i in range(len(words)):
        for j in range(i + 1, min(len(words), i + MAX_NAME_WORDS) + 1):
            grams.add(" ".join(words[i:j]))
    return sorted(grams)


def build_lexicon(
    *,
    stages: Iterable[str] = (),
    pipelines: Iterable[str] = (),
    owners: Iterable[tuple[str, str]] = (),
    companies: Iterable[tuple[str, str]] = (),
    contacts: Iterable[tuple[str, str]] = (),
    countries: Iterable[str] = (),
    industries: Iterable[str] = (),
    cities: Iterable[str] = (),
    currencies: Iterable[str] = (),
    reserved: frozenset[str] = frozenset(),
    capitalised: frozenset[str] = frozenset(),
) -> Lexicon:
    """A lexicon from plain values ((id, name) pairs for records). A part of a name (a company's
    first word, a person's first or last name) counts only where the question wrote it with a
    capital (not as its first word) and it is not one of the ``reserved`` words: "will" is a verb,
    "Will" may be a person."""
    lexicon = Lexicon(currencies=tuple(sorted({c.upper() for c in currencies if c})))
    for kind, values in (("stage", stages), ("country", countries), ("industry", industries), ("city", cities)):
        for value in values:
            if value:
                lexicon.add(value, Named(kind, value, value))
                if kind == "industry" and not normalise_name(value).endswith((" industry", " sector")):
                    lexicon.add(f"{value} industry", Named(kind, value, f"{value} industry"))
                    lexicon.add(f"{value} sector", Named(kind, value, f"{value} sector"))
                if kind == "stage" and not normalise_name(value).endswith(" stage"):
                    lexicon.add(f"{value} stage", Named(kind, value, f"{value} stage"))
                    lexicon.add(f"stage {value}", Named(kind, value, f"stage {value}"))  # "in the Proposal stage"
    for value in pipelines:
        if value:
            lexicon.add(value, Named("pipeline", value, value))
            if not normalise_name(value).endswith(" pipeline"):
                lexicon.add(f"{value} pipeline", Named("pipeline", value, f"{value} pipeline"))
    for kind, records in (("owner", owners), ("company", companies), ("contact", contacts)):
        for record_id, name in records:
            if not name:
                continue
            lexicon.add(name, Named(kind, record_id, name))
            words = normalise_name(name).split()
            partials = [words[0]] if kind == "company" else [words[0], words[-1]]
            for partial in partials:
                if (
                    len(words) > 1
                    and len(partial) >= _MIN_PARTIAL
                    and partial not in reserved
                    and partial not in COMMON_WORDS
                    and partial in capitalised
                ):
                    lexicon.add(partial, Named(kind, record_id, name, exact=False))
    return lexicon


def capitalised_words(question: str) -> frozenset[str]:
    """The words written with a capital letter (the first word too: common words that start a
    question are reserved words, see :data:`COMMON_WORDS`)."""
    words = re.findall(r"[\w&'+-]+", question.replace("\u2019", "'"))
    return frozenset(normalise_name(re.sub(r"'s$", "", w)) for w in words if w[:1].isupper())


def _normalised(column: Any) -> Any:
    """:func:`normalise_name` in SQL: lower case, runs of other characters as one space."""
    return func.btrim(func.regexp_replace(func.lower(column), r"[^\w&'+-]+", " ", "g"))


def load_lexicon(session: Session, question: str, *, reserved: frozenset[str] = frozenset()) -> Lexicon:
    """The lexicon for one question, read in ``session`` (the caller's organization) in one round
    trip: the owners and currencies whole; stage, pipeline, country, industry and city names, and
    companies and contacts, only where a name (or a company's first word, a person's first or last
    name) is a run of the question's words — so its cost does not grow with the organization."""
    grams = bindparam("grams", question_grams(question) or [""], type_=ARRAY(String))
    words = bindparam("words", [g for g in question_grams(question) if " " not in g] or [""], type_=ARRAY(String))

    def named(kind: str, column: Any) -> Any:
        return (
            select(literal(kind).label("kind"), literal("").label("id"), column.label("name"))
            .where(_normalised(column) == any_(grams))
            .distinct()
        )

    # a whole name starts with one of the question's words: matching first words finds them all
    first_word = func.split_part(_normalised(Company.name), literal(" "), 1)
    parts = [
        named("stage", PipelineStage.name),
        named("pipeline", Pipeline.name),
        named("country", Company.country),
        named("industry", Company.industry),
        named("city", Company.city),
        select(literal("currency"), literal(""), Deal.currency).distinct(),
        select(literal("owner"), cast(User.id, String), User.name).where(User.deactivated_at.is_(None)),
        select(literal("company"), cast(Company.id, String), Company.name).where(first_word == any_(words)).limit(200),
        select(literal("contact"), cast(Contact.id, String), func.concat_ws(" ", Contact.first_name, Contact.last_name))
        .where(or_(func.lower(Contact.first_name) == any_(words), func.lower(Contact.last_name) == any_(words)))
        .limit(200),
    ]
    found: dict[str, list[tuple[str, str]]] = defaultdict(list)
    for kind, record_id, name in session.execute(union_all(*[p.subquery().select() for p in parts])):
        if name:
            found[kind].append((record_id, name))

    def names(kind: str) -> list[str]:
        return [name for _, name in found[kind]]

    return build_lexicon(
        stages=names("stage"),
        pipelines=names("pipeline"),
        owners=found["owner"],
        companies=found["company"],
        contacts=found["contact"],
        countries=names("country"),
        industries=names("industry"),
        cities=names("city"),
        currencies=names("currency"),
        reserved=reserved,
        capitalised=capitalised_words(question),
    )
