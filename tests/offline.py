"""Keep a test process off the network, for the yfinance failure paths.

Python sockets refuse to resolve or connect; libcurl (curl_cffi, which yfinance prefers) does not
use Python sockets, so it is sent through a proxy on a local port that refuses every connection.
"""

from __future__ import annotations

import socket

PROXY_VARS = ("HTTPS_PROXY", "HTTP_PROXY", "ALL_PROXY", "https_proxy", "http_proxy", "all_proxy")


def block_network(monkeypatch, refused_port: int) -> None:
    """Patch this process so that every connection attempt fails at the network boundary."""
    for var in PROXY_VARS:
        monkeypatch.setenv(var, f"http://127.0.0.1:{refused_port}")
    for var in ("NO_PROXY", "no_proxy"):
        monkeypatch.delenv(var, raising=False)

    def refuse(*args, **kwargs):
        raise OSError("network disabled in tests")

    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket.socket, "connect", refuse)
