"""Request and response contracts of the content endpoints (request fields kept from the earlier
backend; see CONTRACTS.md)."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field


class Platform(StrEnum):
    twitter = "twitter"
    linkedin = "linkedin"
    facebook = "facebook"
    instagram = "instagram"
    email = "email"


class Tone(StrEnum):
    professional = "professional"
    casual = "casual"
    friendly = "friendly"
    formal = "formal"
    humorous = "humorous"
    inspirational = "inspirational"
    persuasive = "persuasive"
    educational = "educational"
    enthusiastic = "enthusiastic"


class Length(StrEnum):
    short = "short"
    medium = "medium"
    long = "long"


_PLATFORM_ALIASES = {"x": "twitter", "x/twitter": "twitter", "twitter/x": "twitter", "mail": "email"}


def _platform_name(value: Any) -> Any:
    if isinstance(value, str):
        name = value.strip().lower()
        return _PLATFORM_ALIASES.get(name, name)
    return value


def _lower(value: Any) -> Any:
    return value.strip().lower() if isinstance(value, str) else value


PlatformField = Annotated[
    Platform, BeforeValidator(_platform_name), Field(description="twitter (or x), linkedin, facebook, instagram, email")
]
ToneField = Annotated[Tone, BeforeValidator(_lower)]
LengthField = Annotated[Length, BeforeValidator(_lower)]
ContentText = Annotated[str, Field(min_length=10, max_length=5000, description="The text to work on")]


class _Request(BaseModel):
    model_config = ConfigDict(str_strip_whitespace=True)


class GenerateRequest(_Request):
    topic: str = Field(min_length=3, max_length=500)
    platform: PlatformField
    tone: ToneField = Tone.professional
    length: LengthField = Length.medium
    include_hashtags: bool = True
    include_emojis: bool = True
    include_cta: bool = False
    additional_context: str | None = Field(default=None, max_length=1000)
    brand_voice: str | None = Field(default=None, max_length=500)


class VariationsRequest(_Request):
    content: ContentText
    platform: PlatformField
    num_variations: int = Field(default=3, ge=1, le=5)
    tone: ToneField | None = None


class AdaptRequest(_Request):
    content: ContentText
    source_platform: PlatformField
    target_platform: PlatformField = Field(description="Must differ from source_platform (400 otherwise)")


class ImproveRequest(_Request):
    content: ContentText
    platform: PlatformField
    improvement_focus: str | None = Field(default=None, max_length=200)


class HashtagsRequest(_Request):
    content: ContentText
    platform: PlatformField
    count: int = Field(default=5, ge=1, le=10)


# --- responses ---------------------------------------------------------------------------


class TokenUsage(BaseModel):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


class AIMeta(BaseModel):
    model: str
    prompt_version: str = Field(description="Template name and version that produced this answer")
    usage: TokenUsage
    degraded: bool = Field(description="True when a fallback stood in for the configured model")


class Post(BaseModel):
    content: str = Field(description="The text as it would be published, hashtags included")
    subject: str | None = Field(default=None, description="Email subject (email only)")
    hashtags: list[str] = Field(description="Without '#'")
    character_count: int = Field(description="Counted as the platform counts (X: URLs 23, wide chars 2)")
    character_limit: int
    shortened: bool = Field(description="The first draft was over the limit and the LLM shortened it")
    truncated: bool = Field(description="Still over the limit after shortening, so cut at a word boundary")


class GenerateResponse(Post, AIMeta):
    platform: Platform


class VariationsResponse(AIMeta):
    platform: Platform
    variations: list[Post]


class AdaptResponse(Post, AIMeta):
    source_platform: Platform
    target_platform: Platform


class ImproveResponse(Post, AIMeta):
    platform: Platform
    improvements: list[str] = Field(description="What was changed and why")


class HashtagsResponse(AIMeta):
    platform: Platform
    hashtags: list[str] = Field(description="Without '#', at most `count`")


class FeatureStatus(BaseModel):
    enabled: bool
    available: bool


class PlatformInfo(BaseModel):
    name: Platform
    character_limit: int
    subject_limit: int | None = None
    max_hashtags: int


class ContentStatus(BaseModel):
    available: bool
    degraded: bool
    provider: str
    model: str
    embedding_model: str
    features: dict[str, FeatureStatus]
    platforms: list[PlatformInfo]
    tones: list[Tone]
    lengths: list[Length]
    reasons: list[str] = Field(default_factory=list)
    setup_instructions: list[str] | None = Field(default=None, description="Present when the LLM is unavailable")
