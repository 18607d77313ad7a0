"""The integration's data files: manifest, translations, services.yaml, hacs.json."""

from __future__ import annotations

import json
from pathlib import Path
import subprocess
from typing import Any
import zipfile

import yaml

from custom_components.sockbridge import config_flow, services
from custom_components.sockbridge.const import DOMAIN

from .helpers import REPO_ROOT

COMPONENT = Path(config_flow.__file__).parent


def load(name: str) -> Any:
    return json.loads((COMPONENT / name).read_text())


def test_manifest() -> None:
    manifest = load("manifest.json")
    assert manifest["domain"] == DOMAIN
    assert manifest["config_flow"] is True
    assert manifest["iot_class"] == "local_push"
    assert manifest["requirements"] == ["dbus-fast>=2.21.1"]
    assert manifest["version"]
    assert "custom_components.sockbridge" in manifest["loggers"]


def test_hacs_json() -> None:
    hacs = json.loads((REPO_ROOT / "hacs.json").read_text())
    assert hacs["name"] == "sockbridge"
    assert hacs["homeassistant"] == "2024.3.0"
    # The integration is not at the repository's top, so HACS must install
    # the release zip that scripts/make-hacs-zip makes.
    assert hacs["zip_release"] is True
    assert hacs["filename"] == "sockbridge.zip"


def test_hacs_zip_holds_the_integration_at_its_top(tmp_path: Path) -> None:
    out = tmp_path / "sockbridge.zip"
    subprocess.run([REPO_ROOT / "scripts" / "make-hacs-zip", out], check=True, capture_output=True)
    names = set(zipfile.ZipFile(out).namelist())
    assert {"manifest.json", "__init__.py", "translations/en.json"} <= names
    assert not any("__pycache__" in name for name in names)


def test_translations_complete() -> None:
    """translations/en.json is strings.json, and every key used is there."""
    strings = load("strings.json")
    assert load("translations/en.json") == strings
    errors = set(strings["config"]["error"])
    assert errors >= {
        "cannot_connect",
        "port_in_use",
        "permission_denied",
        "invalid_delimiter",
        "invalid_option",
        "address_required",
        "identifier_clash",
        "unknown",
    }
    assert set(strings["options"]["error"]) <= errors
    assert set(strings["config"]["step"]["user"]["data"]) == set(config_flow.USER_SCHEMA.schema)
    assert set(strings["config"]["step"]["advanced"]["data"]) == set(
        config_flow.ADVANCED_SCHEMA.schema
    )
    assert set(strings["options"]["step"]["init"]["data"]) == set(config_flow.OPTIONS_SCHEMA.schema)
    entities = {key for platform in strings["entity"].values() for key in platform}
    assert entities == {
        "listening",
        "open_connections",
        "bound_port",
        "last_message",
        "data_received",
        "client_connection",
    }
    assert set(strings["exceptions"]) == {
        "entry_not_loaded",
        "daemon_unavailable",
        "daemon_error",
        "text_or_hex",
        "invalid_escape",
        "invalid_hex",
        "unknown_handle",
        "send_queue_full",
    }


def test_services_yaml() -> None:
    """services.yaml, the schemas and the translations name the same fields."""
    described = yaml.safe_load((COMPONENT / "services.yaml").read_text())
    strings = load("strings.json")["services"]
    schemas = {"send": services.SEND_SCHEMA, "close_client": services.CLOSE_CLIENT_SCHEMA}
    assert set(described) == set(strings) == set(schemas)
    for name, schema in schemas.items():
        fields = {str(key) for key in schema.schema}
        assert set(described[name]["fields"]) == fields
        assert set(strings[name]["fields"]) == fields
        assert strings[name]["name"]
        assert strings[name]["description"]
