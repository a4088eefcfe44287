"""Next-best actions: typed rules over an organization's facts propose cards, an explicit
expected-value formula ranks them (adjusted by feedback), the LLM words them (checked against the
facts), and apply turns a card into a CRM write through the approval queue. Import submodules
directly (``okyaku.recommendations.service``, ``.rules``, ``.ranking``, ...)."""
