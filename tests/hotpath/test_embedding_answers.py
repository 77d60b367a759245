"""An embeddings answer (`Answer.data`) is cached by every store and by the journal as it
came: floats and base64 alike, and a chat answer's payload is unchanged by it."""

import uuid

import pytest

from aura_orchestrator.caching.models import CacheEntry
from aura_orchestrator.caching.services import Answer, CachedAnswer
from aura_orchestrator.store import CacheWrite, Finish
from aura_orchestrator.store.journal import decode, encode
from tests.hotpath.test_store import _project, _store, _stores, _telemetry

pytestmark = pytest.mark.django_db(transaction=True)

DATA = [
    {"object": "embedding", "index": 0, "embedding": [0.125, -0.7071067690849304, 1e-08]},
    {"object": "embedding", "index": 1, "embedding": "AACAPwAAAMA="},
]
ANSWER = CachedAnswer("", "primary", "sim-embed", 7, 0, Answer(choices=(), data=DATA))


def test_the_payload_keeps_data_and_a_chat_answer_has_none():
    assert Answer.of_payload(ANSWER.answer.payload()) == ANSWER.answer
    chat = Answer(choices=({"index": 0},))
    assert chat.payload() == {"choices": [{"index": 0}], "passthrough": {}}
    assert Answer.of_payload(chat.payload()) == chat
    assert ANSWER.answer.kept and chat.kept and not Answer(choices=(), passthrough={"a": 1}).kept


def test_the_journal_keeps_an_embeddings_answer():
    finish = Finish(
        reservation=None,
        charge=None,
        session_pk=None,
        cache=CacheWrite(1, "e" * 64, "rag_retrieval", ANSWER, 60),
        telemetry=_telemetry(1, "emb") | {"operation_id": uuid.uuid4()},
    )
    assert decode(encode(finish)).cache == finish.cache


@pytest.mark.asyncio
@pytest.mark.parametrize("name", _stores())
async def test_every_store_answers_the_cached_vectors_as_stored(name):
    store = _store(name)
    project = await _project()
    session, cached = await store.prepare(
        project_id=project, session_id="emb", caps=None, cache_key="e" * 64
    )
    assert cached is None
    operation_id = uuid.uuid4()
    await store.finish(
        Finish(
            reservation=None,
            charge=None,
            session_pk=session.pk,
            cache=CacheWrite(project, "e" * 64, "rag_retrieval", ANSWER, 60),
            telemetry=_telemetry(project, "emb", operation_id=operation_id),
        )
    )
    assert (await CacheEntry.objects.aget(key_hash="e" * 64)).payload["data"] == DATA
    assert await store.cache_lookup(project_id=project, key_hash="e" * 64) == ANSWER
