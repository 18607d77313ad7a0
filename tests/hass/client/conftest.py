"""Fixtures of the client's tests, which also run without Home Assistant.

tests/hass-dbus-fast runs this directory alone (--confcutdir), in a venv
with pytest and one dbus-fast version but no Home Assistant, so nothing
here may import Home Assistant or its test plugin.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
import sys
import types

import pytest

# Fixtures and hooks, found here by pytest.
from ..busfixtures import (
    _CALL_FAILED as _CALL_FAILED,
    bus_address as bus_address,
    daemon as daemon,
    pytest_collection_modifyitems as pytest_collection_modifyitems,
    pytest_configure as pytest_configure,
    pytest_runtest_makereport as pytest_runtest_makereport,
    second_bus as second_bus,
    sockbridged_binary as sockbridged_binary,
)

if importlib.util.find_spec("homeassistant") is None:
    # The package's __init__ sets the integration up in Home Assistant; the
    # client module needs none of it. An empty package in its place lets
    # `custom_components.sockbridge.client` import client.py alone.
    package = types.ModuleType("custom_components.sockbridge")
    package.__path__ = [
        str(Path(__file__).resolve().parents[3] / "custom_components" / "sockbridge")
    ]
    sys.modules["custom_components.sockbridge"] = package

if importlib.util.find_spec("pytest_socket") is None:

    @pytest.fixture
    def socket_enabled() -> None:
        """Without Home Assistant's plugin nothing blocks sockets."""
