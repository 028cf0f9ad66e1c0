"""``REDIS_URL=redis+sentinel://…``: the state layer on the master a real Sentinel names."""

from __future__ import annotations

import time

from bot.runtime import check_redis
from bot.state import StateStore, Turn, connect_redis
from bot.tune.jobs import JobEvent, JobRecord, JobStore, new_job_id


async def test_the_state_layer_works_through_a_sentinel(redis_sentinel: str, redis_prefix: str) -> None:
    await check_redis(redis_sentinel)  # what start-up does
    redis, in_process = connect_redis(redis_sentinel)
    state = StateStore(redis, redis_prefix)
    try:
        assert not in_process
        assert await state.claim_event("e1", 60) and not await state.claim_event("e1", 60)
        trace = {"channel": "slack:T1:C1", "created_at": time.time()}
        await state.save_answer("tr1", trace, trace_ttl_seconds=600, conversation_key="c",
                                turns=[Turn("user", "q")], max_turns=5, history_ttl_seconds=600)
        assert await state.trace_ids() == ["tr1"] and len(await state.history("c")) == 1
        jobs = JobStore(state)
        job = await jobs.create(JobRecord(id=new_job_id(), backend="openai", base_model="m", data_dir="/d"))
        assert await jobs.save_if_unchanged(job, JobEvent(message="one"))
        assert (await jobs.get(job.id)).revision == 1
    finally:
        keys = [key async for key in redis.scan_iter(match=f"{redis_prefix}:*")]
        if keys:
            await redis.delete(*keys)
        await state.aclose()
