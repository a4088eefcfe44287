"""Questions chat refuses whatever the model would say: other organizations' data, the
database's internals, and changes without approval. Checked before any plan is made."""

from __future__ import annotations

import re

_OTHER_ORGANIZATIONS = re.compile(
    r"\b(other|another|every|all|different|foreign)\s+(organi[sz]ations?|tenants?|workspaces?|customers'? (?:crm|data))\b"  # noqa: E501
    r"|\borgani[sz]ation_id\b|\bacross (?:all )?(?:organi[sz]ations|tenants)\b"
)
_INTERNALS = re.compile(
    r"\b(database schema|db schema|schema|(?:what|which|list(?: the| all)?|show(?: me)?(?: the| all)?) (?:database )?"
    r"(?:tables|columns)|table names|column names|information_schema|pg_[a-z_]+|sql (?:query|queries|statement)|"
    r"raw sql|run sql|select \* from|system prompt|your prompt|your instructions|api keys?|passwords?|credentials|"
    r"connection string|database_url|row[- ]level security)\b"
)
_WRITE_WITHOUT_APPROVAL = re.compile(
    r"\b(without|skip(?:ping)?|bypass(?:ing)?|no need for|don't need)\b.{0,20}\b(approv\w*|review\w*|confirm\w*)\b"
)
_DIRECT_WRITE = re.compile(
    r"^(?:please )?(?:delete|remove|drop|erase|wipe|truncate|update|change|set(?! up)|rename|mark|move|close|merge|"
    r"edit|reassign|assign)\b"
)

REFUSE_OTHER_ORGS = (
    "I can only answer from your organization's records; other organizations' data is not visible to me."
)
REFUSE_INTERNALS = (
    "I can't describe the database's internals. Ask me about your companies, contacts, deals, activities or tasks."
)
REFUSE_WRITES = (
    "I don't change records from chat. I can propose a task or draft an email, which waits in the approval "
    "queue until someone approves it; other changes go through the CRM itself."
)


def refusal(question: str) -> str | None:
    """The refusal for ``question``, or None when it may be answered."""
    text = question.lower()
    if _OTHER_ORGANIZATIONS.search(text):
        return REFUSE_OTHER_ORGS
    if _WRITE_WITHOUT_APPROVAL.search(text) or _DIRECT_WRITE.search(text.strip()):
        return REFUSE_WRITES
    if _INTERNALS.search(text):
        return REFUSE_INTERNALS
    return None
