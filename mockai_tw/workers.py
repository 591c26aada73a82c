"""Several reactor processes on one port: the supervising parent and its workers.

The parent holds the port and runs no HTTP itself. It spawns ``twistd -n
mockai --worker=...`` once per worker, restarts one that dies (with a back-off,
so one that cannot start does not spin), forwards SIGHUP and SIGTERM, and
republishes every worker's log events as its own. A worker is the single
process of ``tap.py`` listening on its share of the parent's port; it dies with
its parent. Knows processes, signals and sockets, not what the API answers.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from twisted.application.service import IService, Service
from twisted.internet import defer, error
from twisted.internet.endpoints import serverFromString
from twisted.internet.interfaces import (
    IDelayedCall,
    IListeningPort,
    IProcessTransport,
    IReactorTime,
)
from twisted.internet.protocol import Factory, ProcessProtocol
from twisted.logger import (
    LogEvent,
    Logger,
    LogLevel,
    eventFromJSON,
    globalLogPublisher,
)
from twisted.python.failure import Failure

from mockai_tw import __version__
from mockai_tw.config import Config, ConfigError
from mockai_tw.web.connections import SharedPort
from mockai_tw.web.peers import runtime_base
from mockai_tw.worker import READY_KEY, WorkerSpec, worker_log_observer

log = Logger()

#: ``--workers`` and ``workers:`` at most (the config's bound too).
MAX_WORKERS = 1024
#: How a worker shares the port: its own ``SO_REUSEPORT`` socket bound beside
#: the others (the kernel spreads connections evenly), or the one listening
#: socket the parent made, inherited (every worker accepts from one queue).
STRATEGIES = ("reuseport", "inherited")
#: The descriptor an inherited listening socket has in a worker.
INHERITED_FD = 3
#: A worker's log line longer than this is passed on in pieces.
MAX_LINE_BYTES = 1024 * 1024
#: Runs ``twistd`` from the same interpreter without the working directory on
#: ``sys.path`` (``-c`` puts it first; the ``twistd`` script does not).
TWISTD = "import sys; del sys.path[0]; from twisted.scripts.twistd import run; run()"


# --- how many, and where ----------------------------------------------------


def cpus() -> int:
    """The CPUs this process may run on (its affinity, not the machine's)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def parse_workers(text: str) -> int:
    """``--workers``: a count, or ``auto`` (0) for one per CPU."""
    value = text.strip().lower()
    if value == "auto":
        return 0
    try:
        count = int(value)
    except ValueError:
        count = -1
    if not 0 <= count <= MAX_WORKERS:
        raise ConfigError(
            "--workers", f"must be auto or an integer 0-{MAX_WORKERS}, got {text!r}"
        )
    return count


def worker_count(config: Config) -> int:
    """The processes ``config.workers`` asks for (0: one per CPU)."""
    return config.workers or cpus()


@dataclass(frozen=True)
class Address:
    """Where a TCP (or TLS) endpoint description listens."""

    interface: str
    port: int
    backlog: int

    @property
    def family(self) -> socket.AddressFamily:
        return socket.AF_INET6 if ":" in self.interface else socket.AF_INET

    def where(self, port: int | None = None) -> str:
        host = self.interface or ("::" if self.family == socket.AF_INET6 else "0.0.0.0")
        return f"{host}:{self.port if port is None else port}"


class _Listened(Exception):
    def __init__(self, address: Address) -> None:
        super().__init__()
        self.address = address


class _Recorder:
    """A reactor that only notes where an endpoint would listen."""

    def listenTCP(
        self, port: int, factory: Any, backlog: int = 50, interface: str = ""
    ) -> IListeningPort:
        raise _Listened(Address(interface, port, backlog))

    def listenSSL(
        self,
        port: int,
        factory: Any,
        contextFactory: Any,
        backlog: int = 50,
        interface: str = "",
    ) -> IListeningPort:
        return self.listenTCP(port, factory, backlog, interface)


def resolve_address(description: str) -> Address:
    """The interface, port and backlog of a ``tcp:``/``tcp6:``/``ssl:``
    endpoint description, as Twisted parses it; anything else is refused."""
    refused = ConfigError(
        "http.listen",
        f"several workers need a tcp:, tcp6: or ssl: endpoint, not {description!r}",
    )
    try:
        endpoint = serverFromString(_Recorder(), description)
    except Exception:
        raise refused from None
    found: list[Address] = []

    def listened(failure: Failure) -> None:
        if isinstance(failure.value, _Listened):
            found.append(failure.value.address)

    try:
        endpoint.listen(Factory()).addCallbacks(lambda _: None, listened)
    except AttributeError:  # an endpoint asking for what _Recorder lacks
        raise refused from None
    if not found:
        raise refused
    return found[0]


# --- the worker's side -------------------------------------------------------


# --- the parent's side -------------------------------------------------------


class Backoff:
    """How long to wait before starting a worker again: ``first`` seconds,
    doubling after each quick death up to ``most``; a worker that stayed up
    ``steady_s`` starts the count again."""

    def __init__(
        self, first: float = 0.5, most: float = 30.0, steady_s: float = 10.0
    ) -> None:
        self.first = first
        self.most = most
        self.steady_s = steady_s
        self.delay = first

    def after(self, uptime: float) -> float:
        """The wait before the next start of a worker that ran ``uptime`` s."""
        if uptime >= self.steady_s:
            self.delay = self.first
        delay = self.delay
        self.delay = min(self.delay * 2, self.most)
        return delay


def worker_event(line: bytes, index: int) -> LogEvent:
    """A worker's log line as an event of the parent's (a line that is not an
    event, such as a traceback printed before logging started, is its text)."""
    text = line.decode("utf-8", "replace").strip("\x1e\r\n")
    event: Any = None
    if text.startswith("{"):
        with contextlib.suppress(ValueError):
            event = eventFromJSON(text)
    if not isinstance(event, dict) or "log_time" not in event:
        event = {
            "log_format": "{line}",
            "line": text,
            "log_level": LogLevel.warn,
            "log_namespace": __name__,
            "log_time": time.time(),
        }
    event["worker"] = index
    event["log_system"] = f"worker-{index}"
    return event


class WorkerProcess(ProcessProtocol):
    """The parent's end of one worker: its output, its exit."""

    def __init__(
        self,
        index: int,
        ready: Callable[[int], None],
        ended: Callable[[int, BaseException], None],
        publish: Callable[[LogEvent], None] = globalLogPublisher,
    ) -> None:
        self.index = index
        self.ready = ready
        self.ended = ended
        self.publish = publish
        self.pending = {1: b"", 2: b""}

    def outReceived(self, data: bytes) -> None:
        self._lines(1, data)

    def errReceived(self, data: bytes) -> None:
        self._lines(2, data)

    def _lines(self, fd: int, data: bytes) -> None:
        *lines, rest = (self.pending[fd] + data).split(b"\n")
        while len(rest) > MAX_LINE_BYTES:
            lines.append(rest[:MAX_LINE_BYTES])
            rest = rest[MAX_LINE_BYTES:]
        self.pending[fd] = rest
        for line in lines:
            if line.strip():
                self._line(line)

    def _line(self, line: bytes) -> None:
        event = worker_event(line, self.index)
        if event.get(READY_KEY):
            self.ready(self.index)
            return
        self.publish(event)

    def processEnded(self, reason: Failure) -> None:
        for fd in (1, 2):
            rest, self.pending[fd] = self.pending[fd], b""
            if rest.strip():
                self._line(rest)
        self.ended(self.index, reason.value or Exception("ended"))


def describe_exit(reason: BaseException) -> str:
    code = getattr(reason, "exitCode", None)
    sig = getattr(reason, "signal", None)
    if sig is not None:
        with contextlib.suppress(ValueError):
            return f"was killed by {signal.Signals(sig).name}"
        return f"was killed by signal {sig}"
    return f"exited with status {code}" if code else "exited"


class Launcher:
    """What the supervisor needs of the outside world: the port and processes
    (a test stands in a fake)."""

    def open(self) -> str:
        """Take the port; returns where it listens (``host:port``)."""
        raise NotImplementedError

    def where(self) -> str:
        """Where the port is, for a line saying it could not be taken."""
        return "the port"

    def spawn(self, index: int, protocol: WorkerProcess) -> IProcessTransport:
        raise NotImplementedError

    def close(self) -> None:
        """Let the port go (the workers have all exited)."""


class ProcessLauncher(Launcher):
    """Holds the port in the parent and spawns ``twistd`` workers on it."""

    def __init__(
        self,
        reactor: Any,
        address: Address,
        strategy: str,
        arguments: Sequence[str],
        environ: dict[str, str] | None = None,
        scheme: str = "http",
    ) -> None:
        self.reactor = reactor
        self.address = address
        self.strategy = strategy
        self.scheme = scheme
        self.arguments = list(arguments)
        self.environ = dict(os.environ if environ is None else environ)
        self.socket: socket.socket | None = None
        self.shared = SharedPort()
        # The run's own directory (the workers' metrics sockets): fresh at
        # open, removed at close.
        self.runtime: str | None = None
        # files.dir for every worker when the config sets none (files.backend
        # disk): one directory they all read, so a file uploaded through one
        # is read through any other; made at open, removed at close.
        self.share_files = False
        self.files_dir: str | None = None

    def where(self) -> str:
        return self.address.where()

    def open(self) -> str:
        address = self.address
        sock = socket.socket(address.family, socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if self.strategy == "reuseport":
                # Bound, never listening: it keeps the port for the workers
                # (and a worker's replacement) and takes no connections.
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            sock.bind((address.interface, address.port))
            if self.strategy == "inherited":
                sock.listen(address.backlog)
                sock.setblocking(False)
        except OSError:
            sock.close()
            raise
        self.socket = sock
        self.runtime = tempfile.mkdtemp(
            prefix="mockai-", dir=runtime_base(self.environ)
        )
        if self.share_files:
            # Not in the runtime directory: that may be a small tmpfs.
            self.files_dir = tempfile.mkdtemp(prefix="mockai-files-")
            self.environ["MOCKAI_FILES__DIR"] = self.files_dir
        port = sock.getsockname()[1]
        self.shared = (
            SharedPort(port=port)
            if self.strategy == "reuseport"
            else SharedPort(fd=INHERITED_FD)
        )
        return address.where(port)

    def argv(self, index: int) -> list[str]:
        spec = WorkerSpec(index, os.getpid(), self.shared)
        return [
            sys.executable,
            "-c",
            TWISTD,
            "-n",
            "--pidfile=",
            f"--logger={worker_log_observer.__module__}.worker_log_observer",
            "mockai",
            *self.arguments,
            f"--worker={spec.argument()}",
            *([f"--runtime-dir={self.runtime}"] if self.runtime else []),
        ]

    def spawn(self, index: int, protocol: WorkerProcess) -> IProcessTransport:
        # stdin: the parent-death pipe; stdout: log events; stderr: the rest.
        fds: dict[int, int | str] = {0: "w", 1: "r", 2: "r"}
        if self.shared.fd is not None and self.socket is not None:
            fds[self.shared.fd] = self.socket.fileno()
        argv = self.argv(index)
        process: IProcessTransport = self.reactor.spawnProcess(
            protocol, argv[0], argv, env=self.environ, childFDs=fds
        )
        return process

    def close(self) -> None:
        sock, self.socket = self.socket, None
        if sock is not None:
            sock.close()
        runtime, self.runtime = self.runtime, None
        if runtime is not None:
            shutil.rmtree(runtime, ignore_errors=True)
        files, self.files_dir = self.files_dir, None
        if files is not None:
            shutil.rmtree(files, ignore_errors=True)


@dataclass
class Worker:
    index: int
    backoff: Backoff
    process: IProcessTransport | None = None
    pid: int | None = None
    started: float = 0.0
    ready: bool = False
    starts: int = 0
    restart: IDelayedCall | None = None
    delays: list[float] = field(default_factory=list)


class Supervisor(Service):
    """Keeps ``count`` workers running on the launcher's port.

    SIGHUP goes to every worker (each reloads its config, or refuses a bad
    file and keeps the old one); SIGTERM or SIGINT stops the parent: every
    worker gets SIGTERM (and drains), and the parent exits once all have
    exited; a second SIGTERM or SIGINT kills them at once.
    """

    def __init__(
        self,
        count: int,
        launcher: Launcher,
        reactor: IReactorTime,
        strategy: str = "reuseport",
        signals: bool = True,
        backoff: Callable[[], Backoff] = Backoff,
    ) -> None:
        self.count = count
        self.launcher = launcher
        # The reactor; a task.Clock in tests (then no signals, no reactor stop).
        self.clock = reactor
        self.strategy = strategy
        self.signals = signals
        self.workers = [Worker(i, backoff()) for i in range(count)]
        self.where = ""
        self.stopping = False
        self.announced = False
        self._stopped: list[defer.Deferred[None]] = []
        self._previous: dict[int, Any] = {}

    # lifecycle

    def startService(self) -> None:
        super().startService()
        try:
            self.where = self.launcher.open()
        except OSError as failure:
            log.error(
                "mockai cannot listen on {where}: {why}",
                where=self.launcher.where(),
                why=failure.strerror or failure,
            )
            self._stop_reactor()
            return
        log.info(
            "mockai {version}: starting {count} workers on {where} ({strategy})",
            version=__version__,
            count=self.count,
            where=self.where,
            strategy=self.strategy,
        )
        for worker in self.workers:
            self._spawn(worker)
        if self.signals:
            # After the reactor's own handlers, which it installs once running.
            call = getattr(self.clock, "callWhenRunning", None)
            if call is not None:
                call(self._install_signals)

    def stopService(self) -> defer.Deferred[None] | None:
        super().stopService()
        self.stopping = True
        for worker in self.workers:
            if worker.restart is not None and worker.restart.active():
                worker.restart.cancel()
            worker.restart = None
        alive = self.alive()
        if alive:
            log.info(
                "mockai: stopping {count} workers (SIGTERM; each drains)",
                count=len(alive),
            )
        self.signal_all("TERM")
        if not alive:
            self._finish()
            return None
        d: defer.Deferred[None] = defer.Deferred()
        self._stopped.append(d)
        return d

    def alive(self) -> list[Worker]:
        return [w for w in self.workers if w.process is not None]

    def signal_all(self, name: str) -> None:
        for worker in self.alive():
            assert worker.process is not None
            with contextlib.suppress(error.ProcessExitedAlready, OSError):
                worker.process.signalProcess(name)

    def _spawn(self, worker: Worker) -> None:
        worker.restart = None
        if self.stopping:
            return
        protocol = WorkerProcess(worker.index, self._ready, self._ended)
        worker.starts += 1
        worker.ready = False
        worker.started = self.clock.seconds()
        try:
            worker.process = self.launcher.spawn(worker.index, protocol)
        except OSError as failure:
            log.error(
                "mockai: cannot start worker {worker}: {why}",
                worker=worker.index,
                why=failure,
            )
            self._ended(worker.index, failure)
            return
        worker.pid = getattr(worker.process, "pid", None)
        log.info(
            "mockai: worker {worker} started (pid {pid})",
            worker=worker.index,
            pid=worker.pid,
        )

    def _ready(self, index: int) -> None:
        worker = self.workers[index]
        worker.ready = True
        if self.announced:
            log.info(
                "mockai: worker {worker} (pid {pid}) listening again on {where}",
                worker=index,
                pid=worker.pid,
                where=self.where,
            )
        elif all(w.ready for w in self.workers):
            self.announced = True
            log.info(
                "mockai {version}: {count} workers listening on {where}"
                " (base URL {scheme}://{where}/v1)",
                version=__version__,
                count=self.count,
                where=self.where,
                scheme=getattr(self.launcher, "scheme", "http"),
            )

    def _ended(self, index: int, reason: BaseException) -> None:
        worker = self.workers[index]
        worker.process = None
        worker.ready = False
        how = describe_exit(reason)
        if self.stopping:
            log.info(
                "mockai: worker {worker} (pid {pid}) {how}",
                worker=index,
                pid=worker.pid,
                how=how,
            )
            if not self.alive():
                self._finish()
            return
        uptime = self.clock.seconds() - worker.started
        delay = worker.backoff.after(uptime)
        worker.delays.append(delay)
        log.warn(
            "mockai: worker {worker} (pid {pid}) {how} after {uptime:.1f} s;"
            " starting it again in {delay:g} s",
            worker=index,
            pid=worker.pid,
            how=how,
            uptime=uptime,
            delay=delay,
        )
        worker.restart = self.clock.callLater(delay, self._spawn, worker)

    def _finish(self) -> None:
        self._restore_signals()
        self.launcher.close()
        waiting, self._stopped = self._stopped, []
        for d in waiting:
            d.callback(None)

    def _stop_reactor(self) -> None:
        stop = getattr(self.clock, "stop", None)
        if stop is None:
            return
        if getattr(self.clock, "running", True):
            with contextlib.suppress(error.ReactorNotRunning):
                stop()
        else:  # at start, under twistd: the reactor runs only after this
            self.clock.callWhenRunning(self._stop_reactor)  # type: ignore[attr-defined]

    # signals

    def _install_signals(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return
        if self.stopping:
            return
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            self._previous[sig] = signal.signal(sig, self._signalled)

    def _restore_signals(self) -> None:
        previous, self._previous = self._previous, {}
        for sig, handler in previous.items():
            signal.signal(sig, handler)

    def _signalled(self, signum: int, frame: Any) -> None:
        call = getattr(self.clock, "callFromThread", None)
        if call is not None:
            call(self.on_signal, signum)

    def on_signal(self, signum: int) -> None:
        name = signal.Signals(signum).name
        if signum == signal.SIGHUP:
            log.info(
                "mockai: SIGHUP: {count} workers reload their config",
                count=len(self.alive()),
            )
            self.signal_all("HUP")
        elif not self.stopping:
            log.info("mockai: {signal}: stopping", signal=name)
            self._stop_reactor()
        else:
            log.warn(
                "mockai: {signal} again: killing {count} workers",
                signal=name,
                count=len(self.alive()),
            )
            self.signal_all("KILL")


def worker_arguments(config_path: str, endpoint: str) -> list[str]:
    """The ``mockai`` options every worker gets: the parent's file and the
    endpoint it listens on (so a replacement listens where the others do)."""
    return [f"--config={os.path.abspath(config_path)}", f"--listen={endpoint}"]


def supervise(
    config: Config, config_path: str, options: Mapping[str, Any], reactor: Any
) -> IService:
    """The parent's service: ``worker_count(config)`` workers on the port."""
    from mockai_tw.logs import RootService, twistd_observer

    endpoint = config.http.endpoint
    strategy = check_strategy(options.get("worker-socket"))
    launcher = ProcessLauncher(
        reactor,
        resolve_address(endpoint),
        strategy,
        worker_arguments(config_path, endpoint),
        scheme="https" if endpoint.lower().startswith("ssl:") else "http",
    )
    files = config.files
    launcher.share_files = files.backend == "disk" and files.dir is None
    top = RootService(twistd_observer(config, options))
    supervisor = Supervisor(worker_count(config), launcher, reactor, strategy)
    supervisor.setServiceParent(top)
    top.supervisor = supervisor  # type: ignore[attr-defined]
    return top


def default_strategy() -> str:
    """``SO_REUSEPORT`` where the kernel spreads connections over the sockets
    (Linux); elsewhere one inherited socket."""
    return "reuseport" if sys.platform.startswith("linux") else "inherited"


def check_strategy(text: str | None) -> str:
    if text is None:
        return default_strategy()
    if text not in STRATEGIES:
        raise ConfigError(
            "--worker-socket", f"must be one of {', '.join(STRATEGIES)}; got {text!r}"
        )
    if text == "reuseport" and not hasattr(socket, "SO_REUSEPORT"):
        raise ConfigError("--worker-socket", "SO_REUSEPORT is not available here")
    return text
