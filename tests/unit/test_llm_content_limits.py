"""Platform character counting, cutting to fit, hashtag clean-up."""

import pytest

from okyaku.content.limits import LIMITS, platform_length, truncate_to_fit
from okyaku.content.schemas import Platform
from okyaku.content.service import compose, normalise_hashtags


def test_x_counts_urls_as_23_and_wide_characters_as_2():
    assert platform_length(Platform.twitter, "hello") == 5
    assert platform_length(Platform.twitter, "see https://example.com/a/very/long/path/indeed ok") == 4 + 23 + 3
    assert platform_length(Platform.twitter, "日本") == 4
    assert platform_length(Platform.twitter, "🎉") == 2
    assert platform_length(Platform.linkedin, "日本🎉") == 3


@pytest.mark.parametrize("platform", list(Platform))
def test_truncation_never_exceeds_the_limit_and_cuts_at_a_word(platform):
    limit = LIMITS[platform].max_chars
    text = " ".join(f"word{i} 日本" for i in range(limit))  # far over every limit
    cut = truncate_to_fit(platform, text, limit)
    assert platform_length(platform, cut) <= limit
    assert cut.endswith("…")
    assert text.startswith(cut[:-1])
    assert text[len(cut) - 1] == " "  # the next character of the original is a word break


def test_text_within_the_limit_is_untouched_and_one_huge_word_is_cut_inside():
    assert truncate_to_fit(Platform.twitter, "short enough", 280) == "short enough"
    cut = truncate_to_fit(Platform.twitter, "a" * 400, 280)
    assert platform_length(Platform.twitter, cut) == 280  # "…" weighs 2 on X
    assert cut == "a" * 278 + "…"


def test_hashtags_lose_hash_signs_punctuation_and_duplicates():
    assert normalise_hashtags(["#SaaS", "saas", "#Customer Success", "", "#", "B2B!"], 10) == [
        "SaaS",
        "CustomerSuccess",
        "B2B",
    ]
    assert normalise_hashtags(["a", "b", "c"], 2) == ["a", "b"]


def test_compose_appends_only_hashtags_not_already_in_the_text():
    assert compose("Renewals are up #SaaS", ["saas", "B2B"]) == "Renewals are up #SaaS\n\n#B2B"
    assert compose("No tags ", []) == "No tags"
