"""Test support: a scripted OpenAI-compatible server and the fixtures that start it."""
