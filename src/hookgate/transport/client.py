"""The aiohttp worker transport: keep-alive pools, errors mapped to ``Reply.error``."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterable, AsyncIterator

import aiohttp
import yarl

from hookgate.errors import WorkerFailed, WorkerTimeout, WorkerUnreachable
from hookgate.runtime.base import Endpoint
from hookgate.transport.base import RESPONSE_HEAD, Outbound, Reply

CHUNK = 64 * 1024


class AiohttpUpstream:
    """A worker's answer being streamed back: status and headers now, the body as it comes."""

    def __init__(self, response: aiohttp.ClientResponse) -> None:
        self._response = response
        self.status = response.status
        self.headers: list[tuple[bytes, bytes]] = list(response.raw_headers)

    @property
    def length(self) -> int | None:
        """The declared body size, None for a streamed (chunked or close-delimited) answer."""
        return self._response.content_length

    async def read(self) -> bytes:
        """The whole body; for answers whose declared size is small."""
        try:
            return await self._response.content.read()
        except TimeoutError:
            raise WorkerTimeout("the worker stopped sending its answer") from None
        except (aiohttp.ClientError, OSError) as exc:
            raise WorkerFailed(f"the worker broke off its answer: {type(exc).__name__}") from None

    async def chunks(self) -> AsyncIterator[bytes]:
        try:
            async for chunk in self._response.content.iter_chunked(CHUNK):
                yield chunk
        except TimeoutError:
            raise WorkerTimeout("the worker stopped sending its answer") from None
        except (aiohttp.ClientError, OSError) as exc:
            raise WorkerFailed(f"the worker broke off its answer: {type(exc).__name__}") from None

    def close(self) -> None:
        """Give the connection back when the answer was read, drop it when it was not."""
        if self._response.content.at_eof():
            self._response.release()
        else:
            self._response.close()


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
        url = yarl.URL(endpoint.base_url + request.target, encoded=True)
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

    async def stream(
        self,
        endpoint: Endpoint,
        *,
        method: str,
        target: str,
        headers: list[tuple[str, str]],
        body: bytes | AsyncIterable[bytes],
        timeout: float,
    ) -> AiohttpUpstream:
        """Send a request (body streamed) and return once the answer's head has arrived."""
        try:
            response = await self._client().request(
                method,
                yarl.URL(endpoint.base_url + target, encoded=True),
                headers=headers,
                data=body,
                timeout=aiohttp.ClientTimeout(total=None, sock_connect=5, sock_read=timeout),
                allow_redirects=False,
                compress=None,
            )
        except TimeoutError:
            raise WorkerTimeout(f"no answer within {timeout:g}s") from None
        except aiohttp.ClientConnectorError as exc:
            raise WorkerUnreachable(f"connection refused: {exc.os_error}") from None
        except aiohttp.ServerDisconnectedError:
            raise WorkerFailed("the worker closed the connection without answering") from None
        except aiohttp.ClientResponseError as exc:
            raise WorkerFailed(f"invalid HTTP from the worker: {exc.message}") from None
        except (aiohttp.ClientError, OSError) as exc:
            cause = exc.__cause__
            if cause is not None and not isinstance(cause, (aiohttp.ClientError, OSError)):
                raise cause from None  # raised by the caller's body iterator: theirs to handle
            raise WorkerFailed(f"{type(exc).__name__}: {exc}") from None
        return AiohttpUpstream(response)

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None
