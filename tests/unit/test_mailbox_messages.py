"""Reading one e-mail into what the CRM keeps (okyaku.mailboxes.messages), and the IMAP LIST
answers the sync resolves folders from (okyaku.mailboxes.imap.parse_list): pure functions."""

from __future__ import annotations

from email.message import EmailMessage

from okyaku.mailboxes.imap import parse_list
from okyaku.mailboxes.messages import TRUNCATED, html_to_text, message_ids, parse_message
from okyaku.mailboxes.store import Directory


def test_html_becomes_readable_text_without_markup_scripts_or_styles() -> None:
    html = (
        "<html><head><title>t</title><style>.x{color:red}</style></head><body>"
        "<p>Hi&nbsp;Ann,</p><div>Price: <b>&euro;1,200</b> per seat</div><script>track()</script>"
        "<ul><li>one</li><li>two</li></ul><p></p><p></p><p>Bye</p></body></html>"
    )
    assert html_to_text(html) == "Hi Ann,\n\nPrice: €1,200 per seat\n\none\n\ntwo\n\nBye"


def test_plain_text_is_preferred_and_attachments_are_listed_not_kept() -> None:
    mail = EmailMessage()
    mail["From"] = '"Doe, Ann" <Ann.Doe@Customer.Example>'
    mail["To"] = "rep@acme.example, Other <other@customer.example>"
    mail["Cc"] = "boss@acme.example"
    mail["Subject"] = "Re:   the \t quote"
    mail["Message-ID"] = "<abc@customer.example>"
    mail["In-Reply-To"] = "<q1@acme.example>"
    mail["References"] = "<root@acme.example> <q1@acme.example>"
    mail.set_content("The plain words")
    mail.add_alternative("<p>The <b>html</b> words</p>", subtype="html")
    mail.add_attachment(b"\x00" * 1234, maintype="application", subtype="pdf", filename="quote.pdf")
    parsed = parse_message(mail.as_bytes(), max_body_chars=1000)
    assert parsed.body == "The plain words"
    assert parsed.from_address == "ann.doe@customer.example" and parsed.from_name == "Doe, Ann"
    assert parsed.to == ("rep@acme.example", "other@customer.example") and parsed.cc == ("boss@acme.example",)
    assert parsed.subject == "Re: the quote"
    assert parsed.message_id == "<abc@customer.example>"
    assert parsed.thread_ids == ("<q1@acme.example>", "<root@acme.example>")
    ((attachment),) = parsed.attachments
    assert (attachment.name, attachment.content_type, attachment.size) == ("quote.pdf", "application/pdf", 1234)


def test_the_body_is_capped_and_says_so() -> None:
    mail = EmailMessage()
    mail["From"] = "a@b.example"
    mail.set_content("word " * 2000)
    parsed = parse_message(mail.as_bytes(), max_body_chars=600)
    assert len(parsed.body) <= 600 and parsed.body.endswith(TRUNCATED) and parsed.body_truncated


def test_a_message_without_message_id_gets_a_stable_one_from_its_content() -> None:
    raw = b"From: a@b.example\r\nSubject: no id\r\n\r\nbody\r\n"
    first = parse_message(raw, max_body_chars=100).message_id
    assert first == parse_message(raw, max_body_chars=100).message_id
    assert first != parse_message(raw.replace(b"body", b"other"), max_body_chars=100).message_id
    assert message_ids(first) == (first,)


def test_message_id_lists_are_read_in_order_once() -> None:
    assert message_ids("<a@x> junk <b@x>\r\n <a@x>") == ("<a@x>", "<b@x>")
    assert message_ids(None) == () and message_ids("no ids") == ()


def test_list_answers_give_names_and_special_uses() -> None:
    lines = [
        b'(\\HasNoChildren) "/" INBOX',
        b'(\\HasNoChildren \\Sent) "/" "[Gmail]/Sent Mail"',
        b'(\\HasChildren \\Noselect) "/" "[Gmail]"',
        (b'(\\HasNoChildren \\Sent) "/" {10}', b"Sent Items"),
        b"not a list line",
    ]
    folders = parse_list(lines)
    assert folders["INBOX"] == frozenset({"\\hasnochildren"})
    assert "\\sent" in folders["[Gmail]/Sent Mail"] and "\\sent" in folders["Sent Items"]
    assert set(folders) == {"INBOX", "[Gmail]/Sent Mail", "[Gmail]", "Sent Items"}


def test_shared_mail_providers_are_never_internal_domains() -> None:
    directory = Directory(frozenset({"rep@acme.example", "ann@gmail.com"}), frozenset({"acme.example"}))
    assert directory.is_internal("anyone@acme.example") and directory.is_internal("ann@gmail.com")
    assert not directory.is_internal("customer@gmail.com")


def test_lists_bulk_auto_replies_and_machine_senders_are_automated() -> None:
    def parsed(sender: str, **headers: str) -> bool:
        mail = EmailMessage()
        mail["From"] = sender
        for name, value in headers.items():
            mail[name.replace("_", "-")] = value
        mail.set_content("x")
        return parse_message(mail.as_bytes(), max_body_chars=100).automated

    assert not parsed("ann@customer.example")
    assert not parsed("ann@customer.example", Auto_Submitted="no")
    assert parsed("ann@customer.example", List_Id="<team.lists.example>")
    assert parsed("ann@customer.example", List_Unsubscribe="<mailto:leave@lists.example>")
    assert parsed("ann@customer.example", Precedence="bulk")
    assert parsed("ann@customer.example", Auto_Submitted="auto-replied")
    for machine in (
        "noreply@x.example",
        "no-reply+abc@x.example",
        "MAILER-DAEMON@x.example",
        "notifications@x.example",
    ):
        assert parsed(machine), machine
    assert not parsed("nora@x.example") and not parsed("newton@x.example")
