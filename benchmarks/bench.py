"""mockai under load: requests/s against bare twisted.web, and SSE pacing.

Starts the real daemon (``twistd -n mockai``) and ``bare_server.py`` as
subprocesses, each pinned to one core, and drives them from the other core:

* rps: ``POST /v1/chat/completions`` (non-stream) with ``wrk``; runs rotate
  between mockai, mockai with its request journal off, and the bare server so
  machine noise hits all alike, and the headlines are ratios of medians
  measured in the same run (mockai / bare, journal on / off).
* stream: N concurrent keep-alive connections each running streams back to
  back (asyncio raw sockets, SSE ``data:`` lines timed on arrival); reports
  time to first chunk, inter-chunk gaps and each stream's chunks/s against the
  configured rate.
* burst: N streams sent at once on open connections: time to first chunk.
* rss: memory per idle open stream (VmRSS before and after N open streams).
  The three stream scenarios (``streams.py``) run beside the bare
  twisted.web streaming server (the same bytes at the same pace) and, with
  ``--baseline``, another mockai_tw, rotated round by round.
* workers (only when asked for): the rps load on one process and on two
  workers sharing the port (``--workers=2``, each socket strategy), rotated
  like rps; nothing is pinned, so wrk competes with the workers for the cores.

    python benchmarks/bench.py            # full run, a few minutes
    python benchmarks/bench.py --quick    # under a minute

Only 127.0.0.1; every subprocess is stopped on the way out.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import json
import os
import re
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from importlib.util import find_spec
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from benchmarks import streams
else:  # run as a script: its own directory is on sys.path
    import streams

STREAM_BODY, log, median = streams.STREAM_BODY, streams.log, streams.median
cpu_ticks, stolen = streams.cpu_ticks, streams.stolen

HERE = Path(__file__).resolve().parent
TOKEN = "sk-bench"
# Port 0: the daemon logs the port it got, so there is no race for a free one.
MOCKAI_CMD = (
    "twistd -n --pidfile= mockai --config=config.yaml"
    " --listen tcp:port=0:interface=127.0.0.1:backlog=4096"
)
CHAT_PATH = "/v1/chat/completions"
# The rps scenario's servers, in the report's order.
RPS_SERVERS = ("mockai", "nojournal", "nometrics", "bare")
# What each server but mockai is there to measure: mockai / it.
RATIOS = (
    ("bare", "ratio"),
    ("nojournal", "journal_ratio"),
    ("nometrics", "metrics_ratio"),
    ("baseline", "baseline_ratio"),
)
# The workers scenario's: one process, then two workers per socket strategy.
WORKER_SERVERS = {
    "1 process": [],
    "2 workers, SO_REUSEPORT": ["--workers=2", "--worker-socket=reuseport"],
    "2 workers, inherited socket": ["--workers=2", "--worker-socket=inherited"],
}
LISTENING = r"listening on 127\.0\.0\.1:(\d+)"
# A supervisor's line once every worker listens (its workers log the one above).
WORKERS_LISTENING = r"\d+ workers listening on 127\.0\.0\.1:(\d+)"
WORKER_PID = re.compile(r"worker (\d+) started \(pid (\d+)\)")
CHAT_BODY = b'{"model":"gpt-4o-mini","messages":[{"role":"user","content":"hi"}]}'
WRK_LUA = f"""wrk.method = "POST"
wrk.body = '{CHAT_BODY.decode()}'
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer {TOKEN}"
"""


# --- subprocesses -----------------------------------------------------------


def _die_with_parent() -> None:
    """Runs in the child: kill it if bench.py dies without cleaning up.

    SIGKILL, not SIGTERM: a server stuck in a busy loop never acts on SIGTERM.
    """
    with contextlib.suppress(AttributeError, OSError):
        ctypes.CDLL(None).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


def process_cpu_seconds(pid: int) -> float:
    """User+system CPU seconds of one process, from /proc (Linux)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return float("nan")
    fields = stat.rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@dataclass
