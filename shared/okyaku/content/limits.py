"""Platform length limits and how each platform counts characters; cutting text to fit."""

from __future__ import annotations

import re
from dataclasses import dataclass

from okyaku.content.schemas import Length, Platform


@dataclass(frozen=True)
class PlatformLimits:
    max_chars: int
    targets: dict[Length, int]  # the length a prompt aims for
    max_hashtags: int
    subject_max_chars: int | None = None  # email only


LIMITS: dict[Platform, PlatformLimits] = {
    Platform.twitter: PlatformLimits(280, {Length.short: 100, Length.medium: 200, Length.long: 270}, 3),
    Platform.linkedin: PlatformLimits(3000, {Length.short: 300, Length.medium: 1200, Length.long: 2500}, 5),
    Platform.facebook: PlatformLimits(63206, {Length.short: 150, Length.medium: 500, Length.long: 1500}, 5),
    Platform.instagram: PlatformLimits(2200, {Length.short: 150, Length.medium: 600, Length.long: 1800}, 30),
    # Email: a subject that fits one RFC 5322 line (78) and a body a reader will finish.
    Platform.email: PlatformLimits(
        5000, {Length.short: 500, Length.medium: 1500, Length.long: 3500}, 0, subject_max_chars=78
    ),
}

_URL = re.compile(r"https?://\S+", re.IGNORECASE)
# twitter-text v3: these code point ranges weigh 1, everything else (CJK, emoji, ...) weighs 2.
_LIGHT_RANGES = ((0, 4351), (8192, 8205), (8208, 8223), (8242, 8247))
_TCO_URL_LENGTH = 23


def _char_weight(char: str) -> int:
    point = ord(char)
    return 1 if any(low <= point <= high for low, high in _LIGHT_RANGES) else 2


def platform_length(platform: Platform, text: str) -> int:
    """Characters as the platform counts them (X weighs URLs as 23 and wide characters as 2)."""
    if platform is not Platform.twitter:
        return len(text)
    total = 0
    position = 0
    for match in _URL.finditer(text):
        total += sum(_char_weight(c) for c in text[position : match.start()]) + _TCO_URL_LENGTH
        position = match.end()
    return total + sum(_char_weight(c) for c in text[position:])


def truncate_to_fit(platform: Platform, text: str, limit: int, ellipsis: str = "…") -> str:
    """The longest word-boundary prefix of ``text`` that, with ``ellipsis``, fits ``limit``."""
    text = text.strip()
    if platform_length(platform, text) <= limit:
        return text
    budget = limit - platform_length(platform, ellipsis)
    if budget <= 0:
        return ""
    words = re.findall(r"\S+\s*", text)
    kept = ""
    for word in words:
        if platform_length(platform, kept + word.rstrip()) > budget:
            break
        kept += word
    kept = kept.rstrip().rstrip(",;:-\u2013\u2014")
    if not kept:  # a single word longer than the budget: cut inside it
        kept = text
        while kept and platform_length(platform, kept) > budget:
            kept = kept[:-1]
    return kept + ellipsis
