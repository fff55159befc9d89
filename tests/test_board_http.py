"""The board's HTTP side against a real gateway on real NATS, without a browser: the sign-in
page instead of a 401, the session cookie's flags, the CSRF check on writes made with it, the
header token still working, the security headers, the board stream (the view, then each
change), wrong tokens answered 429 once an address gave too many, and what goes gzipped."""

from __future__ import annotations

import gzip
import json
from collections.abc import AsyncIterator, Iterator
from importlib import resources

import aiohttp
import pytest
from gateway_support import (
    Clock,
    assert_limited_once,
    call,
    gateway_on,
    running,
    sse_events,
    wrong_tokens_counted,
)
from structlog.testing import capture_logs

from schemas.token_failures import Limits
from services.gateway import sessions
from services.gateway.http import accepts_gzip
from services.gateway.service import Gateway

TOKEN = "board-test-token-0123456789"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture(scope="module")
async def gateway(nats_url: str) -> AsyncIterator[Gateway]:
    async with running(gateway_on(nats_url, TOKEN)) as started:
        yield started


@pytest.fixture
async def browser(gateway: Gateway) -> AsyncIterator[aiohttp.ClientSession]:
    """A client with a cookie jar that, like a browser, keeps cookies for 127.0.0.1."""
    jar = aiohttp.CookieJar(unsafe=True)
    async with aiohttp.ClientSession(base_url=gateway.url, cookie_jar=jar) as session:
        yield session


def origin(gateway: Gateway) -> dict[str, str]:
    return {"Origin": gateway.url}


async def sign_in(browser: aiohttp.ClientSession, gateway: Gateway) -> aiohttp.ClientResponse:
    async with browser.post(
        "/sign-in", data={"token": TOKEN}, headers=origin(gateway), allow_redirects=False
    ) as response:
        await response.read()
        return response


async def test_the_board_without_a_session_is_the_sign_in_page_not_a_401(
    browser: aiohttp.ClientSession,
) -> None:
    async with browser.get("/") as response:
        text = await response.text()
        assert response.status == 200 and response.content_type == "text/html"
        assert 'action="/sign-in"' in text and 'name="token"' in text
        csp = response.headers["Content-Security-Policy"]
        assert "default-src 'self'" in csp and "frame-ancestors 'none'" in csp
        assert response.headers["X-Content-Type-Options"] == "nosniff"
        assert "<script>" not in text  # no inline script anywhere
    status, answer = await call(browser, "GET", "/swarms")
    assert status == 401 and answer["error"]["code"] == "unauthorized"


async def test_signing_in_sets_an_httponly_strict_session_that_is_not_the_token(
    browser: aiohttp.ClientSession, gateway: Gateway
) -> None:
    response = await sign_in(browser, gateway)

    assert response.status == 303 and response.headers["Location"] == "/"
    cookie = response.cookies[sessions.COOKIE]
    assert cookie["httponly"] and cookie["samesite"] == "Strict" and cookie["path"] == "/"
    assert not cookie["secure"]  # plain http here: a Secure cookie would never come back
    assert TOKEN not in cookie.value
    async with browser.get("/") as page:
        assert 'id="main"' in await page.text()
    status, swarms = await call(browser, "GET", "/swarms")
    assert status == 200 and isinstance(swarms, list)


async def test_behind_https_the_cookie_is_secure(
    browser: aiohttp.ClientSession, gateway: Gateway
) -> None:
    async with browser.post(
        "/sign-in",
        data={"token": TOKEN},
        headers={"Origin": gateway.url, "X-Forwarded-Proto": "https"},
        allow_redirects=False,
    ) as response:
        assert response.cookies[sessions.COOKIE]["secure"]


async def test_a_wrong_token_shows_the_form_again_with_401_and_no_cookie(
    browser: aiohttp.ClientSession, gateway: Gateway
) -> None:
    async with browser.post(
        "/sign-in", data={"token": "wrong"}, headers=origin(gateway), allow_redirects=False
    ) as response:
        text = await response.text()
        assert response.status == 401 and "not this Swarm" in text
        assert sessions.COOKIE not in response.cookies