class Server:
    name: str
    proc: subprocess.Popen[bytes]
    log_path: Path
    port: int = 0

    @property
    def pid(self) -> int:
        return self.proc.pid

    def workers(self) -> dict[int, int]:
        """A supervisor's current worker pids by index, from its log."""
        return {
            int(i): int(pid) for i, pid in WORKER_PID.findall(self.log_path.read_text())
        }

    def cpu_seconds(self) -> float:
        """User+system CPU of the server process and its workers (/proc, Linux)."""
        pids = [self.proc.pid, *self.workers().values()]
        return sum(process_cpu_seconds(pid) for pid in pids)

    def stop(self, grace: float = 5.0) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def start_server(
    name: str,
    argv: list[str],
    workdir: Path,
    pin: str | None,
    servers: list[Server],
    env: dict[str, str] | None = None,
    ready: str = LISTENING,
) -> Server:
    """Start ``argv`` (pinned to core ``pin``) and wait for "listening on HOST:PORT"
    (or the ``ready`` pattern)."""
    if pin is not None:
        argv = ["taskset", "-c", pin, *argv]
    log_path = workdir / f"{name}.log"
    with log_path.open("wb") as out:
        proc = subprocess.Popen(
            argv,
            cwd=workdir,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            preexec_fn=_die_with_parent,
            env=None if env is None else {**os.environ, **env},
        )
    server = Server(name, proc, log_path)
    servers.append(server)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        found = re.search(ready, log_path.read_text())
        if found:
            server.port = int(found.group(1))
            return server
        if proc.poll() is not None:
            break
        time.sleep(0.05)
    raise RuntimeError(f"{name} did not start:\n{log_path.read_text()[-2000:]}")


def http_post(port: int, body: bytes) -> tuple[int, bytes]:
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}{CHAT_PATH}",
        data=body,
        headers={
            "authorization": f"Bearer {TOKEN}",
            "content-type": "application/json",
        },
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        return response.status, response.read()


# --- rps scenario (wrk) -----------------------------------------------------


@dataclass
class WrkResult:
    rps: float
    errors: int
    cpu: float  # server CPU seconds per wall second during the run


def run_wrk(
    server: Server, lua: Path, seconds: int, connections: int, threads: int = 1
) -> WrkResult:
    cpu0, t0 = server.cpu_seconds(), time.monotonic()
    out = subprocess.run(
        [
            "wrk",
            f"-t{threads}",
            f"-c{connections}",
            f"-d{seconds}s",
            "-s",
            str(lua),
            f"http://127.0.0.1:{server.port}{CHAT_PATH}",
        ],
        capture_output=True,
        text=True,
        timeout=seconds + 30,
        check=True,
    ).stdout
    cpu = (server.cpu_seconds() - cpu0) / (time.monotonic() - t0)
    rps = re.search(r"Requests/sec:\s*([\d.]+)", out)
    if rps is None:
        raise RuntimeError(f"cannot read wrk output:\n{out}")
    errors = sum(int(n) for n in re.findall(r"Non-2xx or 3xx responses: (\d+)", out))
    socket = re.search(r"Socket errors: (.*)", out)
    if socket:
        errors += sum(int(n) for n in re.findall(r"\d+", socket.group(1)))
    return WrkResult(float(rps.group(1)), errors, cpu)


def rotate(
    servers: Sequence[Server], workdir: Path, args: argparse.Namespace, label: str
) -> dict[str, list[WrkResult]]:
    """``args.runs`` rounds of one wrk run per server after a warm-up; each
    round starts with the next server, so none is always first."""
    lua = workdir / "post.lua"
    lua.write_text(WRK_LUA)
    for server in servers:  # warm-up, discarded
        run_wrk(server, lua, 1, args.connections)
    results: dict[str, list[WrkResult]] = {s.name: [] for s in servers}
    for i in range(args.runs):
        shift = i % len(servers)
        for server in [*servers[shift:], *servers[:shift]]:
            r = run_wrk(server, lua, args.seconds, args.connections, args.threads)
            results[server.name].append(r)
            log(
                f"  {label} run {i + 1}/{args.runs} {server.name:9} {r.rps:9.0f}/s"
                f"  errors {r.errors}  server cpu {r.cpu:.0%}"
            )
    return results


