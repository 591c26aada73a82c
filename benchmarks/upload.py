"""Upload a large file to a real mockai daemon and report its peak RSS growth.

Starts ``twistd -n mockai`` on a free port, warms it up (one small upload,
one chat request), notes its resident memory at idle, resets the kernel's
peak-RSS mark (``/proc/PID/clear_refs``), sends one ``POST /v1/files`` of
``--mb`` megabytes (200 by default) from a generator, so the client holds
none of it either, then reads the peak (``VmHWM``).  The target: at most
16 MB over idle.  Linux only (``/proc``).

    python benchmarks/upload.py [--mb 200] [--backend disk|memory]
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

TOKEN = "sk-bench"
CHUNK = 1024 * 1024


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def status_kb(pid: int, key: str) -> int:
    for row in Path(f"/proc/{pid}/status").read_text().splitlines():
        if row.startswith(key + ":"):
            return int(row.split()[1])
    raise KeyError(key)


def multipart(size: int) -> tuple[Iterator[bytes], int, str]:
    """The body as pieces, its length and its Content-Type."""
    boundary = uuid.uuid4().hex
    head = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="purpose"\r\n\r\n'
        f"user_data\r\n--{boundary}\r\nContent-Disposition: form-data;"
        f' name="file"; filename="big.bin"\r\n'
        "Content-Type: application/octet-stream\r\n\r\n"
    ).encode()
    tail = f"\r\n--{boundary}--\r\n".encode()
    block = os.urandom(CHUNK)

    def pieces() -> Iterator[bytes]:
        yield head
        left = size
        while left > 0:
            piece = block[: min(CHUNK, left)]
            left -= len(piece)
            yield piece
        yield tail

    return (
        pieces(),
        len(head) + size + len(tail),
        f"multipart/form-data; boundary={boundary}",
    )


def upload(port: int, size: int) -> tuple[int, dict[str, object], float]:
    body, length, ctype = multipart(size)
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=600)
    started = time.perf_counter()
    conn.putrequest("POST", "/v1/files")
    conn.putheader("Authorization", f"Bearer {TOKEN}")
    conn.putheader("Content-Type", ctype)
    conn.putheader("Content-Length", str(length))
    conn.endheaders()
    for piece in body:
        conn.send(piece)
    response = conn.getresponse()
    answer = json.loads(response.read())
    elapsed = time.perf_counter() - started
    conn.close()
    return response.status, answer, elapsed


def chat(port: int) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    body = json.dumps(
        {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}
    )
    conn.request(
        "POST",
        "/v1/chat/completions",
        body,
        {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"},
    )
    conn.getresponse().read()
    conn.close()


def wait_listening(port: int, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"the daemon exited ({proc.returncode})")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.1)
    raise SystemExit("the daemon did not listen within 30 s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mb", type=int, default=200)
    parser.add_argument("--backend", choices=("disk", "memory"), default="disk")
    args = parser.parse_args()
    size = args.mb * 1024 * 1024
    port = free_port()
    with tempfile.TemporaryDirectory(prefix="mockai-upload-bench-") as work:
        config = Path(work) / "config.yaml"
        config.write_text(
            json.dumps(
                {
                    "access_token": TOKEN,
                    "http": {"host": "127.0.0.1", "port": port},
                    "files": {
                        "backend": args.backend,
                        "dir": str(Path(work) / "files"),
                    },
                    "journal": {"enabled": False},
                }
            )
        )
        twistd = Path(sys.executable).with_name("twistd")
        proc = subprocess.Popen(
            [str(twistd), "-n", "--pidfile=", "mockai", f"--config={config}"],
            cwd=work,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            wait_listening(port, proc)
            upload(port, 64 * 1024)
            chat(port)
            time.sleep(0.5)
            idle = status_kb(proc.pid, "VmRSS")
            Path(f"/proc/{proc.pid}/clear_refs").write_text("5")
            status, answer, elapsed = upload(port, size)
            peak = status_kb(proc.pid, "VmHWM")
        finally:
            proc.terminate()
            proc.wait(30)
    growth_mb = (peak - idle) / 1024
    print(
        json.dumps(
            {
                "status": status,
                "bytes": answer.get("bytes"),
                "backend": args.backend,
                "upload_mb": args.mb,
                "seconds": round(elapsed, 2),
                "idle_rss_mb": round(idle / 1024, 1),
                "peak_rss_mb": round(peak / 1024, 1),
                "peak_growth_mb": round(growth_mb, 1),
                "target_mb": 16,
                "ok": status == 200 and answer.get("bytes") == size and growth_mb <= 16,
            }
        )
    )


if __name__ == "__main__":
    main()
