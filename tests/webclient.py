"""The dashboard in-process for the web tests: an app on the test database, tokens, login, CSRF values."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from typing import Any

import psycopg
import pytest
from fastapi.testclient import TestClient

from jobcron.admin import tokens as admin_tokens
from jobcron.web.app import create_app

Conn = psycopg.Connection[dict[str, Any]]


@pytest.fixture
def site(conn: Conn, make_config: Callable[..., Any]) -> Iterator[tuple[TestClient, dict[str, str]]]:
    _, admin = admin_tokens.create(conn, "ops", "admin")
    _, viewer = admin_tokens.create(conn, "watch", "viewer")
    conn.commit()
    with TestClient(create_app(make_config()), follow_redirects=False) as client:
        yield client, {"admin": admin, "viewer": viewer}


def log_in(client: TestClient, token: str) -> None:
    answer = client.post("/login", data={"token": token, "csrf": "login"})
    assert answer.status_code == 303 and answer.headers["location"] == "/", answer.text
    cookie = answer.headers["set-cookie"].lower()
    assert "httponly" in cookie and "samesite=strict" in cookie


def csrf(page: str) -> str:
    found = re.search(r'name="csrf" value="([0-9a-f]{64})"', page)
    assert found, page[:500]
    return found.group(1)