def rps_scenario(
    servers: Sequence[Server], workdir: Path, args: argparse.Namespace
) -> dict[str, Any]:
    """Rotate wrk runs over ``servers`` (mockai, nojournal, nometrics, bare)."""
    results = rotate(servers, workdir, args, "rps")
    summary: dict[str, Any] = {
        "runs": {k: [asdict(r) for r in v] for k, v in results.items()}
    }
    for name, rs in results.items():
        summary[f"{name}_rps"] = median([r.rps for r in rs])
        summary[f"{name}_cpu"] = median([r.cpu for r in rs])
        summary[f"{name}_errors"] = sum(r.errors for r in rs)
    # Each ratio against mockai, of the medians and round by round (each
    # round runs every server once, so a drift of the machine's speed within
    # a run touches both sides alike); only for the servers measured.
    mockai = [r.rps for r in results["mockai"]]
    for name, key in RATIOS:
        if name in results:
            summary[key] = summary["mockai_rps"] / summary[f"{name}_rps"]
            rounds = zip(mockai, results[name], strict=True)
            pairs = [m / o.rps for m, o in rounds if o.rps]
            summary[f"paired_{key}"] = median(pairs) if pairs else float("nan")
    return summary


def machine_cpu_seconds() -> float:
    """CPU seconds all cores have spent busy since boot (/proc/stat, Linux)."""
    _steal, busy = cpu_ticks()
    return busy / os.sysconf("SC_CLK_TCK") if busy else float("nan")


def children_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


# A CPU-bound loop of N additions that prints how long it took.
SPIN = """import time
t = time.perf_counter()
x = 0
for i in range(N):
    x += i
print(time.perf_counter() - t)"""


def machine_scaling(rounds: int, loops: int = 10_000_000) -> dict[str, Any]:
    """What the machine itself gives two CPU-bound processes: a pure-Python
    loop timed alone and as two at once, alternately; the ratio is the
    throughput of the pair over one (2.0: two free cores)."""
    code = SPIN.replace("range(N)", f"range({loops})")

    def spin(n: int) -> list[float]:
        procs = [
            subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE)
            for _ in range(n)
        ]
        return [float(p.communicate(timeout=120)[0]) for p in procs]

    ratios = []
    for _ in range(rounds):
        alone = spin(1)[0]
        pair = spin(2)
        ratios.append(2 * alone / max(pair))
    return {"ratios": ratios, "ratio": median(ratios)}