async def test_sign_in_from_another_site_is_refused(
    browser: aiohttp.ClientSession, gateway: Gateway
) -> None:
    for headers in ({}, {"Origin": "http://evil.example"}, {"Origin": "null"}):
        async with browser.post(
            "/sign-in", data={"token": TOKEN}, headers=headers, allow_redirects=False
        ) as response:
            assert response.status == 403 and sessions.COOKIE not in response.cookies


async def test_a_write_with_the_cookie_needs_this_gateways_origin(
    browser: aiohttp.ClientSession, gateway: Gateway, swarm_id: str
) -> None:
    await sign_in(browser, gateway)
    body = {"id": swarm_id, "name": "csrf"}

    status, answer = await call(browser, "POST", "/swarms", json=body)
    assert status == 403 and "Origin" in answer["error"]["message"]
    status, _ = await call(
        browser, "POST", "/swarms", json=body, headers={"Origin": "http://evil.example"}
    )
    assert status == 403
    status, _ = await call(browser, "GET", f"/swarms/{swarm_id}")
    assert status == 404  # nothing was written

    status, created = await call(browser, "POST", "/swarms", json=body, headers=origin(gateway))
    assert status == 201 and created["id"] == swarm_id


async def test_the_header_token_still_works_and_a_forged_cookie_does_not(
    gateway: Gateway,
) -> None:
    async with aiohttp.ClientSession(base_url=gateway.url, headers=AUTH) as api:
        status, _ = await call(api, "GET", "/swarms")
        assert status == 200
    forged = {sessions.COOKIE: f"9999999999.abc.{'0' * 64}"}
    async with aiohttp.ClientSession(
        base_url=gateway.url, cookies=forged, cookie_jar=aiohttp.CookieJar(unsafe=True)
    ) as other:
        status, _ = await call(other, "GET", "/swarms")
        assert status == 401


async def test_signing_out_forgets_the_session(
    browser: aiohttp.ClientSession, gateway: Gateway
) -> None:
    await sign_in(browser, gateway)
    async with browser.post("/sign-out", headers=origin(gateway), allow_redirects=False) as out:
        assert out.status == 303
    status, _ = await call(browser, "GET", "/swarms")
    assert status == 401


async def test_the_board_files_are_served_with_the_csp_and_nothing_else_is(
    browser: aiohttp.ClientSession,
) -> None:
    for name, kind in (("board.js", "text/javascript"), ("board.css", "text/css")):
        async with browser.get(f"/board/{name}") as response:
            assert response.status == 200 and response.content_type == kind
            assert "default-src 'self'" in response.headers["Content-Security-Policy"]
    status, _ = await call(browser, "GET", "/board/..%2Fhttp.py")
    assert status == 404
    status, _ = await call(browser, "GET", "/board/signin.html")
    assert status == 404


async def test_the_board_stream_sends_the_view_then_each_change(
    gateway: Gateway, swarm_id: str
) -> None:
    async with aiohttp.ClientSession(base_url=gateway.url, headers=AUTH) as api:
        status, _ = await call(api, "POST", "/swarms", json={"id": swarm_id, "name": "live"})
        assert status == 201
        async with api.get(f"/swarms/{swarm_id}/board/stream") as stream:
            assert stream.headers["Content-Type"] == "text/event-stream"
            (first,) = await sse_events(stream, lambda e: e.get("event") == "board")
            view = json.loads(first["data"])
            assert view["tasks"] == [] and view["swarm"]["id"] == swarm_id
            assert int(first["id"]) == view["seq"]

            body = {"id": "t-1", "title": "Live one", "tags": "ui", "priority": "critical"}
            status, _ = await call(api, "POST", f"/swarms/{swarm_id}/tasks", json=body)
            assert status == 201
            found = await sse_events(stream, lambda e: e.get("event") == "change")
            change = json.loads(found[-1]["data"])
            assert change["event"]["type"] == "task.created" and change["seq"] > view["seq"]
            assert change["task"]["title"] == "Live one"
            assert change["task"]["priority"] == "critical" and change["task"]["tags"] == ["ui"]
            assert change["swarm"]["counts"]["pending"] == 1

        async with api.get(f"/swarms/{swarm_id}/board/stream?follow=0") as once:
            found = await sse_events(once, lambda e: e.get("event") == "end")
            assert [e["event"] for e in found] == ["board", "end"]
            assert [t["id"] for t in json.loads(found[0]["data"])["tasks"]] == ["t-1"]

        body = {"id": "t-2", "title": "Second", "priority": "high"}
        status, _ = await call(api, "POST", f"/swarms/{swarm_id}/tasks", json=body)
        assert status == 201
        async with api.get(f"/swarms/{swarm_id}/board/stream?follow=0&per_status=1") as once:
            found = await sse_events(once, lambda e: e.get("event") == "end")
            view = json.loads(found[0]["data"])
            assert [t["id"] for t in view["tasks"]] == ["t-1"]  # critical before high
            assert view["more"] == {"pending": 1} and view["swarm"]["counts"]["pending"] == 2
        status, answer = await call(api, "GET", "/swarms/no-such-swarm/board/stream")
        assert status == 404, answer


