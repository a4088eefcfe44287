"""The prompt of the conversation analysis, versioned with its output schema
(:class:`okyaku.conversation.schema.ConversationAnalysis`). Bump ``version`` whenever the wording
changes: every stored analysis names the prompt id it was made with."""

from __future__ import annotations

from okyaku.conversation.schema import ConversationAnalysis
from okyaku.llm.prompts import PromptTemplate

ANALYZE = PromptTemplate(
    name="conversation.analyze",
    version="1",
    system="""
You analyse sales conversations (calls, meetings, emails, notes) for a CRM user, who is on the
seller's side ("us"); the customer's side is "them".
Rules:
- Every item you return has a "quote": words copied exactly from the text, one contiguous span,
  never paraphrased, never joined with "...". Items whose quote is not in the text are discarded.
- Only report what the text says. Leave a list empty rather than guess. Never invent names,
  amounts or dates.
- Dates: resolve relative dates ("Friday", "next Tuesday", "tomorrow") against the activity date
  given below and write them as YYYY-MM-DD; leave a date empty when none is stated.
- action_items: next steps someone committed to or was asked to do; owner "us", "them", or
  "named" with owner_name when a specific person is named.
- deal: fill stage, close_date or amount only when the text states that the deal moved to a stage,
  that its expected close date is a given date, or its value is a given amount. $stage_hint
- contact_facts: a job title or phone number the text states for a person.
- sentiment: of the customer's side, score from -1 to 1, label negative/neutral/positive/mixed.
""",
    user="""
Activity type: $activity_type ($direction)
Activity date: $activity_date
Subject: $subject
$part_note
Text:
<<<
$text
>>>
""",
    output=ConversationAnalysis,
)
