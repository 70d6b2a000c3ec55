"""Half-open handshakes: how long a Jupyter server keeps connections that never finish their headers.

    python benchmarks/half_open.py                  # 500 connections, watched for 70 s
    python benchmarks/half_open.py --quick          # 50 connections, 12 s, a 4 s timeout

Each connection sends the first lines of a WebSocket handshake to the room socket and never
the blank line that ends the headers. Tornado closes such a connection after its HTTP
server's ``idle_connection_timeout`` (the header timeout: 3600 s when it is not set), and
jupyter_server creates its HTTP server without setting it. Tornado's `HTTPServer` is a
`tornado.util.Configurable`, so a line in ``jupyter_server_config.py`` sets it for the
server that jupyter_server creates:

    from tornado.httpserver import HTTPServer
    HTTPServer.configure(None, idle_connection_timeout=60)

Two servers, one run: the default one and one with that line (`--timeout` seconds), and
configurable-http-proxy (JupyterHub's proxy, Node's HTTP server: ``headersTimeout`` 60 s by
default) in front of the default one. Printed: how many of the half-open connections to each
are still open as time passes, and the RSS of the process that holds them. The load average is printed at the start and at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import psutil

from iavicenne_ext.testing import LOOPBACK, JupyterProcess, free_port, start_all, stop_all, wait_until

CONFIGURED = """
from tornado.httpserver import HTTPServer

HTTPServer.configure(None, idle_connection_timeout={timeout})
"""


def server(workdir: Path, name: str, timeout: float | None) -> JupyterProcess:
    """A Jupyter server (not started); with `timeout`, its HTTP server's idle_connection_timeout."""
    made = JupyterProcess(workdir, name=name, log_level="WARN")
    if timeout is not None:
        made.config.mkdir(parents=True, exist_ok=True)
        (made.config / "jupyter_server_config.py").write_text(CONFIGURED.format(timeout=timeout))
    return made


class HalfOpen:
    """One connection that sent part of a handshake; `closed_after` once the server closed it."""

    def __init__(self) -> None:
        self.closed_after: float | None = None

    async def run(self, port: int, started: float) -> None:
        reader, writer = await asyncio.open_connection(LOOPBACK, port)
        writer.write(
            b"GET /iavicenne/ws/mcp HTTP/1.1\r\nHost: %s:%d\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            % (LOOPBACK.encode(), port)
        )  # and never the blank line
        await writer.drain()
        try:
            while await reader.read(4096):
                pass
        except ConnectionError:
            pass
        self.closed_after = time.monotonic() - started
        writer.close()


@dataclass
class Target:
    """Where the half-open connections go: a port, and the process whose RSS is shown."""

    port: int
    pid: int


def proxy(port: int, target: str) -> subprocess.Popen[bytes]:
    """configurable-http-proxy (JupyterHub's proxy) on `port` in front of `target`, as the Hub runs it."""
    return subprocess.Popen(
        ["configurable-http-proxy", "--ip", LOOPBACK, "--port", str(port), "--default-target", target, "--log-level", "error"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


async def watch(servers: dict[str, Target], count: int, seconds: float, step: float) -> dict[str, list[HalfOpen]]:
    started = time.monotonic()
    opened = {name: [HalfOpen() for _ in range(count)] for name in servers}
    tasks = [asyncio.ensure_future(h.run(servers[name].port, started)) for name, hs in opened.items() for h in hs]
    header = "".join(f"{name + ' open':>18}{'RSS MiB':>9}" for name in servers)
    print(f"{'seconds':>8}{header}")
    at = 0.0
    while at <= seconds:
        await asyncio.sleep(max(0.0, started + at - time.monotonic()))
        row = ""
        for name, halves in opened.items():
            still = sum(1 for h in halves if h.closed_after is None)
            rss = psutil.Process(servers[name].pid).memory_info().rss / 2**20
            row += f"{still:>18}{rss:>9.1f}"
        print(f"{at:>8.0f}{row}", flush=True)
        at += step
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    return opened


async def main(args: argparse.Namespace) -> int:
    workdir = Path(tempfile.mkdtemp(prefix="iavicenne-half-open-"))
    print(
        f"{args.connections} half-open handshakes per server; {os.cpu_count()} CPUs, load average "
        f"{os.getloadavg()[0]:.2f} at the start"
    )
    started = start_all([server(workdir, "default", None), server(workdir, "configured", args.timeout)])
    chp: subprocess.Popen[bytes] | None = None
    try:
        servers = {
            "default": Target(started[0].port, started[0].pid),
            f"timeout {args.timeout:g}s": Target(started[1].port, started[1].pid),
        }
        if args.proxy and shutil.which("configurable-http-proxy"):
            port = free_port()
            chp = proxy(port, started[0].url)
            wait_until(lambda: _accepting(port), 30, "configurable-http-proxy")
            servers["through CHP"] = Target(port, chp.pid)
        opened = await watch(servers, args.connections, args.seconds, args.step)
        for name, halves in opened.items():
            closed = sorted(h.closed_after for h in halves if h.closed_after is not None)
            if closed:
                print(f"{name}: {len(closed)} closed by the server, after {closed[0]:.1f}-{closed[-1]:.1f} s")
            else:
                print(f"{name}: none closed by the server within {args.seconds:g} s")
        print(f"load average {os.getloadavg()[0]:.2f} at the end")
    finally:
        if chp is not None:
            chp.terminate()
            chp.wait(10)
        stop_all(started)
        shutil.rmtree(workdir, ignore_errors=True)
    return 0


def _accepting(port: int) -> bool:
    try:
        socket.create_connection((LOOPBACK, port), timeout=1).close()
    except OSError:
        return False
    return True


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--connections", type=int, default=500)
    parser.add_argument("--timeout", type=float, default=30.0, help="idle_connection_timeout of the configured server")
    parser.add_argument("--seconds", type=float, default=70.0, help="how long to watch")
    parser.add_argument("--step", type=float, default=10.0)
    parser.add_argument("--no-proxy", dest="proxy", action="store_false", help="skip configurable-http-proxy")
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args(argv)
    if args.quick:
        args.connections, args.timeout, args.seconds, args.step = 50, 4.0, 12.0, 2.0
    return args


if __name__ == "__main__":
    sys.exit(asyncio.run(main(parse())))
