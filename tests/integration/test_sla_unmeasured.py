"""A miner's violation whose metric stops having samples is resolved, so its penalty cannot starve it."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import update

from poolhub.adapters.db.models import FeedbackRow
from tests.integration.conftest import Hub, register
from tests.integration.sla_support import add_feedback, collect, execute, get_json, utcnow
from tests.integration.test_sla import match_ids


async def test_a_violation_whose_miner_has_no_samples_left_in_the_window_is_resolved(
    hub: Hub, clean_db: str
) -> None:
    await register(hub.client, "m-a", price_token_per_ksec="0.50")
    await register(hub.client, "m-b", price_token_per_ksec="0.60")
    await add_feedback(clean_db, "m-a", "failed", 10)
    assert (await collect(hub))["violations_opened"] == 1
    [opened] = await get_json(hub, "/sla/violations")
    assert (opened["miner_id"], opened["violation_type"]) == ("m-a", "completion_rate_pct")
    assert [m for m, _ in await match_ids(hub)] == ["m-b", "m-a"]  # penalised: the coordinator skips it

    # A day without jobs for m-a (ranked last, it got none): its outcomes leave the 24 h window.
    await execute(clean_db, update(FeedbackRow).values(created_at=utcnow() - timedelta(hours=25)))
    answer = await collect(hub)

    assert answer["violations_resolved"] == 1
    assert await get_json(hub, "/sla/violations") == []
    [resolved] = await get_json(hub, "/sla/violations?resolved=true")
    assert resolved["id"] == opened["id"]
    assert resolved["metadata"]["resolved_reason"] == "no_samples"
    assert resolved["resolved_at"] is not None and resolved["duration_sec"] >= 0
    assert resolved["metric_value"] == 0.0  # the last measured value is kept
    ranked = await match_ids(hub)
    assert [m for m, _ in ranked] == ["m-a", "m-b"]
    assert all("sla_penalty" not in explain for _, explain in ranked)
    assert (await get_json(hub, "/sla/status"))["status"] == "healthy"
