"""The admin API as the CLI uses it: finds the gateway and its token, turns errors into text."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click
import httpx

from hookgate.config import env, read_token


class AdminError(click.ClickException):
    """An error answer from the admin API: its message, and the whole answer for a command
    that has more to show (the candidates of an ambiguous lookup)."""

    def __init__(self, message: str, *, status: int, data: Any) -> None:
        super().__init__(message)
        self.status = status
        self.data = data


class AdminClient:
    def __init__(self, *, url: str, token: str | None, data_dir: str | None) -> None:
        self.url = url.rstrip("/")
        directory = Path(data_dir or env("DATA_DIR") or "./hookgate-data")
        self.token = token or read_token(directory)

    def request(self, method: str, path: str, **kwargs: Any) -> Any:
        if not self.token:
            raise click.ClickException(
                "no admin token: pass --token, set HOOKGATE_ADMIN_TOKEN, or run where the "
                "gateway's data directory (--data-dir) holds admin-token"
            )
        try:
            response = httpx.request(
                method,
                self.url + path,
                headers={"authorization": f"Bearer {self.token}"},
                timeout=30,
                **kwargs,
            )
        except httpx.TransportError as exc:
            raise click.ClickException(
                f"cannot reach the gateway's admin API at {self.url} ({exc}); "
                "is `hookgate serve` running? (--admin-url)"
            ) from None
        try:
            data = response.json()
        except ValueError:
            data = {"error": response.text}
        if response.status_code >= 400:
            message = data.get("error") if isinstance(data, dict) else None
            raise AdminError(
                message or f"HTTP {response.status_code}", status=response.status_code, data=data
            )
        return data
