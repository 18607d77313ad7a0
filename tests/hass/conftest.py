"""Fixtures: those of busfixtures.py, and Home Assistant's.

See busfixtures.py for the environment the tests read.
"""

from __future__ import annotations

from collections.abc import Iterator
import socket
from typing import Any

import pytest
import pytest_socket

# Fixtures and hooks, found here by pytest.
from .busfixtures import (
    _CALL_FAILED as _CALL_FAILED,
    bus_address as bus_address,
    daemon as daemon,
    pytest_collection_modifyitems as pytest_collection_modifyitems,
    pytest_configure as pytest_configure,
    pytest_runtest_makereport as pytest_runtest_makereport,
    second_bus as second_bus,
    sockbridged_binary as sockbridged_binary,
)


@pytest.fixture(autouse=True)
def _auto_enable_custom_integrations(
    _loopback_and_unix_sockets: None, enable_custom_integrations: None
) -> None:
    """Let Home Assistant load custom_components.sockbridge (and reach the bus)."""


@pytest.fixture
def _loopback_and_unix_sockets() -> Iterator[None]:
    """Connect only to 127.0.0.1 and to Unix sockets (the D-Bus buses).

    The Home Assistant plugin allows 127.0.0.1 only, and refuses Unix
    sockets' connect(); the buses are Unix sockets.
    """
    real = pytest_socket._true_socket
    guarded = real.connect

    def connect(sock: socket.socket, address: Any) -> None:
        if sock.family == socket.AF_UNIX or (
            isinstance(address, tuple) and address[0] == "127.0.0.1"
        ):
            pytest_socket._true_connect(sock, address)
            return
        raise pytest_socket.SocketConnectBlockedError(["127.0.0.1"], address)  # type: ignore[no-untyped-call,unused-ignore]

    setattr(real, "connect", connect)  # noqa: B010 - a method of the socket class
    try:
        yield
    finally:
        setattr(real, "connect", guarded)  # noqa: B010
