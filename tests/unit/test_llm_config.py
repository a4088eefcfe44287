"""The gateway's configuration is Settings read once: same defaults, every field from a setting."""

from __future__ import annotations

import dataclasses

from okyaku.config import Settings
from okyaku.llm import LLMConfig


def test_llm_config_defaults_are_the_settings_defaults_and_ignore_the_environment(monkeypatch):
    monkeypatch.setenv("OLLAMA_MODEL", "from-the-environment")
    defaults = LLMConfig()
    assert defaults.chat_model == Settings.model_fields["ollama_model"].default
    for field in dataclasses.fields(LLMConfig):
        setting = field.metadata["setting"]
        assert getattr(defaults, field.name) == Settings.model_fields[setting].default, field.name


def test_llm_config_from_settings_reads_every_field_from_its_setting():
    changed = {
        "ollama_base_url": "http://llm.example:8080/v1",
        "ollama_model": "qwen2.5",
        "llm_timeout_s": 7.5,
        "llm_max_retries": 0,
        "llm_embedding_fallback_local": False,
    }
    config = LLMConfig.from_settings(Settings(**changed))
    read = {field.metadata["setting"]: getattr(config, field.name) for field in dataclasses.fields(LLMConfig)}
    assert {name: read[name] for name in changed} == changed
    assert read["ai_max_tokens"] == Settings().ai_max_tokens
