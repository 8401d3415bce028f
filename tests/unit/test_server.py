"""gateway.server: the connection handler's answers to requests aiohttp's parser refuses, and graceful stop."""

from __future__ import annotations

import asyncio
import json

from aiohttp import web

from devstack.process import free_port
from gateway.server import error_body, serve

SECRET = "tok-3b9e-never-echoed"


async def _raw(port: int, data: bytes) -> tuple[int, dict[str, str], bytes]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(data)
        await writer.drain()
        async with asyncio.timeout(5):
            raw = await reader.read()
    finally:
        writer.close()
    head, _, body = raw.partition(b"\r\n\r\n")
    status_line, *lines = head.decode("latin-1").split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, v in (line.split(":", 1) for line in lines if ":" in line)}
    return int(status_line.split()[1]), headers, body


async def test_unparseable_requests_get_json_without_request_text_and_the_app_still_serves() -> None:
    hits: list[str] = []

    async def hello(request: web.Request) -> web.Response:
        hits.append(request.path)
        return web.json_response({"ok": True})

    app = web.Application()
    app.router.add_get("/hello", hello)
    port = free_port()
    stop = asyncio.Event()
    server = asyncio.create_task(serve(app, host="127.0.0.1", port=port, stop=stop))
    try:
        for _ in range(100):
            try:
                _, writer = await asyncio.open_connection("127.0.0.1", port)
                writer.close()
                break
            except OSError:
                await asyncio.sleep(0.05)
        for request in (
            f"GET a/{SECRET} HTTP/1.1\r\nHost: x\r\n\r\n",
            f"GET /hello HTTP/1.1\r\nHost: x\r\nAuthorization Bearer {SECRET}\r\n\r\n",
            f"GET /hello HTTP/1.1\r\nHost: x\r\nX-Big: {SECRET}{'b' * 9000}\r\n\r\n",
        ):
            status, headers, body = await _raw(port, request.encode())
            assert 400 <= status < 500
            assert headers["content-type"].startswith("application/json")
            assert headers["cache-control"] == "no-store"  # (_raw read to EOF: the connection was closed)
            assert json.loads(body)["error"] == "invalid_request"
            assert SECRET.encode() not in body
        assert hits == []  # nothing reached the app
        status, _, body = await _raw(port, b"GET /hello HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        assert (status, json.loads(body)) == (200, {"ok": True})
    finally:
        stop.set()
        await asyncio.wait_for(server, 10)
    # stopped: the port is free again
    async with asyncio.timeout(5):
        try:
            await asyncio.open_connection("127.0.0.1", port)
            raise AssertionError("still listening after stop")
        except OSError:
            pass


def test_error_bodies_name_the_problem_in_general_words() -> None:
    assert json.loads(error_body(400)) == {
        "error": "invalid_request",
        "error_description": "the request could not be parsed as HTTP/1.1",
    }
    assert json.loads(error_body(431))["error_description"] == "the request's header fields are too large"
    assert json.loads(error_body(500))["error"] == "server_error"
    assert json.loads(error_body(505))["error_description"] == "http version not supported"
