"""The parser's lexicon is read under the caller's organization: another organization's names are
not in it, so a question naming them is not understood as if they were ours."""

from __future__ import annotations

from okyaku.chat.execute import read_only
from okyaku.chat.lexicon import load_lexicon
from okyaku.chat.parser import reserved_words
from tests.integration.chat_support import FixedClock, ask, chat_client


def test_the_lexicon_holds_only_the_callers_names(make_tenant, runtime, make_gateway, dead_llm_url):
    ours, theirs = make_tenant("Ours"), make_tenant("Theirs")
    ours.client.post("/api/v1/companies", json={"name": "Kestrel Dynamics", "country": "Norway"})
    ours.client.post("/api/v1/companies", json={"name": "Brown, Lee & Garcia Inc.", "country": "Norway"})
    theirs.client.post("/api/v1/companies", json={"name": "Osprey Systems", "country": "Chile"})
    question = "contacts at Kestrel Dynamics or Osprey Systems in Norway or Chile"
    with read_only(runtime.db, ours.id, timeout_ms=2000, zone="UTC") as session:
        lexicon = load_lexicon(session, question, reserved=reserved_words())
    assert [n.label for n in lexicon.lookup("kestrel dynamics")] == ["Kestrel Dynamics"]
    assert lexicon.lookup("osprey systems") == () and lexicon.lookup("chile") == ()
    assert [n.kind for n in lexicon.lookup("norway")] == ["country"]
    chat = chat_client(runtime, make_gateway(dead_llm_url), ours.org.api_key, FixedClock())
    try:
        assert ask(chat, "companies in Norway")["data"]["total"] == 2
        punctuated = ask(chat, "contacts at Brown, Lee & Garcia Inc.")  # the name as written, commas and all
        assert punctuated["plan"] is not None and "Brown, Lee & Garcia Inc." in punctuated["answer"]
        refused = ask(chat, "companies in Chile")
        assert refused["plan"] is None and refused["data"]["rows"] == []
    finally:
        chat.close()
