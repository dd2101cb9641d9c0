"""Credentials inside DATABASE_URL / REDIS_URL survive any character."""

from __future__ import annotations

from urllib.parse import unquote, urlsplit

import pytest

from ansible_collections.rpa.engine.plugins.filter import rpa_url


@pytest.mark.parametrize("password", ["plain0123456789", "with/slash@at:colon", "p%ss#frag?q=1 &+", "ümlaut€"])
def test_a_quoted_password_round_trips_through_a_url(password):
    url = f"postgresql://rpa_engine:{rpa_url.rpa_urlquote(password)}@pgbouncer:6432/rpa_engine"
    parts = urlsplit(url)
    assert (parts.hostname, parts.port, parts.path) == ("pgbouncer", 6432, "/rpa_engine")
    assert unquote(parts.password) == password
