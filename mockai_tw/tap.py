"""``twistd mockai``: command-line options and the service they build."""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from twisted.application.service import IService
from twisted.python import usage

from mockai_tw.collector import TunedCollector
from mockai_tw.config import Config, ConfigError
from mockai_tw.config_load import load_config
from mockai_tw.drain import StopOnSignal
from mockai_tw.logs import RootService, twistd_observer
from mockai_tw.server import ListenService, MockServer, ReloadOnHangup
from mockai_tw.web.peers import Peers
from mockai_tw.web.tls import TLSFileError, check_tls_files
from mockai_tw.worker import WorkerService, WorkerSpec
from mockai_tw.workers import (
    check_strategy,
    parse_workers,
    resolve_address,
    supervise,
    worker_count,
)


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
            "Twisted endpoint to listen on, e.g. tcp:8082,"
            " tcp:port=8082:interface=127.0.0.1 or"
            " ssl:8443:privateKey=key.pem:certKey=cert.pem"
            " (overrides the config and $MOCKAI_LISTEN)",
        ],
        [
            "workers",
            "w",
            None,
            "reactor processes serving the one port: N, or auto for one per CPU"
            " this process may use (overrides the config's workers and"
            " $MOCKAI_WORKERS; default 1, a single process)",
        ],
        [
            "worker-socket",
            None,
            None,
            "how several workers share the port: reuseport (the default on"
            " Linux: an SO_REUSEPORT socket each) or inherited (one socket)",
        ],
        ["worker", None, None, "internal: set by the supervising parent"],
        ["runtime-dir", None, None, "internal: set by the supervising parent"],
    ]

    def postOptions(self) -> None:
        try:
            self["loaded"] = configure(self, os.environ)
            check_listen(self["loaded"])
            self["worker-socket"] = check_strategy(self["worker-socket"])
            if self["worker"] is not None:
                self["worker"] = WorkerSpec.parse(self["worker"])
            elif worker_count(self["loaded"]) > 1:
                # Fail here, with one line, rather than in the parent.
                resolve_address(self["loaded"].http.endpoint)
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
    workers = options.get("workers")
    if workers is not None:
        config = replace(config, workers=parse_workers(str(workers)))
    return config


def check_listen(config: Config) -> None:
    """At start only: the key and certificate of an ``ssl:`` endpoint can be
    read and used (a reload keeps the running listener, so it skips this)."""
    try:
        check_tls_files(config.http.endpoint)
    except TLSFileError as error:
        raise ConfigError("http.listen", str(error)) from None


def makeService(
    options: Mapping[str, Any],
    reactor: Any = None,
    environ: Mapping[str, str] | None = None,
) -> IService:
    """The daemon: one listener serving one MockServer (``reactor`` for tests)."""
    # Run by twistd (no reactor given): the process is the daemon's own, so
    # its garbage collector is tuned for it (collector.py); not in tests.
    tuned = reactor is None
    if reactor is None:
        from twisted.internet import reactor as default_reactor

        reactor = default_reactor
    env = os.environ if environ is None else environ
    config = options.get("loaded") or configure(options, env)
    worker = options.get("worker")
    if isinstance(worker, str):
        worker = WorkerSpec.parse(worker)
    if worker is None and worker_count(config) > 1:
        # The parent: it holds the port and runs the workers (workers.py).
        return supervise(config, config_path(options, env), options, reactor)
    # A reload (SIGHUP, POST /_mock/reload) reads the same file the same way;
    # ``loader`` lets the test helper reload a config given as a dict.
    loader = options.get("loader") or (lambda: configure(options, env))
    path = (
        options["config_path"]
        if "config_path" in options
        else config_path(options, env)
    )
    state = MockServer(
        config,
        reactor,
        loader=loader,
        config_path=path,
        worker=None if worker is None else worker.index,
    )
    # Under twistd, log.format: json makes this the Application's log observer.
    top = RootService(twistd_observer(config, options))
    if options.get("tune_gc", tuned):
        # First, so it stops last; what start-up made is frozen as it starts.
        TunedCollector().setServiceParent(top)
    shared = None if worker is None else worker.shared
    listener = ListenService(state, config.http.endpoint, reactor, shared)
    # Before the listener: stopped after it, so its drain has begun (drain.py).
    StopOnSignal(state.drain, reactor).setServiceParent(top)
    listener.setServiceParent(top)
    ReloadOnHangup(state, reactor).setServiceParent(top)
    if worker is not None:
        WorkerService(worker, listener.listening, reactor).setServiceParent(top)
        runtime = options.get("runtime-dir")
        if isinstance(runtime, str) and runtime:
            # Its siblings ask this worker for its metrics, and it them.
            state.peers = Peers(
                reactor, runtime, worker.index, state.metrics.exposition
            )
            state.peers.setServiceParent(top)
    top.server = state  # type: ignore[attr-defined]
    top.listener = listener  # type: ignore[attr-defined]
    return top
