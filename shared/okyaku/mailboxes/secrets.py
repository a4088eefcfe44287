"""IMAP passwords encrypted at rest with Fernet (AES-128-CBC + HMAC-SHA256) under the key in
``MAILBOX_ENCRYPTION_KEY``. Without the key nothing can be connected or synced: a clear 503, never
a password stored in clear. ``cryptography`` is imported when a password is (de)crypted, not when
the function starts."""

from __future__ import annotations

from typing import TYPE_CHECKING

from okyaku.config import Settings
from okyaku.errors import DependencyUnavailable

if TYPE_CHECKING:
    from cryptography.fernet import Fernet


class EncryptionKeyMissing(DependencyUnavailable):
    code = "mailbox_encryption_key_missing"


class EncryptionKeyInvalid(DependencyUnavailable):
    code = "mailbox_encryption_key_invalid"


class PasswordUnreadable(DependencyUnavailable):
    """The stored password was encrypted under another key (the key was changed)."""

    code = "mailbox_password_unreadable"


class EncryptionUnavailable(DependencyUnavailable):
    """``cryptography`` is not installed here (on Lambda only the mailboxes function has its layer)."""

    code = "mailbox_encryption_unavailable"


def _fernet(settings: Settings) -> Fernet:
    try:
        from cryptography.fernet import Fernet
    except ImportError as error:
        raise EncryptionUnavailable(
            "this function cannot encrypt mailbox passwords (the cryptography package is not installed here): "
            "connect the mailbox through POST /api/v1/mailboxes"
        ) from error
    key = settings.mailbox_encryption_key.get_secret_value().strip()
    if not key:
        raise EncryptionKeyMissing(
            "MAILBOX_ENCRYPTION_KEY is not set: mailboxes cannot be connected or synced until it is (generate one "
            'with: python -c "from cryptography.fernet import Fernet; print(Fernet.generate_key().decode())")'
        )
    try:
        return Fernet(key.encode())
    except (ValueError, TypeError) as error:
        raise EncryptionKeyInvalid(
            "MAILBOX_ENCRYPTION_KEY is not a Fernet key (32 url-safe base64-encoded bytes)"
        ) from error


def encrypt_password(settings: Settings, password: str) -> str:
    return _fernet(settings).encrypt(password.encode("utf-8")).decode("ascii")


def decrypt_password(settings: Settings, token: str) -> str:
    fernet = _fernet(settings)
    from cryptography.fernet import InvalidToken

    try:
        return fernet.decrypt(token.encode("ascii")).decode("utf-8")
    except InvalidToken as error:
        raise PasswordUnreadable(
            "the mailbox password cannot be decrypted with the current MAILBOX_ENCRYPTION_KEY: enter it again"
        ) from error