@pytest.fixture
def clock(gateway: Gateway) -> Iterator[Clock]:
    """No wrong tokens counted yet, at most 3 per 60 s, on a clock the test moves."""
    with wrong_tokens_counted(gateway.api, Limits(failures=3, window=60)) as moved:
        yield moved


def from_address(gateway: Gateway, address: str) -> aiohttp.ClientSession:
    """A browser-like client whose requests come from ``address`` (any 127.x.y.z reaches the
    gateway)."""
    connector = aiohttp.TCPConnector(local_addr=(address, 0))
    jar = aiohttp.CookieJar(unsafe=True)
    return aiohttp.ClientSession(base_url=gateway.url, connector=connector, cookie_jar=jar)


async def post_token(
    browser: aiohttp.ClientSession, gateway: Gateway, token: str
) -> tuple[aiohttp.ClientResponse, str]:
    async with browser.post(
        "/sign-in", data={"token": token}, headers=origin(gateway), allow_redirects=False
    ) as response:
        return response, await response.text()


async def test_after_too_many_wrong_tokens_sign_in_answers_429_until_the_window_passes(
    browser: aiohttp.ClientSession, gateway: Gateway, clock: Clock
) -> None:
    with capture_logs() as logs:
        for guess in ("guess-1", "guess-2", "guess-3"):
            response, _ = await post_token(browser, gateway, guess)
            assert response.status == 401

        response, text = await post_token(browser, gateway, TOKEN)  # right, but too late
        assert response.status == 429 and response.headers["Retry-After"] == "60"
        assert "Too many wrong tokens" in text and sessions.COOKIE not in response.cookies
        assert TOKEN not in text
        async with browser.get("/swarms", headers=AUTH) as api:  # the API too: one secret
            answer = await api.json()
            assert api.status == 429 and api.headers["Retry-After"] == "60"
            assert answer["error"]["code"] == "too_many_requests"

        clock.now += 59.5
        response, _ = await post_token(browser, gateway, TOKEN)
        assert response.status == 429 and response.headers["Retry-After"] == "1"
        clock.now += 0.5
        response, _ = await post_token(browser, gateway, TOKEN)
        assert response.status == 303 and sessions.COOKIE in response.cookies

    assert_limited_once(logs, "127.0.0.1", TOKEN, "guess-")


async def test_an_empty_form_is_no_wrong_token(
    browser: aiohttp.ClientSession, gateway: Gateway, clock: Clock
) -> None:
    for _ in range(5):
        response, text = await post_token(browser, gateway, "")
        assert response.status == 401 and "Enter the API token" in text
    assert len(gateway.api.failures) == 0


