"""The integration's files as HACS and hassfest check them."""

from __future__ import annotations

import json
from pathlib import Path
import re
from typing import Any

import yaml

from custom_components.sockbridge import config_flow, const, services
from custom_components.sockbridge.const import DOMAIN

from .helpers import REPO_ROOT

COMPONENT = REPO_ROOT / "custom_components" / DOMAIN
SOURCES = "\n".join(path.read_text() for path in sorted(COMPONENT.glob("*.py")))

QUALITY_RULES = {
    "bronze": [
        "action-setup",
        "appropriate-polling",
        "brands",
        "common-modules",
        "config-flow-test-coverage",
        "config-flow",
        "dependency-transparency",
        "docs-actions",
        "docs-high-level-description",
        "docs-installation-instructions",
        "docs-removal-instructions",
        "entity-event-setup",
        "entity-unique-id",
        "has-entity-name",
        "runtime-data",
        "test-before-configure",
        "test-before-setup",
        "unique-config-entry",
    ],
    "silver": [
        "action-exceptions",
        "config-entry-unloading",
        "docs-configuration-parameters",
        "docs-installation-parameters",
        "entity-unavailable",
        "integration-owner",
        "log-when-unavailable",
        "parallel-updates",
        "reauthentication-flow",
        "test-coverage",
    ],
    "gold": [
        "devices",
        "diagnostics",
        "discovery-update-info",
        "discovery",
        "docs-data-update",
        "docs-examples",
        "docs-known-limitations",
        "docs-supported-devices",
        "docs-supported-functions",
        "docs-troubleshooting",
        "docs-use-cases",
        "dynamic-devices",
        "entity-category",
        "entity-device-class",
        "entity-disabled-by-default",
        "entity-translations",
        "exception-translations",
        "icon-translations",
        "reconfiguration-flow",
        "repair-issues",
        "stale-devices",
    ],
    "platinum": ["async-dependency", "inject-websession", "strict-typing"],
}


def load(name: str) -> Any:
    return json.loads((COMPONENT / name).read_text())


def test_layout_for_hacs() -> None:
    """HACS installs custom_components/<domain>/ from the repository's root."""
    assert (REPO_ROOT / "custom_components" / DOMAIN / "manifest.json").is_file()
    folders = {p.name for p in (REPO_ROOT / "custom_components").iterdir() if p.is_dir()}
    assert folders - {"__pycache__"} == {DOMAIN}
    assert (COMPONENT / "py.typed").is_file()


def test_hacs_json() -> None:
    hacs = json.loads((REPO_ROOT / "hacs.json").read_text())
    allowed = {
        "name",
        "content_in_root",
        "zip_release",
        "filename",
        "hide_default_branch",
        "country",
        "homeassistant",
        "persistent_directory",
        "render_readme",
        "hacs",
    }
    assert set(hacs) <= allowed
    assert hacs["name"] == "sockbridge"
    # The oldest supported release, the one the 2025.12 suite runs on.
    assert hacs["homeassistant"] == "2025.12.0"
    # The integration sits at custom_components/sockbridge: no zip, not in the root.
    assert not hacs.get("zip_release")
    assert not hacs.get("content_in_root")


def test_manifest() -> None:
    """Every key hassfest requires of a custom integration, with valid values."""
    manifest = load("manifest.json")
    assert set(manifest) >= {
        "domain",
        "name",
        "codeowners",
        "config_flow",
        "documentation",
        "integration_type",
        "iot_class",
        "issue_tracker",
        "requirements",
        "version",
    }
    assert manifest["domain"] == DOMAIN
    assert manifest["config_flow"] is True
    assert manifest["iot_class"] == "local_push"
    assert manifest["integration_type"] == "hub"
    # The oldest dbus-fast that tests/hass-dbus-fast runs the suite with.
    assert manifest["requirements"] == ["dbus-fast>=2.23.0"]
    assert re.fullmatch(r"\d+\.\d+\.\d+", manifest["version"])
    assert isinstance(manifest["codeowners"], list)
    assert "custom_components.sockbridge" in manifest["loggers"]
    # hassfest sorts the keys: domain and name first, the rest alphabetically.
    keys = list(manifest)
    assert keys[:2] == ["domain", "name"]
    assert keys[2:] == sorted(keys[2:])


