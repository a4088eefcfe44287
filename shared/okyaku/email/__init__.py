"""Outgoing e-mail: a durable outbox in Postgres, SMTP and SES transports, the worker that sends.

- ``service``: queue an e-mail (with its outbound activity), read and list them, deliver one.
- ``transports``: SMTP (smtplib) and SES (boto3); errors classified as transient or permanent.
- ``messages``: the RFC 5322 message, its Message-ID generated once.
- ``dispatch``: telling a worker an e-mail is queued (SQS, or a thread locally).
- ``catcher``: ``okyaku dev``'s local SMTP server, so nothing reaches real people.
"""
