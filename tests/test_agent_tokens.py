"""Per-agent tokens (schemas/agent_tokens.py): made and checked with the API token alone."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from schemas.agent_tokens import is_agent_token, make_agent_token, verify_agent_token

API = "api-token-0123456789"
ids = st.from_regex(r"[A-Za-z0-9_-]{1,40}", fullmatch=True)


def test_a_token_names_its_swarm_and_agent_and_carries_a_32_digit_mac() -> None:
    token = make_agent_token(API, "dev", "qa-agent")
    prefix, swarm, agent, mac = token.split(".")
    assert (prefix, swarm, agent) == ("agent", "dev", "qa-agent")
    assert len(mac) == 32 and int(mac, 16) >= 0
    assert is_agent_token(token)


@given(api=st.text(min_size=1, max_size=40), swarm=ids, agent=ids)
def test_a_made_token_verifies_as_its_swarm_and_agent(api: str, swarm: str, agent: str) -> None:
    assert verify_agent_token(api, make_agent_token(api, swarm, agent)) == (swarm, agent)


def test_a_token_made_with_another_api_token_is_refused() -> None:
    assert verify_agent_token(API, make_agent_token("another-api-token", "dev", "qa")) is None


def test_an_agent_cannot_pass_as_another_agent_or_swarm() -> None:
    mac = make_agent_token(API, "dev", "qa").rsplit(".", 1)[1]
    assert verify_agent_token(API, f"agent.dev.frontend.{mac}") is None
    assert verify_agent_token(API, f"agent.prod.qa.{mac}") is None


@pytest.mark.parametrize(
    "token",
    [
        "",
        "agent.dev.qa",
        "agent.dev.qa.",
        "agent.dev.qa.zz" + "0" * 30,
        "agent.dev.qa." + "0" * 31,
        "agent.dev.qa." + "0" * 33,
        "bearer.dev.qa." + "0" * 32,
        "agent.d.e.v.qa." + "0" * 32,
        API,
    ],
)
def test_malformed_tokens_are_refused(token: str) -> None:
    assert verify_agent_token(API, token) is None


def test_a_flipped_mac_digit_is_refused() -> None:
    token = make_agent_token(API, "dev", "qa")
    flipped = token[:-1] + ("0" if token[-1] != "0" else "1")
    assert verify_agent_token(API, flipped) is None


def test_without_an_api_token_nothing_is_made_or_verified() -> None:
    with pytest.raises(ValueError):
        make_agent_token("", "dev", "qa")
    assert verify_agent_token("", make_agent_token(API, "dev", "qa")) is None


def test_ids_that_are_not_subject_tokens_are_refused() -> None:
    with pytest.raises(ValueError):
        make_agent_token(API, "dev.prod", "qa")
    with pytest.raises(ValueError):
        make_agent_token(API, "dev", "q a")