def workers_scenario(
    servers: Sequence[Server], workdir: Path, args: argparse.Namespace
) -> dict[str, Any]:
    """The rps rotation over one process and the supervisors. Per run, also
    how the workers' CPU was split (the busiest one's share: 0.5 is even),
    wrk's CPU, and what everything else on the machine used meanwhile (in
    cores), so a run that other load spoiled shows."""
    lua = workdir / "post.lua"
    lua.write_text(WRK_LUA)
    scaling = machine_scaling(max(3, args.runs // 2))
    log(f"  the machine: two CPU-bound processes do {scaling['ratio']:.2f}x one")
    for server in servers:  # warm-up, discarded
        run_wrk(server, lua, 1, args.connections)
    results: dict[str, list[WrkResult]] = {s.name: [] for s in servers}
    extra: dict[str, list[dict[str, float]]] = {s.name: [] for s in servers}
    for i in range(args.runs):
        shift = i % len(servers)
        for server in [*servers[shift:], *servers[:shift]]:
            pids = server.workers()
            before = {n: process_cpu_seconds(pid) for n, pid in pids.items()}
            t0, machine0 = time.monotonic(), machine_cpu_seconds()
            wrk0 = children_cpu_seconds()
            r = run_wrk(server, lua, args.seconds, args.connections)
            wall = time.monotonic() - t0
            wrk = (children_cpu_seconds() - wrk0) / wall
            others = (machine_cpu_seconds() - machine0) / wall - r.cpu - wrk
            used = [process_cpu_seconds(pid) - before[n] for n, pid in pids.items()]
            share = max(used) / sum(used) if len(used) > 1 and sum(used) > 0 else 1.0
            results[server.name].append(r)
            extra[server.name].append({"busiest": share, "wrk": wrk, "others": others})
            log(
                f"  workers run {i + 1}/{args.runs} {server.name:28} {r.rps:9.0f}/s"
                f"  errors {r.errors}  server cpu {r.cpu:.0%}  wrk {wrk:.0%}"
                f"  others {others:.0%}"
                + (f"  busiest worker {share:.0%}" if len(used) > 1 else "")
            )
    firsts = [r.rps for r in results[servers[0].name]]
    one = median(firsts)
    summary: dict[str, Any] = {
        "runs": {
            k: [asdict(r) | e for r, e in zip(v, extra[k], strict=True)]
            for k, v in results.items()
        },
        "servers": {},
        "machine": scaling,
    }
    for name, rs in results.items():
        rps = median([r.rps for r in rs])
        summary["servers"][name] = {
            "rps": rps,
            "cpu": median([r.cpu for r in rs]),
            "errors": sum(r.errors for r in rs),
            "ratio": rps / one,
            # Each round's ratio to the one process in the same round, so the
            # machine's drift between rounds cancels; the median of those.
            "paired": median([r.rps / f for r, f in zip(rs, firsts, strict=True)]),
            # Runs in which one worker did (nearly) all the work.
            "one_idle": sum(e["busiest"] > 0.9 for e in extra[name]),
            **{k: median([e[k] for e in extra[name]]) for k in extra[name][0]},
        }
    return summary


# --- state scenario: memory against redis -----------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_redis(workdir: Path, pin: str | None, servers: list[Server]) -> str:
    """A throwaway redis-server on a free loopback port; its ``state.url``."""
    path = shutil.which("redis-server")
    if path is None:
        raise RuntimeError("redis-server not found (apt-get install redis-server)")
    port = free_port()
    argv = [path, "--port", str(port), "--bind", "127.0.0.1", "--save", ""]
    argv += ["--appendonly", "no"]
    ready = rf"Running mode=standalone, port=({port})"
    start_server("redis", argv, workdir, pin, servers, ready=ready)
    return f"redis://127.0.0.1:{port}/0"


def state_scenario(
    servers: Sequence[Server], workdir: Path, args: argparse.Namespace
) -> dict[str, Any]:
    """The rps rotation over ``memory`` and ``redis`` (the same config with
    state.backend: redis), rate limits on in both, so every request makes
    its admission round trip."""
    results = rotate(servers, workdir, args, "state")
    memory = results["memory"]
    summary: dict[str, Any] = {
        "runs": {k: [asdict(r) for r in v] for k, v in results.items()}
    }
    for name, rs in results.items():
        summary[f"{name}_rps"] = median([r.rps for r in rs])
        summary[f"{name}_cpu"] = median([r.cpu for r in rs])
        summary[f"{name}_errors"] = sum(r.errors for r in rs)
    # Each round's redis run against the memory run of the same round.
    summary["paired_ratio"] = median(
        [r.rps / m.rps for r, m in zip(results["redis"], memory, strict=True)]
    )
    summary["ratio"] = summary["redis_rps"] / summary["memory_rps"]
    return summary


# --- report -----------------------------------------------------------------


def report(results: dict[str, Any], args: argparse.Namespace) -> str:
    lines = [
        f"mockai benchmark, {results['date']}, {results['machine']}",
        f"mockai_tw measured: {results['mockai_tw']}",
        f"load average before/after: {results['load_before']}"
        f" / {results['load_after']}",
        f"busy CPU time the host stole (steal) during the run: {results['stolen']:.1%}",
        "",
    ]
    rps = results.get("rps")
    if rps:
        lines += [
            f"Non-stream POST {CHAT_PATH}: wrk -t{args.threads} -c{args.connections}, "
            f"{args.runs} x {args.seconds:g} s each, median requests/s",
            "",
            "| server | req/s (median) | server CPU | errors |",
            "|---|---:|---:|---:|",
        ]
        for name in [*RPS_SERVERS, "baseline"]:
            if name + "_rps" not in rps:
                continue
            lines.append(
                f"| {name} | {rps[name + '_rps']:,.0f} | {rps[name + '_cpu']:.0%} "
                f"| {rps[name + '_errors']} |"
            )
        lines.append("")
        if "ratio" in rps:
            lines.append(
                f"mockai / bare twisted.web: {rps['ratio']:.2f}"
                f" (paired by round: {rps['paired_ratio']:.2f})"
            )
        for key, what in (
            ("journal", "the journal costs"),
            ("metrics", "metrics cost"),
        ):
            if f"{key}_ratio" in rps:
                lines.append(
                    f"{key} on / off: {rps[key + '_ratio']:.3f}"
                    f" ({what} {1 - rps[key + '_ratio']:.1%};"
                    f" paired by round {1 - rps['paired_' + key + '_ratio']:.1%})"
                )
        if "baseline_ratio" in rps:
            lines.append(
                f"mockai / baseline ({results['baseline']}):"
                f" {rps['baseline_ratio']:.3f}"
                f" (paired by round: {rps['paired_baseline_ratio']:.3f})"
            )
        lines.append("")
    state = results.get("state")
    if state:
        lines += [
            f"state.backend memory against redis (a local redis-server, unpinned):"
            f" non-stream POST {CHAT_PATH}, rate limits on, wrk -t1"
            f" -c{args.connections}, {args.runs} x {args.seconds:g} s each",
            "",
            "| backend | req/s (median) | server CPU | errors |",
            "|---|---:|---:|---:|",
        ]
        for name in ("memory", "redis"):
            lines.append(
                f"| {name} | {state[name + '_rps']:,.0f} | {state[name + '_cpu']:.0%}"
                f" | {state[name + '_errors']} |"
            )
        lines += [
            "",
            f"redis / memory: {state['ratio']:.3f} (paired by round:"
            f" {state['paired_ratio']:.3f})",
            "",
        ]
    workers = results.get("workers")
    if workers:
        lines += [
            f"Non-stream POST {CHAT_PATH} over one port: wrk -t1"
            f" -c{args.connections}, {args.runs} x {args.seconds:g} s each,"
            " median requests/s; nothing pinned (wrk shares the cores)",
            "",
            "| server | req/s (median) | × 1 process | × 1 process, paired by round"
            " | server CPU | busiest worker | wrk CPU | other load | errors |",
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for name, w in workers["servers"].items():
            share = (
                f"{w['busiest']:.0%} (one idle in {w['one_idle']}/{args.runs})"
                if name != "1 process"
                else "-"
            )
            lines.append(
                f"| {name} | {w['rps']:,.0f} | {w['ratio']:.2f} | {w['paired']:.2f}"
                f" | {w['cpu']:.0%} | {share} | {w['wrk']:.0%} | {w['others']:.0%}"
                f" | {w['errors']} |"
            )
        machine = workers["machine"]
        lines += [
            "",
            f"The machine itself: two CPU-bound Python processes at once did"
            f" {machine['ratio']:.2f}x the work of one (median of"
            f" {len(machine['ratios'])}; 2.00 would be two free cores).",
            "",
        ]
    lines += streams.report(results, args)
    return "\n".join(lines)


# --- main -------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="a smoke run, under 60 s")
    p.add_argument(
        "--scenario",
        choices=("all", "rps", "stream", "burst", "rss", "streams", "workers", "state"),
        default="all",
        help="all: rps and the stream scenarios; stream: streams back to back;"
        " burst: N streams sent at once; rss: memory per idle open stream;"
        " streams: those three; workers: one process against two workers;"
        " state: state.backend memory against redis (needs redis-server)",
    )
    p.add_argument("--runs", type=int, default=5, help="rps runs per server")
    p.add_argument("--seconds", type=int, default=5, help="length of one rps run")
    p.add_argument("--connections", type=int, default=50, help="wrk connections")
    p.add_argument("--threads", type=int, default=1, help="wrk threads")
    p.add_argument(
        "--rps-servers",
        type=lambda text: set(text.split(",")),
        default={*RPS_SERVERS, "baseline"},
        help="the rps scenario's servers, mockai always among them (e.g."
        " mockai,nojournal: every round on what the journal costs)",
    )

    def counts(text: str) -> list[int]:
        return [int(n) for n in text.split(",") if n]

    p.add_argument("--streams", type=counts, default=[100, 500, 1000])
    p.add_argument(
        "--burst",
        type=counts,
        default=[1000],
        help="streams sent at once (burst scenario)",
    )
    p.add_argument(
        "--idle-streams",
        type=int,
        default=2000,
        help="idle open streams (rss scenario)",
    )
    p.add_argument("--stream-runs", type=int, default=3)
    p.add_argument("--stream-seconds", type=float, default=5.0)
    p.add_argument(
        "--ramp", type=float, default=1.0, help="seconds to open all streams"
    )
    p.add_argument("--chunks", type=int, default=50, help="words in the streamed reply")
    p.add_argument("--interval-ms", type=float, default=20.0)
    p.add_argument("--chunking", choices=("word", "char"), default="word")
    p.add_argument("--no-pin", action="store_true", help="do not use taskset")
    p.add_argument("--json", type=Path, help="also write the results here")
    p.add_argument(
        "--baseline",
        type=Path,
        help="a directory holding another mockai_tw (git archive COMMIT mockai_tw"
        " | tar -x -C DIR): every scenario measures it in the same run",
    )
    args = p.parse_args(argv)
    if args.quick:
        args.runs, args.seconds = 2, 2
        args.streams, args.stream_runs = [100, 500], 1
        args.burst, args.idle_streams = [200], 300
        args.stream_seconds, args.ramp = 2.0, 0.5
    if not args.rps_servers <= {*RPS_SERVERS, "baseline"}:
        p.error(f"--rps-servers: some of {', '.join([*RPS_SERVERS, 'baseline'])}")
    args.rps_servers.add("mockai")
    if args.runs < 1 or args.stream_runs < 1 or not args.streams or args.chunks < 2:
        p.error("runs, stream runs, stream counts and chunks must be positive")
    return args


def reply_text(chunks: int, chunking: str) -> str:
    """A reply that the server cuts into exactly ``chunks`` pieces."""
    if chunking == "char":
        return "".join(chr(ord("a") + i % 26) for i in range(chunks))
    return " ".join(f"word{i}" for i in range(chunks))


def mockai_location() -> str:
    """Where ``mockai_tw`` is imported from (the daemon sees the same path)."""
    spec = find_spec("mockai_tw")
    return str(Path(spec.origin).parent) if spec and spec.origin else "not found"


def pick_cores(no_pin: bool) -> tuple[str | None, Callable[[], None]]:
    """Servers on the first core, this process (client, wrk) on the second."""
    cores = sorted(os.sched_getaffinity(0))
    if no_pin or len(cores) < 2 or shutil.which("taskset") is None:
        return None, lambda: None
    return str(cores[0]), lambda: os.sched_setaffinity(0, {cores[1]})


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # so finally runs
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    need = max([*args.streams, *args.burst, args.idle_streams]) + 256
    if soft < need:  # inherited by the servers too
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(need, hard), hard))
    # Two workers are meant to use both cores: nothing is pinned for them.
    server_core, pin_self = pick_cores(args.no_pin or args.scenario == "workers")
    pin_self()
    wrk = shutil.which("wrk")
    if args.scenario in ("all", "rps", "workers", "state") and wrk is None:
        log("wrk not found (apt-get install wrk): skipping the rps scenario")
        if args.scenario == "workers":
            return 1
    results: dict[str, Any] = {
        "date": time.strftime("%Y-%m-%d %H:%M %Z"),
        "machine": f"{os.cpu_count()} cores, "
        + (
            f"servers on core {server_core}, client/wrk on another"
            if server_core
            else "unpinned"
        ),
        "load_before": " ".join(f"{x:.2f}" for x in os.getloadavg()),
        "ticks_before": cpu_ticks(),
        # What the daemon will import (PYTHONPATH can point at another checkout).
        "mockai_tw": mockai_location(),
    }
    servers: list[Server] = []
    with tempfile.TemporaryDirectory(prefix="mockai-bench-") as tmp:
        workdir = Path(tmp)
        config = {
            "access_token": TOKEN,
            "seed": 1,
            "replies": [reply_text(args.chunks, args.chunking)],
            "stream": {"interval_ms": args.interval_ms, "chunking": args.chunking},
        }
        (workdir / "config.yaml").write_text(json.dumps(config))  # JSON is YAML

        try:
            if args.scenario == "state":
                log("state scenario")
                url = start_redis(workdir, None, servers)
                limits = {
                    "MOCKAI_RATE_LIMITS__ENABLED": "true",
                    "MOCKAI_RATE_LIMITS__REQUESTS_PER_MINUTE": "1000000000",
                }
                measured = [
                    start_server(
                        name,
                        MOCKAI_CMD.split(),
                        workdir,
                        server_core,
                        servers,
                        env={**limits, **extra},
                    )
                    for name, extra in (
                        ("memory", {}),
                        (
                            "redis",
                            {
                                "MOCKAI_STATE__BACKEND": "redis",
                                "MOCKAI_STATE__URL": url,
                            },
                        ),
                    )
                ]
                for server in measured:
                    status, body = http_post(server.port, CHAT_BODY)
                    if status != 200:
                        raise RuntimeError(f"{server.name} answered {status}")
                results["state"] = state_scenario(measured, workdir, args)
                return finish(results, args)
            if args.scenario == "workers":
                log("workers scenario")
                results["workers"] = workers_scenario(
                    start_workers(workdir, servers), workdir, args
                )
                return finish(results, args)
            mockai = start_server(
                "mockai", MOCKAI_CMD.split(), workdir, server_core, servers
            )
            status, body = http_post(mockai.port, CHAT_BODY)
            if status != 200 or b'"chat.completion"' not in body:
                raise RuntimeError(f"mockai answered {status}: {body[:200]!r}")
            if args.scenario in ("all", "rps") and wrk is not None:
                # The bare server sends mockai's own body: the same bytes.
                (workdir / "body.json").write_bytes(body)
                bare = start_server(
                    "bare",
                    [
                        sys.executable,
                        str(HERE / "bare_server.py"),
                        "--body",
                        "body.json",
                    ],
                    workdir,
                    server_core,
                    servers,
                )
                if http_post(bare.port, CHAT_BODY) != (200, body):
                    raise RuntimeError("the bare server does not answer as expected")
                # The same daemon with its request journal switched off.
                nojournal = start_server(
                    "nojournal",
                    MOCKAI_CMD.split(),
                    workdir,
                    server_core,
                    servers,
                    env={"MOCKAI_JOURNAL__ENABLED": "false"},
                )
                # And with metrics.enabled off (nothing listens to the hooks).
                nometrics = start_server(
                    "nometrics",
                    MOCKAI_CMD.split(),
                    workdir,
                    server_core,
                    servers,
                    env={"MOCKAI_METRICS__ENABLED": "false"},
                )
                measured = [mockai, nojournal, nometrics, bare]
                if args.baseline is not None:
                    # Another mockai_tw (an older commit, exported), same config.
                    measured.append(
                        start_server(
                            "baseline",
                            MOCKAI_CMD.split(),
                            workdir,
                            server_core,
                            servers,
                            env={"PYTHONPATH": str(args.baseline.resolve())},
                        )
                    )
                    results["baseline"] = str(args.baseline)
                # Those not asked for stay up, idle (their start checks the bytes).
                measured = [s for s in measured if s.name in args.rps_servers]
                log("rps scenario")
                results["rps"] = rps_scenario(measured, workdir, args)
            if args.scenario not in ("rps", "workers", "state"):
                stream_scenarios(mockai, workdir, server_core, servers, args, results)
        finally:
            for server in reversed(servers):
                server.stop()
    return finish(results, args)


def stream_scenarios(
    mockai: Server,
    workdir: Path,
    core: str | None,
    servers: list[Server],
    args: argparse.Namespace,
    results: dict[str, Any],
) -> None:
    """The stream scenarios asked for, each against the bare streaming
    server (mockai's own stream bytes, the same pace) and the baseline."""
    status, sse = http_post(mockai.port, STREAM_BODY)
    if status != 200 or not sse.endswith(b"data: [DONE]\n\n"):
        raise RuntimeError(f"mockai streamed {status}: {sse[:200]!r}")
    (workdir / "stream.sse").write_bytes(sse)
    idle = {**json.loads((workdir / "config.yaml").read_text())}
    # Idle streams: the first chunk at once, the next ten minutes later.
    idle["stream"] = {**idle["stream"], "interval_ms": 600_000}
    (workdir / "idle.yaml").write_text(json.dumps(idle))
    if args.baseline is not None:
        results["baseline"] = str(args.baseline)

    def starters(interval_ms: float, config: str) -> dict[str, Callable[[], Server]]:
        mockai_cmd = MOCKAI_CMD.replace("config.yaml", config).split()
        bare_cmd = [
            sys.executable,
            str(HERE / "bare_server.py"),
            "--stream-body",
            "stream.sse",
            "--chunks",
            str(args.chunks),
            "--interval-ms",
            str(interval_ms),
        ]
        made: dict[str, Callable[[], Server]] = {
            "mockai": lambda: start_server(
                "mockai", mockai_cmd, workdir, core, servers
            ),
            "bare": lambda: start_server("bare", bare_cmd, workdir, core, servers),
        }
        if args.baseline is not None:
            path = str(args.baseline.resolve())
            made["baseline"] = lambda: start_server(
                "baseline",
                mockai_cmd,
                workdir,
                core,
                servers,
                env={"PYTHONPATH": path},
            )
        return made

    paced = starters(args.interval_ms, "config.yaml")

    def restart(stuck: streams.Served) -> streams.Served:
        assert isinstance(stuck, Server)
        stuck.stop(grace=0.5)
        return paced[stuck.name]()

    if args.scenario in ("all", "streams", "stream", "burst"):
        live = [mockai, *(paced[name]() for name in paced if name != "mockai")]
        if args.scenario != "burst":
            log("stream scenario")
            results["stream"] = streams.stream_scenario(live, restart, args)
        if args.scenario != "stream":
            log("burst scenario")
            results["burst"] = streams.burst_scenario(live, restart, args)
    if args.scenario in ("all", "streams", "rss"):
        log("rss scenario")
        results["rss"] = streams.rss_scenario(starters(600_000, "idle.yaml"), args)


def start_workers(workdir: Path, servers: list[Server]) -> list[Server]:
    """The workers scenario's daemons (unpinned), each checked with one request."""
    started = [
        start_server(
            name,
            [*MOCKAI_CMD.split(), *extra],
            workdir,
            None,
            servers,
            ready=WORKERS_LISTENING if extra else LISTENING,
        )
        for name, extra in WORKER_SERVERS.items()
    ]
    for server in started:
        status, body = http_post(server.port, CHAT_BODY)
        if status != 200 or b'"chat.completion"' not in body:
            raise RuntimeError(f"{server.name} answered {status}: {body[:200]!r}")
    return started


def finish(results: dict[str, Any], args: argparse.Namespace) -> int:
    """Print the report (and save the runs); the exit status."""
    results["load_after"] = " ".join(f"{x:.2f}" for x in os.getloadavg())
    results["stolen"] = stolen(results.pop("ticks_before"))
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    print(report(results, args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
