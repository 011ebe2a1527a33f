"""Where a monitor's alerts go: ``log``, ``webhook:URL`` and ``email:ADDRESS``.

- **log**: a warning on the ``conveyor.alerts`` logger and one JSON line in ``<home>/logs/alerts.jsonl``.
- **webhook**: ``POST`` of the alert as JSON (``Content-Type: application/json``, ``User-Agent: conveyor``) to the
  URL; a 2xx answer delivers it. A timeout (10 s), a refused connection or another status is retried after 0.5,
  1 and 2 s (four attempts). Each attempt is recorded with its status code or error.
- **email**: a plain-text message through the SMTP server of ``[smtp]`` in ``conveyor.toml`` (``host``, ``port``
  default 25, ``from``, ``user``, ``password_secret`` naming a secret of ``conveyor secrets``, ``starttls``,
  ``ssl``) or ``CONVEYOR_SMTP_HOST`` / ``_PORT`` / ``_FROM`` / ``_USER`` / ``_PASSWORD``; retried like webhooks.

A channel failing never stops the others, nor the monitor's action.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from conveyor.errors import BadInput

if TYPE_CHECKING:
    from conveyor.workspace import Workspace

__all__ = ["BACKOFF_SECONDS", "Delivery", "SmtpSettings", "check_channel", "deliver", "smtp_settings"]

log = logging.getLogger("conveyor.alerts")

BACKOFF_SECONDS = (0.5, 1.0, 2.0)
"""Waits between attempts of a webhook or email delivery (so four attempts in all)."""
TIMEOUT_SECONDS = 10.0
MAX_TARGET = 512
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
CHANNEL_FORMS = "log, webhook:https://host/path or email:someone@example.com"


@dataclass(frozen=True)
class Delivery:
    """One attempt on one channel."""

    channel: str
    target: str
    attempt: int
    ok: bool
    status_code: int | None = None
    error: str | None = None


@dataclass(frozen=True)
class SmtpSettings:
    host: str
    port: int
    sender: str
    user: str | None
    password: str | None
    starttls: bool
    ssl: bool


def check_channel(text: str) -> dict[str, str]:
    """An alert channel parsed: ``{"kind": "log" | "webhook" | "email", "target": ...}``.

    Raises:
        BadInput: an unknown kind, a URL that is not http(s) with a host, a malformed address.
    """
    text = str(text).strip()
    kind, _, target = text.partition(":")
    kind = kind.lower()
    if kind == "log" and not target:
        return {"kind": "log", "target": ""}
    if len(target) > MAX_TARGET:
        raise BadInput(f"The alert target is {len(target)} characters; at most {MAX_TARGET}.")
    if kind == "webhook":
        parts = urlsplit(target)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise BadInput(f"Webhook {target!r} is not an http(s) URL with a host, e.g. webhook:https://host/hook.")
        if parts.username or parts.password:
            raise BadInput(
                "A webhook URL must not carry a user or password (it would be stored and shown in clear); put a token "
                "in the path or query the receiver checks."
            )
        return {"kind": "webhook", "target": target}
    if kind == "email":
        if not _EMAIL.match(target):
            raise BadInput(f"{target!r} is not an email address, e.g. email:oncall@example.com.")
        return {"kind": "email", "target": target}
    raise BadInput(f"Unknown alert channel {text!r}; use {CHANNEL_FORMS}.")


def smtp_settings(ws: Workspace) -> SmtpSettings | None:
    """The SMTP server alerts by email go through, or None when none is configured.

    Raises:
        BadInput: a port that is not a number, a ``password_secret`` that names no secret.
    """
    from conveyor.config import CONFIG_FILE, _read_config_file

    section = _read_config_file(ws.settings.home / CONFIG_FILE).get("smtp", {})
    env = os.environ
    host = env.get("CONVEYOR_SMTP_HOST") or section.get("host")
    if not host:
        return None
    port_text = env.get("CONVEYOR_SMTP_PORT") or section.get("port") or 25
    try:
        port = int(port_text)
    except (TypeError, ValueError):
        raise BadInput(f"The SMTP port {port_text!r} is not a number ([smtp] port or CONVEYOR_SMTP_PORT).") from None
    password = env.get("CONVEYOR_SMTP_PASSWORD")
    if password is None and section.get("password_secret"):
        password = ws.secrets.reveal(str(section["password_secret"]))
    user = env.get("CONVEYOR_SMTP_USER") or section.get("user")
    return SmtpSettings(
        host=str(host),
        port=port,
        sender=str(env.get("CONVEYOR_SMTP_FROM") or section.get("from") or f"conveyor@{host}"),
        user=str(user) if user else None,
        password=password,
        starttls=bool(section.get("starttls", False)),
        ssl=bool(section.get("ssl", False)),
    )


def deliver(
    ws: Workspace, channels: list[dict[str, str]], payload: dict[str, Any], sleep: Callable[[float], None] = time.sleep
) -> list[Delivery]:
    """Send ``payload`` (an alert as JSON) on every channel; every attempt is returned (and none raises)."""
    attempts: list[Delivery] = []
    for channel in channels:
        kind, target = channel["kind"], channel.get("target", "")
        if kind == "log":
            attempts.append(_log(ws, payload))
        elif kind == "webhook":
            attempts += _retried(kind, target, functools.partial(_post, target, payload), sleep)
        elif kind == "email":
            try:
                settings = smtp_settings(ws)
            except Exception as exc:  # noqa: BLE001 - recorded as the delivery's error
                attempts.append(Delivery(kind, target, 1, False, error=str(exc)))
                continue
            if settings is None:
                attempts.append(
                    Delivery(kind, target, 1, False, error="no SMTP server: set [smtp] host in conveyor.toml")
                )
                continue
            attempts += _retried(kind, target, functools.partial(_mail, settings, target, payload), sleep)
        else:
            attempts.append(Delivery(kind, target, 1, False, error=f"unknown channel {kind!r}"))
    return attempts


def _log(ws: Workspace, payload: dict[str, Any]) -> Delivery:
    log.warning("%s", payload.get("message", "monitor alert"))
    try:
        folder = ws.settings.home / "logs"
        folder.mkdir(parents=True, exist_ok=True)
        with (folder / "alerts.jsonl").open("a", encoding="utf-8") as out:
            out.write(json.dumps(payload, default=str) + "\n")
    except OSError as exc:
        return Delivery("log", "", 1, False, error=str(exc))
    return Delivery("log", "", 1, True)


def _retried(kind: str, target: str, send: Callable[[], int | None], sleep: Callable[[float], None]) -> list[Delivery]:
    attempts = []
    for number in range(1, len(BACKOFF_SECONDS) + 2):
        try:
            status = send()
        except Exception as exc:  # noqa: BLE001 - every failure is recorded and retried
            attempts.append(Delivery(kind, target, number, False, error=f"{type(exc).__name__}: {str(exc)[:500]}"))
        else:
            ok = status is None or 200 <= status < 300
            attempts.append(
                Delivery(kind, target, number, ok, status, None if ok else f"the receiver answered {status}")
            )
            if ok:
                break
        if number <= len(BACKOFF_SECONDS):
            sleep(BACKOFF_SECONDS[number - 1])
    return attempts


def _post(url: str, payload: dict[str, Any]) -> int:
    import httpx

    body = json.dumps(payload, default=str).encode()
    answer = httpx.post(
        url,
        content=body,
        headers={"content-type": "application/json", "user-agent": "conveyor"},
        timeout=TIMEOUT_SECONDS,
        follow_redirects=False,
    )
    return answer.status_code


def _mail(settings: SmtpSettings, to: str, payload: dict[str, Any]) -> int | None:
    import smtplib
    from email.message import EmailMessage

    message = EmailMessage()
    message["Subject"] = f"[conveyor] {payload.get('message', 'monitor alert')}"[:250]
    message["From"] = settings.sender
    message["To"] = to
    message.set_content(json.dumps(payload, indent=2, default=str))
    server_class = smtplib.SMTP_SSL if settings.ssl else smtplib.SMTP
    with server_class(settings.host, settings.port, timeout=TIMEOUT_SECONDS) as server:
        if settings.starttls:
            server.starttls()
        if settings.user:
            server.login(settings.user, settings.password or "")
        server.send_message(message)
    return None
