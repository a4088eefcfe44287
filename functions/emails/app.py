"""emails: /api/v1/emails (HTTP); the outbox worker, on a queue message per queued e-mail (SQS)
and on a sweep of what is due (schedule: retries, and any e-mail whose message was lost)."""

from okyaku.coldstart import built_once

with built_once():
    from okyaku.email.api import create_emails_app
    from okyaku.email.service import EmailService
    from okyaku.entry import function_handler
    from okyaku.runtime import Runtime

    runtime = Runtime()
    service = EmailService(runtime)  # the transport (smtplib or boto3) is built on first send
    app = create_emails_app(service)
    handler = function_handler(name="emails", http=app, on_record=service.on_record, on_schedule=service.sweep)
