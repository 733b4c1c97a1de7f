"""The aiohttp worker transport: keep-alive pools, errors mapped to ``Reply.error``."""

from __future__ import annotations

import asyncio

import aiohttp

from hookgate.runtime.base import Endpoint
from hookgate.transport.base import RESPONSE_HEAD, Outbound, Reply


class AiohttpTransport:
    def __init__(self) -> None:
        self._session: aiohttp.ClientSession | None = None

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=0, keepalive_timeout=30, use_dns_cache=True),
                cookie_jar=aiohttp.DummyCookieJar(),
                auto_decompress=False,
                skip_auto_headers=("User-Agent", "Accept", "Accept-Encoding", "Content-Type"),
            )
        return self._session

    async def send(
        self, endpoint: Endpoint, request: Outbound, *, timeout: float, keep_body: int = 0
    ) -> Reply:
        url = endpoint.base_url + request.target
        try:
            async with self._client().request(
                request.method,
                url,
                headers=request.headers,
                data=request.body,
                timeout=aiohttp.ClientTimeout(total=timeout),
                allow_redirects=False,
            ) as response:
                body = await response.content.read(max(RESPONSE_HEAD, keep_body))
                return Reply(
                    status=response.status,
                    headers=list(response.headers.items()),
                    head=body[:RESPONSE_HEAD],
                    body=body[:keep_body],
                )
        except TimeoutError:
            return Reply(status=None, error=f"no answer within {timeout:g}s")
        except aiohttp.ClientConnectorError as exc:
            return Reply(status=None, error=f"connection refused: {exc.os_error}")
        except aiohttp.ServerDisconnectedError:
            return Reply(status=None, error="worker closed the connection without answering")
        except aiohttp.ClientResponseError as exc:
            return Reply(status=None, error=f"invalid HTTP from worker: {exc.message}")
        except (aiohttp.ClientError, asyncio.IncompleteReadError, OSError) as exc:
            return Reply(status=None, error=f"{type(exc).__name__}: {exc}")

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None
