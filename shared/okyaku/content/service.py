"""Content generation: prompts in, platform-ready posts out, never over the platform's limit.

An over-long draft is shortened by the LLM once; if it is still too long, hashtags are dropped
from the end and the text is cut at a word boundary. Without the LLM there is no honest answer,
so its errors surface as 503s."""

from __future__ import annotations

import re
import time
from collections.abc import Sequence
from dataclasses import dataclass

from okyaku.content.limits import LIMITS, platform_length, truncate_to_fit
from okyaku.content.prompts import (
    ADAPT,
    GENERATE,
    HASHTAGS,
    IMPROVE,
    PLATFORM_GUIDES,
    SHORTEN,
    VARIATIONS,
    DraftPost,
    HashtagList,
    ImprovedPost,
    ShortenedText,
    variations_schema,
)
from okyaku.content.schemas import (
    AdaptRequest,
    AdaptResponse,
    ContentStatus,
    FeatureStatus,
    GenerateRequest,
    GenerateResponse,
    HashtagsRequest,
    HashtagsResponse,
    ImproveRequest,
    ImproveResponse,
    Length,
    Platform,
    PlatformInfo,
    Post,
    TokenUsage,
    Tone,
    VariationsRequest,
    VariationsResponse,
)
from okyaku.errors import BadRequest, OkyakuError, field_error
from okyaku.llm.budget import operation_worst_case_s
from okyaku.llm.gateway import LLMGateway
from okyaku.llm.health import local_embedder_installed, probe_ollama, same_model
from okyaku.llm.local_embedder import is_local_model
from okyaku.llm.types import Usage

PLATFORM_LABELS = {
    Platform.twitter: "X (Twitter)",
    Platform.linkedin: "LinkedIn",
    Platform.facebook: "Facebook",
    Platform.instagram: "Instagram",
    Platform.email: "email",
}


def normalise_hashtags(tags: Sequence[str], limit: int) -> list[str]:
    """Without '#', word characters only, case-insensitively unique, at most ``limit``."""
    out: list[str] = []
    seen: set[str] = set()
    for tag in tags:
        clean = re.sub(r"[^\w]", "", str(tag).lstrip("#"))
        if clean and clean.lower() not in seen:
            seen.add(clean.lower())
            out.append(clean)
    return out[: max(0, limit)]


def compose(text: str, hashtags: Sequence[str]) -> str:
    """The post as published: the text, then the hashtags it does not already contain."""
    text = text.strip()
    missing = [h for h in hashtags if not re.search(rf"#{re.escape(h)}\b", text, re.IGNORECASE)]
    return f"{text}\n\n{' '.join('#' + h for h in missing)}" if missing else text


@dataclass
class _Fitted:
    post: Post
    usage: Usage


def _usage(usage: Usage) -> TokenUsage:
    return TokenUsage(**usage.as_dict())


# The answer budget for a JSON answer carrying ``chars`` characters of text: prose is about four
# characters a token (three counted, to be safe), plus the keys, hashtags and subject around it.
_JSON_OVERHEAD_TOKENS = 200


def answer_tokens(chars: int) -> int:
    return chars // 3 + _JSON_OVERHEAD_TOKENS


