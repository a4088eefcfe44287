"""``okyaku dev`` makes the mailbox encryption key once per data folder, unless one is set."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from cryptography.fernet import Fernet

from okyaku.cli.dev import _ensure_mailbox_key


def test_the_key_is_made_once_and_kept_private(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Recorded first (absent or not), so that what _ensure_mailbox_key sets is undone afterwards.
    monkeypatch.setenv("MAILBOX_ENCRYPTION_KEY", "")
    monkeypatch.delenv("MAILBOX_ENCRYPTION_KEY")
    _ensure_mailbox_key(tmp_path)
    key = os.environ["MAILBOX_ENCRYPTION_KEY"]
    Fernet(key.encode())  # a valid Fernet key
    path = tmp_path / "mailbox-encryption.key"
    assert path.read_text() == key and path.stat().st_mode & 0o077 == 0
    monkeypatch.delenv("MAILBOX_ENCRYPTION_KEY")
    _ensure_mailbox_key(tmp_path)
    assert os.environ["MAILBOX_ENCRYPTION_KEY"] == key  # the same key next time: stored passwords stay readable


def test_a_key_that_is_set_wins(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MAILBOX_ENCRYPTION_KEY", "from-the-environment")
    _ensure_mailbox_key(tmp_path)
    assert os.environ["MAILBOX_ENCRYPTION_KEY"] == "from-the-environment"
    assert not (tmp_path / "mailbox-encryption.key").exists()
