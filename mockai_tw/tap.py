"""``twistd mockai``: command-line options and the service they build."""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from twisted.application.service import IService, MultiService
from twisted.python import usage

from mockai_tw.config import Config, ConfigError
from mockai_tw.config_load import load_config
from mockai_tw.server import ListenService, MockServer, ReloadOnHangup


class Options(usage.Options):
    synopsis = "[--config=config.yaml] [--listen=tcp:8082]"
    longdesc = (
        "Serve a mock of the OpenAI HTTP API. Point an OpenAI SDK's base URL at"
        " http://HOST:PORT/v1 and use one of the configured access tokens as the"
        " API key. MOCKAI_* environment variables override the file (see README)."
    )
    optParameters = [  # noqa: RUF012 - twisted.python.usage reads this shape
        [
            "config",
            "c",
            None,
            "YAML config file (default: $MOCKAI_CONFIG or config.yaml)",
        ],
        [
            "listen",
            "l",
            None,
            "Twisted endpoint to listen on, e.g. tcp:8082 or"
            " tcp:port=8082:interface=127.0.0.1"
            " (overrides the config and $MOCKAI_LISTEN)",
        ],
    ]

    def postOptions(self) -> None:
        try:
            self["loaded"] = configure(self, os.environ)
        except ConfigError as error:
            # One line, no usage dump, no traceback; twistd exits non-zero.
            print(f"mockai: {error}", file=sys.stderr)
            raise SystemExit(1) from None


def config_path(options: Mapping[str, Any], environ: Mapping[str, str]) -> str:
    """The config file the options (or ``$MOCKAI_CONFIG``) name."""
    return str(options.get("config") or environ.get("MOCKAI_CONFIG") or "config.yaml")


def configure(options: Mapping[str, Any], environ: Mapping[str, str]) -> Config:
    """The config the options name, with environment and ``--listen`` applied."""
    config = load_config(config_path(options, environ), environ)
    listen = options.get("listen")
    if listen:
        config = replace(config, http=replace(config.http, listen=listen))
    return config


def makeService(
    options: Mapping[str, Any],
    reactor: Any = None,
    environ: Mapping[str, str] | None = None,
) -> IService:
    """The daemon: one listener serving one MockServer (``reactor`` for tests)."""
    if reactor is None:
        from twisted.internet import reactor as default_reactor

        reactor = default_reactor
    env = os.environ if environ is None else environ
    config = options.get("loaded") or configure(options, env)
    # A reload (SIGHUP, POST /_mock/reload) reads the same file the same way;
    # ``loader`` lets the test helper reload a config given as a dict.
    loader = options.get("loader") or (lambda: configure(options, env))
    path = (
        options["config_path"]
        if "config_path" in options
        else config_path(options, env)
    )
    state = MockServer(config, reactor, loader=loader, config_path=path)
    top = MultiService()
    listener = ListenService(state, config.http.endpoint, reactor)
    listener.setServiceParent(top)
    ReloadOnHangup(state, reactor).setServiceParent(top)
    top.server = state  # type: ignore[attr-defined]
    top.listener = listener  # type: ignore[attr-defined]
    return top
