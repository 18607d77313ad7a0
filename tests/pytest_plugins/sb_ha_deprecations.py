# SPDX-License-Identifier: LGPL-2.1-or-later
"""Fails a Home Assistant test in which Home Assistant reports a deprecation.

Home Assistant rarely warns through the warnings module: its deprecation
helpers (homeassistant.helpers.frame.report_usage and
homeassistant.helpers.deprecation) *log* a warning, once per place, and carry
on; pytest-homeassistant-custom-component turns none of that into a failure
(it only resets frame's "already reported" set between tests). pytest.ini's
filterwarnings make real DeprecationWarnings attributed to homeassistant.* and
custom_components.sockbridge.* errors; this plugin makes the logged reports
errors too: a test phase (set-up, call, tear-down) during which such a record
is logged fails with the records' text.

Loaded by tests/hass/pytest.ini (`-p sb_ha_deprecations`, with
tests/pytest_plugins in its pythonpath).
"""

from __future__ import annotations

from collections.abc import Generator
import logging
import re

import pytest

# What the helpers log: "Detected that custom integration 'x' ...",
# "The deprecated constant X was used from x...", "'old' is deprecated.
# Please rename ...", "... will stop working in Home Assistant 2026.1".
_DEPRECATION = re.compile(
    r"deprecat|Detected that (custom )?integration|stop working in Home Assistant"
    r"|will be removed in HA",
    re.IGNORECASE,
)
# Loggers the reports come from: frame and deprecation log on their own
# logger, or on the logger of the module that defines the deprecated thing
# (homeassistant.*) or that uses it (custom_components.sockbridge.*).
_LOGGERS = re.compile(r"^(homeassistant|custom_components\.sockbridge)(\.|$)")


class _Collector(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        if _LOGGERS.match(record.name) and _DEPRECATION.search(record.getMessage()):
            self.records.append(record)


def _watch() -> Generator[None, None, None]:
    collector = _Collector()
    root = logging.getLogger()
    root.addHandler(collector)
    try:
        yield
    finally:
        root.removeHandler(collector)
    if collector.records:
        lines = "\n".join(f"{r.name}: {r.getMessage()}" for r in collector.records)
        pytest.fail(f"Home Assistant reported a deprecation:\n{lines}", pytrace=False)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_setup(item: pytest.Item) -> Generator[None, None, None]:
    """Fail set-up (e.g. a fixture that sets the integration up) on a report."""
    yield from _watch()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Generator[None, None, None]:
    """Fail the test itself on a report."""
    yield from _watch()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_teardown(
    item: pytest.Item, nextitem: pytest.Item | None
) -> Generator[None, None, None]:
    """Fail tear-down (e.g. unloading the entry) on a report."""
    yield from _watch()