class ContentService:
    def __init__(self, llm: LLMGateway) -> None:
        self.llm = llm

    def _deadline(self) -> float:
        """When a request's model work must end: the worst case of its one structured answer (what
        the function's Timeout is sized for); shortening an over-long draft uses what is left."""
        return time.monotonic() + operation_worst_case_s(self.llm.config, "structured")

    # --- endpoints -----------------------------------------------------------------------
    def generate(self, request: GenerateRequest) -> GenerateResponse:
        self.llm.features.require("content")
        limits = LIMITS[request.platform]
        hashtags = request.include_hashtags and limits.max_hashtags > 0
        messages = GENERATE.render(
            **self._common(request.platform, request.tone),
            topic=request.topic,
            target=limits.targets[request.length],
            hashtag_rule=(
                f"Suggest up to {limits.max_hashtags} relevant hashtags in 'hashtags'."
                if hashtags
                else "Use no hashtags."
            ),
            emoji_rule="Emojis are welcome where natural." if request.include_emojis else "Use no emojis.",
            cta_rule="End with a clear call to action." if request.include_cta else "",
            brand_voice=f"Brand voice: {request.brand_voice}" if request.brand_voice else "",
            additional_context=f"Context: {request.additional_context}" if request.additional_context else "",
        )
        deadline = self._deadline()
        result = self.llm.sync.chat_structured(
            messages,
            DraftPost,
            operation=GENERATE.name,
            max_tokens=answer_tokens(limits.targets[request.length]),
            deadline=deadline,
        )
        fitted = self._fit(request.platform, result.value, include_hashtags=hashtags, deadline=deadline)
        return GenerateResponse(
            **fitted.post.model_dump(),
            platform=request.platform,
            model=result.model,
            prompt_version=GENERATE.id,
            usage=_usage(result.usage + fitted.usage),
            degraded=result.degraded,
        )

    def variations(self, request: VariationsRequest) -> VariationsResponse:
        self.llm.features.require("content")
        schema = variations_schema(request.num_variations)
        messages = VARIATIONS.render(
            **self._common(request.platform, request.tone or Tone.professional),
            count=request.num_variations,
            content=request.content,
        )
        deadline = self._deadline()
        per_variation = min(len(request.content) * 2, LIMITS[request.platform].max_chars)
        result = self.llm.sync.chat_structured(
            messages,
            schema,
            operation=VARIATIONS.name,
            max_tokens=request.num_variations * answer_tokens(per_variation),
            deadline=deadline,
        )
        usage = result.usage
        posts: list[Post] = []
        for draft in result.value.variations:
            fitted = self._fit(request.platform, draft, include_hashtags=True, deadline=deadline)
            posts.append(fitted.post)
            usage += fitted.usage
        return VariationsResponse(
            platform=request.platform,
            variations=posts,
            model=result.model,
            prompt_version=VARIATIONS.id,
            usage=_usage(usage),
            degraded=result.degraded,
        )

    def adapt(self, request: AdaptRequest) -> AdaptResponse:
        if request.source_platform is request.target_platform:
            raise BadRequest(
                "source_platform and target_platform must differ",
                code="same_platform",
                details=[field_error("target_platform", "must differ from source_platform")],
            )
        self.llm.features.require("content")
        target = request.target_platform
        limits = LIMITS[target]
        messages = ADAPT.render(
            **self._common(target, Tone.professional),
            source_platform=PLATFORM_LABELS[request.source_platform],
            hashtag_rule=(
                f"Suggest up to {limits.max_hashtags} hashtags in 'hashtags'."
                if limits.max_hashtags
                else "Use no hashtags."
            ),
            content=request.content,
        )
        deadline = self._deadline()
        result = self.llm.sync.chat_structured(
            messages,
            DraftPost,
            operation=ADAPT.name,
            max_tokens=answer_tokens(min(len(request.content) * 2, limits.max_chars)),
            deadline=deadline,
        )
        fitted = self._fit(target, result.value, include_hashtags=limits.max_hashtags > 0, deadline=deadline)
        return AdaptResponse(
            **fitted.post.model_dump(),
            source_platform=request.source_platform,
            target_platform=target,
            model=result.model,
            prompt_version=ADAPT.id,
            usage=_usage(result.usage + fitted.usage),
            degraded=result.degraded,
        )

    def improve(self, request: ImproveRequest) -> ImproveResponse:
        self.llm.features.require("content")
        messages = IMPROVE.render(
            **self._common(request.platform, Tone.professional),
            focus=f"Focus on: {request.improvement_focus}." if request.improvement_focus else "",
            content=request.content,
        )
        deadline = self._deadline()
        limits = LIMITS[request.platform]
        result = self.llm.sync.chat_structured(
            messages,
            ImprovedPost,
            operation=IMPROVE.name,
            # the improved text and a few lines on what changed
            max_tokens=answer_tokens(min(len(request.content) * 2, limits.max_chars)) + 150,
            deadline=deadline,
        )
        fitted = self._fit(request.platform, result.value, include_hashtags=limits.max_hashtags > 0, deadline=deadline)
        return ImproveResponse(
            **fitted.post.model_dump(),
            platform=request.platform,
            improvements=[i.strip() for i in result.value.improvements if i.strip()],
            model=result.model,
            prompt_version=IMPROVE.id,
            usage=_usage(result.usage + fitted.usage),
            degraded=result.degraded,
        )

    def hashtags(self, request: HashtagsRequest) -> HashtagsResponse:
        if request.platform is Platform.email:
            raise BadRequest(
                "email does not use hashtags",
                code="unsupported_platform",
                details=[field_error("platform", "choose a social platform")],
            )
        self.llm.features.require("content")
        messages = HASHTAGS.render(
            platform=PLATFORM_LABELS[request.platform],
            platform_guide=PLATFORM_GUIDES[request.platform.value],
            count=request.count,
            content=request.content,
        )
        result = self.llm.sync.chat_structured(
            messages, HashtagList, operation=HASHTAGS.name, max_tokens=_JSON_OVERHEAD_TOKENS + 20 * request.count
        )
        return HashtagsResponse(
            platform=request.platform,
            hashtags=normalise_hashtags(result.value.hashtags, request.count),
            model=result.model,
            prompt_version=HASHTAGS.id,
            usage=_usage(result.usage),
            degraded=result.degraded,
        )

    def status(self) -> ContentStatus:
        llm = self.llm
        config = llm.config
        ollama = probe_ollama(llm)
        reasons: list[str] = []
        chat_ready = ollama.reachable and any(same_model(config.chat_model, m) for m in ollama.models)
        if not ollama.reachable:
            reasons.append(f"Ollama is not reachable at {config.base_url}: {ollama.error}")
        elif not chat_ready:
            reasons.append(f"the chat model '{config.chat_model}' is not pulled")
        if is_local_model(config.embedding_model):
            embeddings_ready = local_embedder_installed()
        else:
            embeddings_ready = (
                ollama.reachable and any(same_model(config.embedding_model, m) for m in ollama.models)
            ) or (config.embedding_fallback_local and local_embedder_installed())
        needs = {"content": chat_ready, "chat": chat_ready, "agents": chat_ready, "predictions": True}
        needs["rag"] = embeddings_ready
        features = {
            name: FeatureStatus(enabled=llm.features.enabled(name), available=llm.features.enabled(name) and ready)
            for name, ready in needs.items()
        }
        available = features["content"].available
        setup = None
        if not chat_ready:
            setup = [
                "Install Ollama (https://ollama.com/download) and start it: ollama serve",
                f"Pull the chat model: ollama pull {config.chat_model}",
                f"Pull the embedding model: ollama pull {config.embedding_model}",
                f"Point OLLAMA_BASE_URL at it (now {config.base_url})",
            ]
        return ContentStatus(
            available=available,
            degraded=bool(reasons),
            provider="ollama",
            model=config.chat_model,
            embedding_model=config.embedding_model,
            features=features,
            platforms=[
                PlatformInfo(
                    name=p,
                    character_limit=LIMITS[p].max_chars,
                    subject_limit=LIMITS[p].subject_max_chars,
                    max_hashtags=LIMITS[p].max_hashtags,
                )
                for p in Platform
            ],
            tones=list(Tone),
            lengths=list(Length),
            reasons=reasons,
            setup_instructions=setup,
        )

    # --- limits --------------------------------------------------------------------------
    def _common(self, platform: Platform, tone: Tone) -> dict[str, object]:
        return {
            "platform": PLATFORM_LABELS[platform],
            "platform_guide": PLATFORM_GUIDES[platform.value],
            "tone": tone.value,
            "limit": LIMITS[platform].max_chars,
        }

    def _fit(self, platform: Platform, draft: DraftPost, *, include_hashtags: bool, deadline: float) -> _Fitted:
        limits = LIMITS[platform]
        limit = limits.max_chars
        hashtags = normalise_hashtags(draft.hashtags, limits.max_hashtags) if include_hashtags else []
        text = draft.text.strip()
        usage = Usage()
        shortened = truncated = False
        if platform_length(platform, compose(text, hashtags)) > limit:
            suffix = platform_length(platform, compose("x", hashtags)) - 1
            try:
                result = self.llm.sync.chat_structured(
                    SHORTEN.render(
                        platform=PLATFORM_LABELS[platform],
                        length=platform_length(platform, text),
                        limit=max(1, limit - suffix),
                        content=text,
                    ),
                    ShortenedText,
                    operation=SHORTEN.name,
                    max_tokens=answer_tokens(limit),
                    deadline=deadline,  # only the time the first answer left
                    max_repairs=0,  # cutting at a word boundary below is the fallback
                )
                text, usage, shortened = result.value.text.strip(), result.usage, True
            except OkyakuError:
                pass  # the draft is in hand: cutting it below is still an honest answer
        while hashtags and platform_length(platform, compose(text, hashtags)) > limit:
            hashtags = hashtags[:-1]
            truncated = True
        if platform_length(platform, text) > limit:
            text = truncate_to_fit(platform, text, limit)
            truncated = True
        subject = None
        if platform is Platform.email:
            subject = draft.subject or text.split("\n", 1)[0]
            subject = truncate_to_fit(platform, " ".join(subject.split()), limits.subject_max_chars or 78)
        content = compose(text, hashtags)
        return _Fitted(
            Post(
                content=content,
                subject=subject,
                hashtags=hashtags,
                character_count=platform_length(platform, content),
                character_limit=limit,
                shortened=shortened,
                truncated=truncated,
            ),
            usage,
        )
