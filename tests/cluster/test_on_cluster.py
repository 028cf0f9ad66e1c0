"""The state-layer tests of ``tests/core`` and ``tests/tune``, once more on the 3-node Redis Cluster.

Imported here, they are collected again with this folder's ``redis_url`` (the cluster): every
StateStore write and read they make (dedup claims, rate limits, history, channel settings, traces and
their indexes, feedback, audit, registered profiles, experiments) and every JobStore transaction goes
through ``redis+cluster://``, where a multi-key operation across slots fails with CROSSSLOT.
"""

from tests.core.test_conversation import (  # noqa: F401
    test_history_is_kept_within_a_thread_and_not_across,
    test_history_respects_turn_cap,
    test_rate_limit_refuses_with_when_to_retry,
    test_same_event_twice_gives_one_answer,
    test_top_level_conversations_are_per_user,
)
from tests.core.test_experiments import (  # noqa: F401
    test_each_arm_answers_with_its_model_and_retrieval,
    test_feedback_is_counted_per_arm,
    test_stop_puts_the_channel_back_and_everything_is_audited,
    test_unregistering_a_profile_in_an_experiment,
)
from tests.core.test_profiles import (  # noqa: F401
    test_registered_profile_is_listed_with_origin_and_routes,
    test_registration_rules,
    test_unregister_refused_in_use_then_forced,
)
from tests.core.test_routing import test_admin_switches_one_channel_only, test_second_replica_sees_the_change  # noqa: F401
from tests.core.test_traces import (  # noqa: F401
    test_a_trace_keeps_what_an_export_needs,
    test_one_vote_per_user_and_running_counts,
    test_the_index_is_trimmed_to_the_trace_ttl_on_write,
    test_traces_are_indexed_by_channel_and_time,
)
from tests.tune.test_jobs_openai import (  # noqa: F401
    test_a_failed_job_shows_the_error_as_given,
    test_cancel_asks_the_provider_and_records_it,
    test_start_uploads_creates_and_follows_to_success,
    test_two_followers_show_the_same_events_and_store_each_once,
)
