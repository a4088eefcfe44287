"""mailboxes: users' IMAP connections (HTTP); the schedule fans out one sync job per mailbox onto
the function's own queue (SQS), each message one mailbox's incremental sync."""

from okyaku.coldstart import built_once

with built_once():
    from okyaku.entry import function_handler
    from okyaku.mailboxes.api import create_mailboxes_app
    from okyaku.mailboxes.service import MailboxService
    from okyaku.mailboxes.triggers import make_record_handler, make_schedule_handler
    from okyaku.runtime import Runtime

    service = MailboxService(Runtime())
    app = create_mailboxes_app(service)
    handler = function_handler(
        name="mailboxes",
        http=app,
        on_record=make_record_handler(service),
        on_schedule=make_schedule_handler(service),
    )