async def test_wrong_bearer_tokens_count_and_make_only_their_own_address_wait(
    gateway: Gateway, clock: Clock
) -> None:
    async with from_address(gateway, "127.0.0.2") as guesser:
        signed_in = await sign_in(guesser, gateway)  # before the guessing starts
        assert signed_in.status == 303
        for guess in ("guess-1", "guess-2", "guess-3"):
            status, _ = await call(
                guesser, "GET", "/swarms", headers={"Authorization": f"Bearer {guess}"}
            )
            assert status == 401
        status, answer = await call(guesser, "GET", "/swarms", headers=AUTH)
        assert status == 429, answer
        # a request without a token is no attempt, and a board session is not refused
        status, swarms = await call(guesser, "GET", "/swarms")
        assert status == 200 and isinstance(swarms, list)
        guesser.cookie_jar.clear()
        status, _ = await call(guesser, "GET", "/swarms")
        assert status == 401

    async with aiohttp.ClientSession(base_url=gateway.url, headers=AUTH) as other:
        status, _ = await call(other, "GET", "/swarms")  # from 127.0.0.1: not affected
        assert status == 200
    assert gateway.api.failures.retry_after("127.0.0.1", clock.now) is None


async def raw_get(
    gateway: Gateway, path: str, accept_encoding: str
) -> tuple[aiohttp.ClientResponse, bytes]:
    """``path`` as sent (not decompressed by the client)."""
    async with aiohttp.ClientSession(
        base_url=gateway.url, headers=AUTH, auto_decompress=False
    ) as http:
        async with http.get(path, headers={"Accept-Encoding": accept_encoding}) as response:
            return response, await response.read()


async def test_the_board_files_and_large_json_go_gzipped_to_a_client_that_accepts_it(
    gateway: Gateway,
) -> None:
    script = resources.files("services.gateway").joinpath("static", "board.js").read_bytes()
    response, body = await raw_get(gateway, "/board/board.js", "gzip, deflate, br")
    assert response.status == 200 and response.headers["Content-Encoding"] == "gzip"
    assert "Accept-Encoding" in response.headers["Vary"]
    assert gzip.decompress(body) == script and len(body) < len(script) / 2

    response, body = await raw_get(gateway, "/board/board.js", "identity")
    assert "Content-Encoding" not in response.headers and body == script
    response, body = await raw_get(gateway, "/board/board.js", "gzip;q=0, deflate")
    assert "Content-Encoding" not in response.headers and body == script

    response, body = await raw_get(gateway, "/openapi.json", "gzip")
    assert response.headers["Content-Encoding"] == "gzip"
    _, plain = await raw_get(gateway, "/openapi.json", "identity")
    assert json.loads(gzip.decompress(body)) == json.loads(plain)


async def test_event_streams_are_never_compressed(gateway: Gateway, swarm_id: str) -> None:
    async with aiohttp.ClientSession(
        base_url=gateway.url, headers=AUTH, auto_decompress=False
    ) as api:
        status, _ = await call(api, "POST", "/swarms", json={"id": swarm_id, "name": "plain"})
        assert status == 201
        gzipped = {"Accept-Encoding": "gzip"}
        async with api.get(f"/swarms/{swarm_id}/board/stream", headers=gzipped) as stream:
            assert "Content-Encoding" not in stream.headers
            (first,) = await sse_events(stream, lambda e: e.get("event") == "board")
            assert json.loads(first["data"])["swarm"]["id"] == swarm_id
        async with api.get(f"/swarms/{swarm_id}/events?follow=0", headers=gzipped) as events:
            assert "Content-Encoding" not in events.headers
            await sse_events(events, lambda e: e.get("event") == "end")


@pytest.mark.parametrize(
    ("header", "gzipped"),
    [
        ("gzip", True),
        ("gzip, deflate, br, zstd", True),
        ("GZIP;q=0.5", True),
        ("*", True),
        ("deflate, *;q=0.1", True),
        ("x-gzip", True),
        (None, False),
        ("", False),
        ("identity", False),
        ("deflate, br", False),
        ("gzip;q=0", False),
        ("*, gzip;q=0", False),
        ("gzip;q=nope", False),
    ],
)
def test_which_accept_encoding_takes_gzip(header: str | None, gzipped: bool) -> None:
    assert accepts_gzip(header) is gzipped
