"""Wrong tokens per client address (``schemas.token_failures``), pure: when an address
must wait, for how long, that no other address ever does, and that memory stays bounded. The
clock is the ``now`` each call is given. Over HTTP: tests/test_board_http.py."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from schemas.errors import Invalid
from schemas.token_failures import Limits, TokenFailures, client_key

A, B = "203.0.113.7", "198.51.100.9"


def failures(count: int = 3, window: float = 60.0, addresses: int = 100) -> TokenFailures:
    return TokenFailures(Limits(failures=count, window=window, addresses=addresses))


def test_an_address_waits_after_its_limit_of_wrong_tokens_and_not_before() -> None:
    # given: a limit of 3 wrong tokens per 60 s
    limiter = failures(3, 60)
    # when: A gives two wrong tokens
    assert not limiter.failed(A, 0) and not limiter.failed(A, 1)
    # then: it may still try
    assert limiter.retry_after(A, 2) is None
    # when: the third
    assert limiter.failed(A, 10)
    # then: it waits a whole window from that one, in whole seconds
    assert limiter.retry_after(A, 10) == 60
    assert limiter.retry_after(A, 69.5) == 1
    assert limiter.retry_after(A, 70) is None


def test_wrong_tokens_spread_over_more_than_a_window_never_add_up() -> None:
    limiter = failures(3, 60)
    limiter.failed(A, 0)
    limiter.failed(A, 30)
    assert not limiter.failed(A, 61)  # the window of the first has passed: counting starts again
    assert not limiter.failed(A, 62)
    assert limiter.retry_after(A, 63) is None
    assert limiter.failed(A, 63)


def test_one_address_waiting_never_makes_another_wait() -> None:
    limiter = failures(2, 60)
    limiter.failed(A, 0)
    limiter.failed(A, 0)
    assert limiter.retry_after(A, 1) == 59
    assert limiter.retry_after(B, 1) is None
    assert not limiter.failed(B, 1)


def test_the_warning_is_said_once_per_wait() -> None:
    limiter = failures(2, 60)
    said = [limiter.failed(A, t) for t in (0, 1, 2, 3)]  # two attempts raced past the check
    assert said == [False, True, False, False]
    assert limiter.retry_after(A, 3) == 60  # the wait runs from the last one


def test_no_limit_when_failures_is_zero() -> None:
    limiter = failures(0)
    assert not any(limiter.failed(A, 0) for _ in range(100))
    assert limiter.retry_after(A, 0) is None and len(limiter) == 0


def test_expired_entries_are_forgotten_and_at_most_the_cap_is_tracked() -> None:
    limiter = failures(3, 60, addresses=2)
    limiter.failed("10.0.0.1", 0)
    limiter.failed("10.0.0.2", 1)
    limiter.failed("10.0.0.3", 2)  # over the cap: the oldest goes
    assert len(limiter) == 2
    limiter.failed("10.0.0.4", 61.5)  # the two earlier ones have expired
    assert len(limiter) == 2


@pytest.mark.parametrize(
    "limits",
    [{"failures": -1}, {"window": 0}, {"window": float("nan")}, {"addresses": 0}],
)
def test_limits_that_make_no_sense_are_refused(limits: dict[str, float]) -> None:
    with pytest.raises(Invalid):
        Limits(**limits)  # type: ignore[arg-type]


def test_an_ipv6_client_is_counted_by_its_64_and_an_ipv4_mapped_one_as_ipv4() -> None:
    assert client_key("2001:db8:1:2:aaaa::1") == client_key("2001:db8:1:2:bbbb::9")
    assert client_key("2001:db8:1:2::1") != client_key("2001:db8:1:3::1")
    assert client_key("::ffff:203.0.113.7") == A == client_key(A)
    assert client_key(None) == "" and client_key("unix-peer") == "unix-peer"


Steps = st.lists(st.tuples(st.sampled_from(["a", "b", "c", "d"]), st.floats(0, 30)), max_size=60)


@given(steps=Steps, count=st.integers(1, 5), window=st.floats(1, 100), cap=st.integers(1, 4))
def test_an_address_waits_only_after_its_own_wrong_tokens_and_memory_stays_bounded(
    steps: list[tuple[str, float]], count: int, window: float, cap: int
) -> None:
    limiter = failures(count, window, addresses=cap)
    now = 0.0
    mine: dict[str, list[float]] = {}
    for address, gap in steps:
        now += gap
        waiting = limiter.retry_after(address, now)
        given = mine.get(address, [])
        if waiting is not None:
            # refused only after `count` of its own wrong tokens within one window, the last of
            # them less than a window ago, and for at most a window
            last = given[-count:]
            assert len(last) == count and last[-1] - last[0] < window
            assert now - last[-1] < window and 1 <= waiting <= window + 1
            continue
        limiter.failed(address, now)
        given.append(now)
        mine[address] = given
        assert len(limiter) <= cap
