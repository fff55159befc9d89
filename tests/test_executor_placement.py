"""Placement of API-registered agents on executors (services/executor/placement.py),
given/when/then, without NATS: capacity, labels, swarms an executor serves, and the grace after
which any fitting executor takes a waiting agent."""

from __future__ import annotations

from schemas import events as ev
from schemas.fold import fold
from services.executor.placement import Offer, fits, mine, offer_from, plan, waiting

T0 = 100.0


def given(*events: ev.Event):
    swarms = sorted({e.swarm for e in events})
    log = [ev.SwarmCreated(swarm=s, id=s, time=T0, name=s) for s in swarms] + list(events)
    return fold(list(enumerate(log, start=1)))


def registered(
    swarm: str, agent: str, *labels: str, at: float = T0, executor: str | None = None
) -> ev.AgentRegistered:
    return ev.AgentRegistered(
        swarm=swarm, id=agent, time=at, name=agent, executor=executor, labels=list(labels)
    )


def test_agents_of_every_swarm_wait_oldest_first_and_hosted_ones_do_not() -> None:
    board = given(
        registered("b", "late", at=T0 + 2),
        registered("a", "early", at=T0 + 1),
        registered("a", "hosted", executor="ex1"),
    )
    assert [(a.swarm, a.id) for a in waiting(board)] == [("a", "early"), ("b", "late")]


def test_an_agent_goes_to_the_fitting_executor_with_the_most_room_and_uses_a_slot() -> None:
    board = given(registered("a", "one"), registered("a", "two", at=T0 + 1))
    offers = [Offer("ex1", free=2), Offer("ex2", free=1)]
    # given ex1 has more room, it gets the first; then both have 1 free: the lower id wins
    assert plan(waiting(board), offers) == {("a", "one"): "ex1", ("a", "two"): "ex1"}
    offers = [Offer("ex1", free=1), Offer("ex2", free=1)]
    assert plan(waiting(board), offers) == {("a", "one"): "ex1", ("a", "two"): "ex2"}


def test_labels_and_served_swarms_decide_where_an_agent_may_go() -> None:
    board = given(registered("gpu-swarm", "trainer", "gpu"), registered("web", "site"))
    gpu = Offer("ex-gpu", free=1, labels=frozenset({"gpu", "eu"}))
    plain = Offer("ex-plain", free=5)
    web_only = Offer("ex-web", free=9, swarms=frozenset({"web"}))
    trainer, site = waiting(board)
    assert fits(trainer, gpu) and not fits(trainer, plain) and not fits(trainer, web_only)
    assert fits(site, web_only)
    assert plan([trainer, site], [gpu, plain, web_only]) == {
        ("gpu-swarm", "trainer"): "ex-gpu",
        ("web", "site"): "ex-web",
    }


def test_an_agent_no_executor_fits_waits_unplaced() -> None:
    board = given(registered("a", "needs-arm", "arm64"))
    assert plan(waiting(board), [Offer("ex1", free=3)]) == {}
    assert mine(board, Offer("ex1", free=3), [], now=T0 + 1000) == []


def test_an_executor_takes_its_planned_agents_and_after_the_grace_any_that_fit() -> None:
    board = given(registered("a", "one"), registered("a", "two", at=T0 + 1))
    me, other = Offer("ex2", free=1), Offer("ex1", free=5)
    # when ex1 has more room, both are planned there: ex2 takes none yet
    assert mine(board, me, [other], now=T0 + 1, grace=10) == []
    # then ex1 did not act within the grace: ex2 takes what it has room for, oldest first
    assert [a.id for a in mine(board, me, [other], now=T0 + 11, grace=10)] == ["one"]
    # alone, it takes its planned agents at once, up to its room
    assert [a.id for a in mine(board, Offer("ex2", free=2), [], now=T0)] == ["one", "two"]


def test_an_offer_travels_in_the_heartbeat_detail() -> None:
    offer = Offer("ex1", free=3, labels=frozenset({"gpu"}), swarms=frozenset({"a"}))
    assert offer_from(offer.detail()) == offer
    assert offer_from({"executor": "ex1", "free": 2}) == Offer("ex1", free=2)
    assert offer_from({"service": "chat"}) is None
