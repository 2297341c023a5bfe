"""The command-line side of the config that ``run`` and ``ha-remove`` share.

Why one module: ``ha-remove`` must find the same config file ``run`` would use and
reach the same broker under the same device id, and both verbs' flags and error
messages are a contract (scripts call them). Kept here, next to the loader both
verbs already go through, so the daemon and the Home Assistant module need not
import each other. Standard library only.
"""
from __future__ import annotations

import argparse
import os
from typing import Any, Dict

CONFIG_ENV = "EDGE_HOLISTIC_CONFIG"
DEFAULT_CONFIG_PATHS = ("/etc/edge-holistic/config.yaml", "config.yaml")


def default_config_path() -> str:
    """``$EDGE_HOLISTIC_CONFIG``, else the first default that exists, else ``config.yaml`` (whose
    absence the loader then reports by name)."""
    env = os.environ.get(CONFIG_ENV)
    if env:
        return env
    for p in DEFAULT_CONFIG_PATHS:
        if os.path.isfile(p):
            return p
    return DEFAULT_CONFIG_PATHS[-1]


def add_connection_arguments(parser: argparse.ArgumentParser) -> None:
    """The flags that say which broker and which device: every verb that talks MQTT takes them."""
    parser.add_argument("--mqtt-host", metavar="H", help="override mqtt.host")
    parser.add_argument("--mqtt-port", metavar="P", type=int, help="override mqtt.port")
    parser.add_argument("--device-id", metavar="ID", help="override device_id")


def connection_overrides(args: argparse.Namespace) -> Dict[str, Any]:
    """Those flags as config key paths -> (value, flag), validated like file values and named in errors."""
    out: Dict[str, Any] = {}
    if args.mqtt_host:
        out["mqtt.host"] = (args.mqtt_host, "--mqtt-host")
    if args.mqtt_port is not None:
        out["mqtt.port"] = (args.mqtt_port, "--mqtt-port")
    if args.device_id:
        out["device_id"] = (args.device_id, "--device-id")
    return out
