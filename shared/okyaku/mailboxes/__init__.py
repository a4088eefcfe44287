"""Mailboxes: a user's IMAP mailbox brought into the CRM as e-mail activities.

- ``models``: the connections (password encrypted at rest) and per-folder UID cursors;
- ``secrets``: the Fernet encryption of the passwords with ``MAILBOX_ENCRYPTION_KEY``;
- ``messages``: pure parsing of one RFC 5322 message (addresses, threading headers, text from
  HTML, attachments listed, body capped);
- ``imap``: the IMAP client side of an incremental sync (imaplib);
- ``store``: one message into the CRM: deduplicated and threaded by Message-ID, matched to
  contacts, unknown senders proposed through the approval queue;
- ``service``: connections CRUD, the sync of one mailbox, the scheduled fan-out;
- ``api`` and ``triggers``: the mailboxes function's HTTP routes and its schedule / queue triggers.
"""
