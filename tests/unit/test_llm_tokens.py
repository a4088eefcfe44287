"""The token estimate errs high: it must never let a prompt through that a tokenizer counts larger."""

from __future__ import annotations

from okyaku.llm.tokens import chars_for_tokens, estimate_messages, estimate_tokens


def test_prose_is_counted_at_three_characters_a_token():
    text = "The customer asked about renewal pricing for next year."
    assert estimate_tokens(text) == -(-len(text) // 3)


def test_digits_and_wide_characters_count_one_each():
    assert estimate_tokens("4155550123") == 10  # tokenizers split numbers finely
    assert estimate_tokens("東京の会議") == 5


def test_messages_and_tools_add_their_overhead():
    one = estimate_messages([{"role": "user", "content": "hi"}])
    two = estimate_messages([{"role": "system", "content": "hi"}, {"role": "user", "content": "hi"}])
    tool = {"type": "function", "function": {"name": "lookup", "parameters": {"type": "object"}}}
    assert two - one == one - estimate_messages([]) > estimate_tokens("hi")
    assert estimate_messages([{"role": "user", "content": "hi"}], [tool]) > one


def test_chars_for_tokens_is_the_inverse_for_prose():
    text = "word " * 300
    assert estimate_tokens(text[: chars_for_tokens(100)]) <= 100
