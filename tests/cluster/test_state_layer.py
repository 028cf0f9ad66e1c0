"""The key layout on the cluster: each multi-key operation's keys share a slot, and the cluster is real
(a transaction across slots is refused, so the tests that pass here would catch one)."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator

import pytest
from redis.asyncio.cluster import RedisCluster
from redis.crc import key_slot
from redis.exceptions import RedisClusterException, ResponseError

from bot.state import StateStore, Turn, connect_redis
from bot.tune.jobs import JobEvent, JobRecord, JobStore, new_job_id


@pytest.fixture
async def state(redis_url: str, redis_prefix: str, redis_cleanup: object) -> AsyncIterator[StateStore]:
    redis, _ = connect_redis(redis_url)
    store = StateStore(redis, redis_prefix)
    try:
        yield store
    finally:
        await store.aclose()


def slot(key: str) -> int:
    return int(key_slot(key.encode()))


async def test_the_client_is_a_cluster_client_and_refuses_cross_slot_transactions(state: StateStore) -> None:
    assert isinstance(state.redis, RedisCluster)
    a, b = state.key("probe", "a"), state.key("probe", "b")
    assert slot(a) != slot(b)
    pipe = state.redis.pipeline(transaction=True)
    pipe.set(a, "1")
    pipe.set(b, "1")
    with pytest.raises((RedisClusterException, ResponseError), match=r"(?i)slot"):
        await pipe.execute()


async def test_a_jobs_keys_share_one_slot_and_its_transactions_work(state: StateStore) -> None:
    jobs = JobStore(state)
    job_id = new_job_id()
    keys = [state.tagged_key("tune", job_id, part) for part in ("job", "revision", "events", "cancel", "refresh")]
    assert len({slot(key) for key in keys}) == 1
    assert all(key.startswith(f"{state.prefix}:tune:{{{job_id}}}:") for key in keys)
    job = await jobs.create(JobRecord(id=job_id, backend="openai", base_model="m", data_dir="/d"))
    job = await jobs.save(job, JobEvent(message="one"), JobEvent(message="two"))
    stale = await jobs.get(job_id)
    assert await jobs.save_if_unchanged(stale, JobEvent(message="three"))
    assert not await jobs.save_if_unchanged(job)  # read before the save above: dropped
    again = await jobs.get(job_id)
    assert again.revision == 2
    assert [event.message for _id, event in await jobs.events(job_id)] == ["one", "two", "three"]
    assert [listed.id for listed in await jobs.recent()] == [job_id]


async def test_a_job_saved_in_the_old_layout_is_still_read(state: StateStore) -> None:
    job = JobRecord(id=new_job_id(), backend="openai", base_model="m", data_dir="/d", status="succeeded")
    await state.redis.set(state.key("tune", "job", job.id), job.model_dump_json())
    found = await JobStore(state).get(job.id)
    assert found.status == "succeeded" and found.revision == 0


async def test_one_answer_is_saved_whole_across_slots(state: StateStore) -> None:
    now = time.time()
    trace = {"channel": "slack:T1:C1", "created_at": now, "question": "q"}
    await state.save_answer(
        "tr1", trace, trace_ttl_seconds=600, conversation_key="slack:T1:C1:1.0",
        turns=[Turn("user", "q"), Turn("assistant", "a")], max_turns=5, history_ttl_seconds=600,
    )
    assert len({slot(state.key("trace", "tr1")), slot(state.trace_index("slack:T1:C1")), slot(state.trace_index())}) > 1
    assert await state.trace_ids(channel="slack:T1:C1") == ["tr1"] == await state.trace_ids()
    assert [t.content for t in await state.history("slack:T1:C1:1.0")] == ["q", "a"]
    [loaded] = await state.load_traces(["tr1"], fields=["question"])
    assert loaded == {"question": "q"}
    assert await state.record_feedback("tr1", "U1", "up")
    assert (await state.load_trace("tr1") or {})["votes_up"] == 1