def test_quality_scale() -> None:
    """Each rule of every tier is done, or exempt with a reason."""
    rules = yaml.safe_load((COMPONENT / "quality_scale.yaml").read_text())["rules"]
    expected = {rule for tier in QUALITY_RULES.values() for rule in tier}
    assert set(rules) == expected
    for name, rule in rules.items():
        if rule == "done":
            continue
        assert rule["status"] == "exempt", name
        assert len(rule["comment"]) > 20, name


def keys_of(schema: Any) -> set[str]:
    return {str(key) for key in schema.schema}


def used(pattern: str) -> set[str]:
    return set(re.findall(pattern, SOURCES))


def test_translations_complete() -> None:
    """translations/en.json is strings.json, and every key the code uses is there."""
    strings = load("strings.json")
    assert load("translations/en.json") == strings
    config = strings["config"]
    for step in ("user", "reconfigure"):
        assert set(config["step"][step]["data"]) == keys_of(config_flow.DAEMON_SCHEMA)
    assert set(config["step"]) == {"user", "reconfigure", "hassio_confirm"}
    server = strings["config_subentries"]["server"]
    assert server["initiate_flow"]["user"] == "Add server"
    advanced_keys = keys_of(config_flow.ADVANCED_SCHEMA)
    for step in ("user", "reconfigure"):
        texts = server["step"][step]
        assert set(texts["data"]) | {const.SECTION_ADVANCED} == keys_of(config_flow.SERVER_SCHEMA)
        assert set(texts["sections"]) == {const.SECTION_ADVANCED}
        assert set(texts["sections"][const.SECTION_ADVANCED]["data"]) == advanced_keys
    errors = used(r'"(cannot_connect|port_in_use|permission_denied|invalid_option|unknown)"')
    assert errors <= set(server["error"])
    assert errors - {"port_in_use", "permission_denied", "invalid_option"} <= set(config["error"])
    assert {"address_required"} <= set(config["error"])
    assert {
        "port_configured",
        "identifier_clash",
        "invalid_delimiter",
        "invalid_bind_address",
    } <= set(server["error"])
    entities = {key for platform in strings["entity"].values() for key in platform}
    assert entities == {
        "listening",
        "open_connections",
        "bound_port",
        "last_message",
        "data_received",
        "client_connection",
    }
    icons = load("icons.json")["entity"]
    assert {key for platform in icons.values() for key in platform} == entities
    assert set(strings["exceptions"]) == used(r'translation_key="(\w+)"') | used(
        r'_invalid\(\s*"(\w+)"'
    )
    assert set(strings["issues"]) == {
        const.ISSUE_DAEMON_GONE,
        const.ISSUE_PORT_IN_USE,
        const.ISSUE_SERVER_FAILED,
        const.ISSUE_MIGRATION,
    }


def test_services_yaml() -> None:
    """services.yaml, the schemas and the translations name the same fields."""
    described = yaml.safe_load((COMPONENT / "services.yaml").read_text())
    strings = load("strings.json")["services"]
    schemas = {"send": services.SEND_SCHEMA, "close_client": services.CLOSE_CLIENT_SCHEMA}
    assert set(described) == set(strings) == set(schemas)
    for name, schema in schemas.items():
        fields = keys_of(schema)
        assert set(described[name]["fields"]) == fields
        assert set(strings[name]["fields"]) == fields
        assert strings[name]["name"]
        assert strings[name]["description"]


def test_no_hass_data() -> None:
    """Runtime state lives in the entry's runtime_data."""
    assert "hass.data" not in SOURCES
    assert Path(config_flow.__file__).resolve().parent == COMPONENT.resolve()
