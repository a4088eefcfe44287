"""Prompt templates of the content service, each with the schema its answer must match.
Bump a template's version whenever its wording changes: responses name the version used."""

from __future__ import annotations

from functools import lru_cache

from pydantic import BaseModel, Field, create_model

from okyaku.llm.prompts import PromptTemplate

# --- output schemas ----------------------------------------------------------------------


class DraftPost(BaseModel):
    text: str = Field(min_length=1, description="The post body, without the hashtag list")
    hashtags: list[str] = Field(default_factory=list, description="Hashtags without '#'")
    subject: str | None = Field(default=None, description="Email subject line (email only)")


class DraftVariations(BaseModel):
    variations: list[DraftPost] = Field(min_length=1)


class ImprovedPost(DraftPost):
    improvements: list[str] = Field(default_factory=list, description="What changed and why, briefly")


class HashtagList(BaseModel):
    hashtags: list[str] = Field(min_length=1)


class ShortenedText(BaseModel):
    text: str = Field(min_length=1)


@lru_cache(maxsize=8)
def variations_schema(count: int) -> type[DraftVariations]:
    """``DraftVariations`` that insists on exactly ``count`` items, so a short answer gets repaired."""
    return create_model(
        f"DraftVariations{count}",
        __base__=DraftVariations,
        variations=(list[DraftPost], Field(min_length=count, max_length=count)),
    )


# --- templates ---------------------------------------------------------------------------

_WRITER = (
    "You write marketing and sales content for a CRM user. $platform_guide "
    "Write in a $tone tone. Never invent statistics, quotes, prices or customer names."
)

GENERATE = PromptTemplate(
    name="content.generate",
    version="1",
    system=_WRITER,
    user="""
Write one $platform post about: $topic
Length: about $target characters; never more than $limit characters including hashtags.
$hashtag_rule
$emoji_rule
$cta_rule
$brand_voice
$additional_context
""",
    output=DraftPost,
)

VARIATIONS = PromptTemplate(
    name="content.variations",
    version="1",
    system=_WRITER,
    user="""
Write $count distinct variations of the $platform post below. Keep its message; vary the hook,
structure and wording. Each at most $limit characters including hashtags.

Post:
$content
""",
    output=DraftVariations,
)

ADAPT = PromptTemplate(
    name="content.adapt",
    version="1",
    system=_WRITER,
    user="""
Adapt this $source_platform post for $platform. Keep the message and facts; follow $platform's
conventions for length, structure and hashtags. At most $limit characters including hashtags.
$hashtag_rule

$source_platform post:
$content
""",
    output=DraftPost,
)

IMPROVE = PromptTemplate(
    name="content.improve",
    version="1",
    system=_WRITER,
    user="""
Improve this $platform post: clearer hook, tighter wording, stronger close. $focus
Keep the facts. At most $limit characters including hashtags. List the improvements you made.

Post:
$content
""",
    output=ImprovedPost,
)

HASHTAGS = PromptTemplate(
    name="content.hashtags",
    version="1",
    system="You suggest hashtags for social media posts. $platform_guide",
    user="""
Suggest $count relevant hashtags for this $platform post, most relevant first, without '#'.
Mix broad and specific tags; no spaces inside a tag.

Post:
$content
""",
    output=HashtagList,
)

SHORTEN = PromptTemplate(
    name="content.shorten",
    version="1",
    system="You shorten social media and email text without changing its meaning or tone.",
    user="""
This $platform text is $length characters; it must be at most $limit characters.
Rewrite it shorter, keeping the key message and call to action. Do not add hashtags.

Text:
$content
""",
    output=ShortenedText,
)

PLATFORM_GUIDES = {
    "twitter": "Posts for X (Twitter) are punchy, one idea, at most 280 characters.",
    "linkedin": "LinkedIn posts are professional, open with a hook line, use short paragraphs.",
    "facebook": "Facebook posts are conversational and invite comments.",
    "instagram": "Instagram captions are visual and personal; hashtags go at the end.",
    "email": "Emails have a clear subject line and a short, scannable body with one call to action.",
}
