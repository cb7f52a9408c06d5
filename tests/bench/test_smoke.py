"""The smoke benchmark's judgement and its load client (no timings are judged here)."""

from __future__ import annotations

import asyncio

from aiohttp import web

from bench.smoke import load, verdict


def test_only_a_share_under_half_the_baseline_or_an_error_fails() -> None:
    assert verdict(0.25, 0.24, 0)[0]
    assert verdict(0.121, 0.24, 0)[0]
    ok, why = verdict(0.119, 0.24, 0)
    assert not ok and "under half the baseline 0.240" in why
    ok, why = verdict(0.3, 0.24, 2)
    assert not ok and why == "2 request(s) failed"


def test_the_load_client_counts_answers_and_failures_separately() -> None:
    seen: list[bytes] = []

    async def answer(request: web.Request) -> web.Response:
        seen.append(await request.read())
        return web.json_response(1, status=200 if len(seen) % 2 else 500)

    async def main() -> None:
        app = web.Application()
        app.router.add_post("/p", answer)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = runner.addresses[0][1]
        try:
            window = await load(f"http://127.0.0.1:{port}/p", b'{"x": 1}', 0.3, connections=4)
        finally:
            await runner.cleanup()
        assert window.requests + window.errors == len(seen) > 0
        assert abs(window.requests - window.errors) <= 4  # every other answer failed
        assert set(seen) == {b'{"x": 1}'}

    asyncio.run(main())
