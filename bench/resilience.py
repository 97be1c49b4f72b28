"""Benchmark: polling through a reload, reload time at 50,000 jobs, and gzip bombs.

Runs a small ECE vendor server of its own (aiohttp, in a child process, on 127.0.0.1) and
the ccwatch daemon under test as a separate process (``python -m ccwatch run``), so the
same script can measure an older checkout: ``--pythonpath DIR`` puts DIR first on the
daemon's PYTHONPATH (and only the daemon's). The server records the monotonic time of
every request per path; the daemon's memory is read from ``/proc/PID/status``.

Subcommands:

- ``reload-gap``: target A polls 200 entry points every second (1,000 polls/s), target B
  one entry point whose answer takes 20 s. While B's poll is in flight, reload (SIGHUP
  and/or ``POST /-/reload``) with a config that adds a target C, keep running 10 s more,
  then report, per URL of target A, the longest time between two requests around the
  reload (max and p99 over URLs), the reload's answer time and polls/s before and after.
- ``reload-time``: 10,000 entry points (50,000 jobs) every 15 s; once ``/-/ready`` is
  200, time ``POST /-/reload`` three times with the unchanged file and three times with
  ``defaults.timeout`` changed (which changes every job); report medians and the RSS.
- ``gzip-bomb``: one capacity job every 2 s whose answer is a 200 KB gzip body that
  inflates to 200 MiB, once with Content-Length and once chunked; report the daemon's
  peak RSS, against a run with the normal answer, and the job's success and error
  reasons from ``/metrics``.
- ``all``: the three, one after the other.

Each prints a short summary and one JSON line of results.

Usage: python bench/resilience.py {reload-gap,reload-time,gzip-bomb,all} [--pythonpath DIR]
Only 127.0.0.1 is used; every run is bounded in time and stops by itself.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import math
import multiprocessing
import os
import re
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import zlib
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from aiohttp import web

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "tests" / "fixtures" / "ece"
#: The documented sample answers, served verbatim (checkEligibility's has an unquoted
#: attribute, as real servers send it).
SAMPLES = {
    "agentAvailability": "agentAvailability.xml",
    "capacity": "capacity.xml",
    "liveSessionStatus": "liveSessionStatus.xml",
    "checkEligibility": "checkEligibility.xml",
    "chatAllowed": "chatAllowed_true.xml",
}
ENDPOINTS = tuple(SAMPLES)
ECE_PATH = "/egain/chat/entrypoint/{endpoint}/{id}"
MiB = 1024 * 1024

# Loopback only: never go through a proxy from the environment.
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


# --------------------------------------------------------------------------- helpers


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _http(method: str, url: str, timeout: float = 10.0) -> tuple[int, bytes]:
    data = b"" if method in ("POST", "PUT") else None
    request = urllib.request.Request(url, data=data, method=method)  # noqa: S310 - loopback
    try:
        with _OPENER.open(request, timeout=timeout) as resp:
            return int(resp.status), bytes(resp.read())
    except urllib.error.HTTPError as exc:
        return int(exc.code), bytes(exc.read())


def _get_json(url: str, timeout: float = 60.0) -> Any:
    status, body = _http("GET", url, timeout)
    if status != 200:
        raise RuntimeError(f"GET {url}: HTTP {status}")
    return json.loads(body)


def _percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100) of a non-empty list."""
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]


def _load() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def _write_config(path: Path, config: dict[str, Any]) -> None:
    """Write atomically; JSON is YAML, so the daemon reads it as its YAML config."""
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(config), encoding="utf-8")
    tmp.replace(path)


def _ece_target(
    name: str,
    url: str,
    entry_points: Iterable[int],
    *,
    interval: str | None = None,
    timeout: str | None = None,
    endpoints: list[str] | None = None,
) -> dict[str, Any]:
    target: dict[str, Any] = {
        "name": name,
        "source": "ece",
        "url": url,
        "entry_points": list(entry_points),
    }
    if interval is not None:
        target["interval"] = interval
    if timeout is not None:
        target["timeout"] = timeout
    if endpoints is not None:
        target["endpoints"] = endpoints
    return target


def _config(
    targets: list[dict[str, Any]], *, interval: str = "15s", timeout: str = "5s"
) -> dict[str, Any]:
    return {
        "defaults": {"interval": interval, "timeout": timeout},
        "log": {"level": "warning", "format": "json"},
        "targets": targets,
    }


# --------------------------------------------------------------------------- gzip bomb


def build_bomb(decoded_size: int, sample: bytes) -> bytes:
    """gzip of ``sample`` padded with an XML comment to ``decoded_size`` bytes.

    Built incrementally: the decoded document is never held in memory. The comment goes
    right after the XML declaration, so the decoded body is still a valid document.
    """
    head, sep, tail = sample.partition(b"?>")
    if not sep:
        head, tail = b"", sample
    prefix = head + sep + b"\n<!-- "
    suffix = b" -->" + tail
    filler = decoded_size - len(prefix) - len(suffix)
    if filler < 0:
        raise ValueError("decoded size smaller than the sample")
    comp = zlib.compressobj(9, zlib.DEFLATED, 31)  # wbits 31: gzip container
    parts = [comp.compress(prefix)]
    block = memoryview(b"x" * MiB)
    while filler > 0:
        n = min(filler, MiB)
        parts.append(comp.compress(block[:n]))
        filler -= n
    parts.append(comp.compress(suffix))
    parts.append(comp.flush())
    return b"".join(parts)


def bomb_decoded_size(bomb: bytes) -> int:
    """Inflate ``bomb`` a MiB at a time and count the bytes (never holding it whole)."""
    d = zlib.decompressobj(31)
    size = 0
    data = bomb
    while data:
        out = d.decompress(data, MiB)
        size += len(out)
        data = d.unconsumed_tail
    size += len(d.flush())
    return size


# --------------------------------------------------------------------------- vendor server


@dataclass(frozen=True)
class ServerSpec:
    #: entry point id -> seconds to sleep before answering
    slow: dict[int, float] = field(default_factory=dict)
    #: None (the documented answers), "length" or "chunked": capacity answers are the bomb
    bomb: str | None = None
    bomb_size: int = 200 * MiB
    #: "path": request times per path (GET /-/times); "all": one list of every request
    record: str = "path"


def _server_app(spec: ServerSpec, bomb: bytes) -> web.Application:
    bodies = {endpoint: (FIXTURES / name).read_bytes() for endpoint, name in SAMPLES.items()}
    per_path: dict[str, list[float]] = {}
    every: list[float] = []
    xml = {"Content-Type": "application/xml"}
    gzip_headers = {"Content-Type": "application/xml", "Content-Encoding": "gzip"}

    async def ece(request: web.Request) -> web.StreamResponse:
        now = time.monotonic()
        if spec.record == "path":
            per_path.setdefault(request.path, []).append(now)
        else:
            every.append(now)
        endpoint = request.match_info["endpoint"]
        body = bodies.get(endpoint)
        if body is None:
            raise web.HTTPNotFound()
        delay = spec.slow.get(int(request.match_info["id"]))
        if delay:
            await asyncio.sleep(delay)
        if endpoint == "capacity" and spec.bomb == "length":
            # Bytes body: aiohttp sends Content-Length and leaves Content-Encoding alone
            # (it compresses only after enable_compression()).
            return web.Response(body=bomb, headers=gzip_headers)
        if endpoint == "capacity" and spec.bomb == "chunked":
            resp = web.StreamResponse(headers=gzip_headers)
            resp.enable_chunked_encoding()
            await resp.prepare(request)
            view = memoryview(bomb)
            try:
                for i in range(0, len(bomb), 64 * 1024):
                    await resp.write(view[i : i + 64 * 1024])
                await resp.write_eof()
            except ConnectionResetError:
                pass  # the client stopped reading (over its cap): as expected
            return resp
        return web.Response(body=body, headers=xml)

    async def times(request: web.Request) -> web.Response:
        match = request.query.get("match", "")
        if spec.record == "path":
            data: dict[str, list[float]] = {p: t for p, t in per_path.items() if match in p}
        else:
            data = {"*": every}
        return web.json_response(data)

    async def count(_: web.Request) -> web.Response:
        n = sum(map(len, per_path.values())) + len(every)
        return web.json_response({"requests": n})

    app = web.Application()
    app.router.add_get(ECE_PATH, ece)
    app.router.add_get("/-/times", times)
    app.router.add_get("/-/count", count)
    return app


def _serve(spec: ServerSpec, conn: Connection) -> None:
    """Child process: build the bomb if asked, listen on a free port, report it."""
    info: dict[str, Any] = {}
    bomb = b""
    if spec.bomb is not None:
        t0 = time.perf_counter()
        bomb = build_bomb(spec.bomb_size, (FIXTURES / SAMPLES["capacity"]).read_bytes())
        info["bomb_build_s"] = round(time.perf_counter() - t0, 2)
        info["bomb_bytes"] = len(bomb)
        info["bomb_decoded_bytes"] = bomb_decoded_size(bomb)

    async def main() -> None:
        runner = web.AppRunner(_server_app(spec, bomb), access_log=None, handle_signals=False)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0, backlog=1024)
        await site.start()
        port = next(a[1] for a in runner.addresses if isinstance(a, tuple))
        conn.send({"port": int(port), **info})
        await asyncio.Event().wait()  # until terminated

    asyncio.run(main())


class VendorServer:
    def __init__(self, spec: ServerSpec) -> None:
        ctx = multiprocessing.get_context("fork")
        parent, child = ctx.Pipe()
        self.proc = ctx.Process(target=_serve, args=(spec, child), daemon=True)
        self.proc.start()
        if not parent.poll(60):
            self.stop()
            raise RuntimeError("vendor server did not start")
        self.info: dict[str, Any] = parent.recv()
        self.port = int(self.info["port"])
        self.url = f"http://127.0.0.1:{self.port}"

    def times(self, match: str = "") -> dict[str, list[float]]:
        query = f"?match={match}" if match else ""
        data: dict[str, list[float]] = _get_json(f"{self.url}/-/times{query}")
        return data

    def count(self) -> int:
        return int(_get_json(f"{self.url}/-/count")["requests"])

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.join(5)
        if self.proc.is_alive():
            self.proc.kill()
            self.proc.join(5)


@contextmanager
def vendor_server(spec: ServerSpec) -> Iterator[VendorServer]:
    server = VendorServer(spec)
    try:
        yield server
    finally:
        server.stop()


# --------------------------------------------------------------------------- daemon


class DaemonProcess:
    """``python -m ccwatch run`` in its own process, in a scratch directory."""

    def __init__(self, config_file: Path, workdir: Path, pythonpath: str | None) -> None:
        self.config_file = config_file
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        env = {k: v for k, v in os.environ.items() if not k.startswith("CCWATCH_")}
        if pythonpath:
            env["PYTHONPATH"] = os.pathsep.join(
                p for p in (pythonpath, env.get("PYTHONPATH", "")) if p
            )
        self.env = env
        self.workdir = workdir  # the cwd: `python -m` puts it first on sys.path
        self.log_path = workdir / "daemon.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def ccwatch_file(self) -> str:
        out = subprocess.run(
            [sys.executable, "-c", "import ccwatch; print(ccwatch.__file__)"],
            cwd=self.workdir,
            env=self.env,
            capture_output=True,
            text=True,
            check=True,
            timeout=60,
        )
        return out.stdout.strip()

    def start(self, ready_timeout: float = 60.0) -> float:
        """Start; return the seconds until /-/healthy answered."""
        cmd = [
            sys.executable,
            "-m",
            "ccwatch",
            "run",
            "--config.file",
            str(self.config_file),
            "--web.listen-address",
            f"127.0.0.1:{self.port}",
            "--log.level",
            "warning",
            "--log.format",
            "json",
        ]
        t0 = time.monotonic()
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                cmd, cwd=self.workdir, env=self.env, stdout=log, stderr=log
            )
        while time.monotonic() - t0 < ready_timeout:
            if self.proc.poll() is not None:
                raise RuntimeError(f"daemon exited with {self.proc.returncode}: {self.log_tail()}")
            try:
                if _http("GET", f"{self.url}/-/healthy", 2)[0] == 200:
                    return time.monotonic() - t0
            except OSError:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"daemon not healthy after {ready_timeout} s: {self.log_tail()}")

    def wait_ready(self, timeout: float) -> float:
        t0 = time.monotonic()
        while time.monotonic() - t0 < timeout:
            self.check_alive()
            if _http("GET", f"{self.url}/-/ready", 10)[0] == 200:
                return time.monotonic() - t0
            time.sleep(0.25)
        raise RuntimeError(f"daemon not ready after {timeout} s")

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def check_alive(self) -> None:
        if not self.alive:
            code = self.proc.returncode if self.proc else None
            raise RuntimeError(f"daemon exited with {code}: {self.log_tail()}")

    def status_mb(self, key: str) -> float | None:
        """``VmRSS``, ``VmHWM``, ... of /proc/PID/status in MiB (None once it is gone).

        MiB, as bench/poll_throughput.py counts and docs/benchmarks.md labels "MB".
        """
        try:
            with open(f"/proc/{self.pid}/status") as f:
                for line in f:
                    if line.startswith(key + ":"):
                        return round(int(line.split()[1]) / 1024, 1)
        except OSError:
            return None
        return None

    def reload_http(self, timeout: float = 600.0) -> tuple[int, float]:
        t0 = time.monotonic()
        status, _ = _http("POST", f"{self.url}/-/reload", timeout)
        return status, time.monotonic() - t0

    def sighup(self) -> None:
        os.kill(self.pid, signal.SIGHUP)

    def log_tail(self, lines: int = 5) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return " | ".join(text.strip().splitlines()[-lines:])

    def stop(self, grace: float = 5.0) -> None:
        """SIGTERM; SIGKILL after ``grace`` (a slow poll in flight would hold it 25 s)."""
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(grace)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)


@contextmanager
def daemon(config_file: Path, workdir: Path, pythonpath: str | None) -> Iterator[DaemonProcess]:
    d = DaemonProcess(config_file, workdir, pythonpath)
    try:
        yield d
    finally:
        d.stop()


# --------------------------------------------------------------------------- metrics

_SAMPLE_RE = re.compile(r"^(?P<name>[a-zA-Z_:][\w:]*)(?:\{(?P<labels>.*)\})? (?P<value>\S+)")
_LABEL_RE = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')


def scrape(url: str) -> list[tuple[str, dict[str, str], float]]:
    status, body = _http("GET", f"{url}/metrics", 30)
    if status != 200:
        raise RuntimeError(f"/metrics: HTTP {status}")
    samples = []
    for line in body.decode().splitlines():
        m = _SAMPLE_RE.match(line)
        if m is None or line.startswith("#"):
            continue
        labels = dict(_LABEL_RE.findall(m["labels"] or ""))
        samples.append((m["name"], labels, float(m["value"])))
    return samples


# --------------------------------------------------------------------------- reload-gap


def _url_gaps(times: list[float], start: float, end: float) -> float:
    """Longest time between two requests of one URL in [start, end].

    The last request before ``start`` anchors the first gap; the time from the last
    request to ``end`` counts too (a URL that stopped being polled has a gap to the end).
    """
    before = [t for t in times if t < start]
    inside = [t for t in times if start <= t <= end]
    points = ([before[-1]] if before else [start]) + inside
    gaps = [b - a for a, b in itertools.pairwise(points)]
    gaps.append(end - points[-1])
    return max(gaps)


def reload_gap_once(args: argparse.Namespace, via: str, workdir: Path) -> dict[str, Any]:
    a_ids = range(1000, 1000 + args.entry_points)
    b_id, c_id = 9000, 3000
    spec = ServerSpec(slow={b_id: args.slow_seconds})
    cfg = workdir / f"reload-gap-{via}.yml"
    with vendor_server(spec) as server:
        a = _ece_target("a", server.url, a_ids, interval="1s", timeout="1s")
        b = _ece_target(
            "b", server.url, [b_id], interval="30s", timeout="25s", endpoints=["capacity"]
        )
        c = _ece_target(
            "c", server.url, [c_id], interval="1s", timeout="1s", endpoints=["agentAvailability"]
        )
        _write_config(cfg, _config([a, b]))
        b_path = ECE_PATH.format(endpoint="capacity", id=b_id)
        c_path = ECE_PATH.format(endpoint="agentAvailability", id=c_id)
        with daemon(cfg, workdir, args.pythonpath) as d:
            ccwatch_file = d.ccwatch_file()
            t_start = time.monotonic()
            d.start()
            # Reload once A polls steadily and B's slow poll has been in flight a while.
            deadline = t_start + 30 + args.in_flight + 30
            t_b: float | None = None
            while time.monotonic() < deadline:
                d.check_alive()
                seen = server.times(match=b_path).get(b_path, [])
                if seen:
                    t_b = seen[0]
                    break
                time.sleep(0.25)
            if t_b is None:
                raise RuntimeError("target B was never polled")
            t_reload = max(t_start + args.warmup, t_b + args.in_flight)
            time.sleep(max(0.0, t_reload - time.monotonic()))
            _write_config(cfg, _config([a, b, c]))
            rss_before = d.status_mb("VmRSS")
            status: int | None = None
            answer_s: float | None = None
            t_reload = time.monotonic()
            if via == "sighup":
                d.sighup()
            else:
                status, answer_s = d.reload_http()
            # Until the new config polls (target C appears), then args.after more seconds.
            t_applied: float | None = None
            deadline = t_reload + 120
            while time.monotonic() < deadline:
                d.check_alive()
                seen = server.times(match=c_path).get(c_path, [])
                if seen:
                    t_applied = seen[0]
                    break
                time.sleep(0.25)
            time.sleep(args.after)
            t_end = time.monotonic()
            times = server.times()
            rss_after = d.status_mb("VmRSS")
    a_paths = {ECE_PATH.format(endpoint=e, id=i) for i in a_ids for e in ENDPOINTS}
    window_start = t_reload - 2.0
    gaps = [_url_gaps(times.get(p, []), window_start, t_end) for p in sorted(a_paths)]
    every_a = sorted(t for p in a_paths for t in times.get(p, []))
    merged = [t for t in every_a if window_start <= t <= t_end]
    silence = max(
        (y - x for x, y in itertools.pairwise([window_start, *merged, t_end])),
        default=t_end - window_start,
    )
    rate_s = 5.0
    before = sum(t_reload - rate_s <= t < t_reload for t in every_a) / rate_s
    after = sum(t_end - rate_s <= t < t_end for t in every_a) / rate_s
    b_times = times.get(b_path, [])
    return {
        "via": via,
        "ccwatch": ccwatch_file,
        "a_urls": len(a_paths),
        "reload_at_s": round(t_reload - t_start, 2),
        "b_in_flight_at_reload_s": round(t_reload - t_b, 2),
        "reload_http_status": status,
        "reload_answer_s": round(answer_s, 3) if answer_s is not None else None,
        "new_config_polling_after_s": round(t_applied - t_reload, 2) if t_applied else None,
        "gap_max_s": round(max(gaps), 2),
        "gap_p99_s": round(_percentile(gaps, 99), 2),
        "gap_p50_s": round(_percentile(gaps, 50), 2),
        "a_all_silent_s": round(silence, 2),
        "a_polls_per_s_before": round(before),
        "a_polls_per_s_after": round(after),
        "b_requests": len(b_times),
        "window_s": round(t_end - window_start, 1),
        "rss_mb_before_reload": rss_before,
        "rss_mb_after_reload": rss_after,
    }


def cmd_reload_gap(args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    vias = ["sighup", "http"] if args.via == "both" else [args.via]
    load = _load()
    runs = [reload_gap_once(args, via, workdir) for via in vias]
    result = {
        "benchmark": "reload-gap",
        "entry_points": args.entry_points,
        "slow_seconds": args.slow_seconds,
        "loadavg_start": load,
        "loadavg_end": _load(),
        "runs": runs,
    }
    print(f"reload-gap: {args.entry_points * 5} jobs at 1 s + one {args.slow_seconds:g} s poll")
    for r in runs:
        answer = f", answer {r['reload_answer_s']} s" if r["reload_answer_s"] is not None else ""
        print(
            f"  {r['via']:6}: per-URL gap max {r['gap_max_s']} s, p99 {r['gap_p99_s']} s, "
            f"p50 {r['gap_p50_s']} s; all A silent {r['a_all_silent_s']} s{answer}; "
            f"polls/s {r['a_polls_per_s_before']} -> {r['a_polls_per_s_after']}"
        )
    return result


# --------------------------------------------------------------------------- reload-time


def _silence(times: list[float], start: float, end: float) -> float:
    """Longest stretch in [start, end] without a request (times sorted)."""
    inside = [t for t in times if start <= t <= end]
    points = [start, *inside, end]
    return max(b - a for a, b in itertools.pairwise(points))


def cmd_reload_time(args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    load = _load()
    ids = range(10_000, 10_000 + args.entry_points)
    cfg = workdir / "reload-time.yml"
    reloads: list[dict[str, Any]] = []
    with vendor_server(ServerSpec(record="all")) as server:
        target = _ece_target("big", server.url, ids)
        _write_config(cfg, _config([target], interval=args.interval, timeout="5s"))
        with daemon(cfg, workdir, args.pythonpath) as d:
            ccwatch_file = d.ccwatch_file()
            healthy_s = d.start(ready_timeout=180)
            ready_s = d.wait_ready(timeout=180)
            rss_ready = d.status_mb("VmRSS")
            time.sleep(args.pause)
            timeouts = ["4s", "5s"]
            plan = [("unchanged", None)] * args.repeat + [
                ("timeout_changed", timeouts[i % 2]) for i in range(args.repeat)
            ]
            for kind, timeout in plan:
                if timeout is not None:
                    _write_config(cfg, _config([target], interval=args.interval, timeout=timeout))
                t0 = time.monotonic()
                status, answer_s = d.reload_http()
                time.sleep(args.pause)
                d.check_alive()
                reloads.append(
                    {
                        "kind": kind,
                        "timeout": timeout,
                        "status": status,
                        "answer_s": round(answer_s, 3),
                        "t0": t0,
                        "rss_mb": d.status_mb("VmRSS"),
                    }
                )
            hwm = d.status_mb("VmHWM")
            rss_end = d.status_mb("VmRSS")
            all_times = sorted(server.times()["*"])
    for r in reloads:
        t0 = r.pop("t0")
        r["server_silence_s"] = round(_silence(all_times, t0 - 1.0, t0 + args.pause), 3)

    def median(kind: str, key: str) -> float:
        return round(float(statistics.median(r[key] for r in reloads if r["kind"] == kind)), 3)

    result = {
        "benchmark": "reload-time",
        "ccwatch": ccwatch_file,
        "entry_points": args.entry_points,
        "jobs": args.entry_points * 5,
        "interval": args.interval,
        "loadavg_start": load,
        "loadavg_end": _load(),
        "healthy_after_s": round(healthy_s, 2),
        "ready_after_s": round(ready_s, 2),
        "unchanged_answer_s_median": median("unchanged", "answer_s"),
        "changed_answer_s_median": median("timeout_changed", "answer_s"),
        "unchanged_silence_s_median": median("unchanged", "server_silence_s"),
        "changed_silence_s_median": median("timeout_changed", "server_silence_s"),
        "rss_mb_ready": rss_ready,
        "rss_mb_end": rss_end,
        "rss_mb_peak": hwm,
        "reloads": reloads,
    }
    print(f"reload-time: {args.entry_points * 5} jobs, POST /-/reload x{args.repeat} each")
    print(
        f"  unchanged file: {result['unchanged_answer_s_median']} s median "
        f"(server saw no request for {result['unchanged_silence_s_median']} s)"
    )
    print(
        f"  defaults.timeout changed: {result['changed_answer_s_median']} s median "
        f"(server saw no request for {result['changed_silence_s_median']} s)"
    )
    print(f"  RSS {rss_ready} MB ready, {rss_end} MB at the end, peak {hwm} MB")
    return result


# --------------------------------------------------------------------------- gzip-bomb


def gzip_bomb_once(args: argparse.Namespace, mode: str | None, workdir: Path) -> dict[str, Any]:
    spec = ServerSpec(bomb=mode, bomb_size=int(args.size_mib * MiB))
    cfg = workdir / f"gzip-bomb-{mode or 'normal'}.yml"
    with vendor_server(spec) as server:
        target = _ece_target("bomb", server.url, [1000], interval="2s", endpoints=["capacity"])
        _write_config(cfg, _config([target], interval="2s", timeout="5s"))
        with daemon(cfg, workdir, args.pythonpath) as d:
            ccwatch_file = d.ccwatch_file()
            d.start()
            hwm_started = d.status_mb("VmHWM")
            t_end = time.monotonic() + args.seconds
            rss_max = 0.0
            while time.monotonic() < t_end and d.alive:
                rss_max = max(rss_max, d.status_mb("VmRSS") or 0.0)
                time.sleep(0.1)
            alive = d.alive
            hwm = d.status_mb("VmHWM")
            rss = d.status_mb("VmRSS")
            success: float | None = None
            errors: dict[str, float] = {}
            if alive:
                for name, labels, value in scrape(d.url):
                    if labels.get("target") != "bomb":
                        continue
                    if name == "ccwatch_poll_success":
                        success = value
                    elif name == "ccwatch_poll_errors_total":
                        errors[labels.get("reason", "")] = value
            requests = server.count()
            exit_code = None if alive else (d.proc.returncode if d.proc else None)
    return {
        "answer": mode or "normal",
        "ccwatch": ccwatch_file,
        **{k: v for k, v in server.info.items() if k != "port"},
        "seconds": args.seconds,
        "requests": requests,
        "alive": alive,
        "exit_code": exit_code,
        "vmhwm_mb_started": hwm_started,
        "vmhwm_mb": hwm,
        "vmrss_mb_max_sampled": rss_max,
        "vmrss_mb_end": rss,
        "poll_success": success,
        "poll_errors": errors,
    }


def cmd_gzip_bomb(args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    modes: list[str | None] = [None]
    modes += ["length", "chunked"] if args.mode == "both" else [args.mode]
    load = _load()
    runs = [gzip_bomb_once(args, mode, workdir) for mode in modes]
    result = {
        "benchmark": "gzip-bomb",
        "size_mib": args.size_mib,
        "loadavg_start": load,
        "loadavg_end": _load(),
        "runs": runs,
    }
    print(f"gzip-bomb: capacity answer inflating to {args.size_mib:g} MiB, {args.seconds:g} s")
    for r in runs:
        size = f" ({r['bomb_bytes']} bytes gzip)" if "bomb_bytes" in r else ""
        print(
            f"  {r['answer']:8}{size}: peak RSS {r['vmhwm_mb']} MB; "
            f"poll_success {r['poll_success']}; errors {r['poll_errors'] or '{}'}; "
            f"{r['requests']} requests" + ("" if r["alive"] else f"; DIED ({r['exit_code']})")
        )
    return result


# --------------------------------------------------------------------------- main


def _emit(result: dict[str, Any], out: Path | None) -> None:
    line = json.dumps(result, separators=(",", ":"))
    print(line, flush=True)
    if out is not None:
        with open(out, "a") as f:
            f.write(line + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument(
        "--pythonpath",
        help="put this directory first on the daemon's PYTHONPATH (e.g. an older checkout)",
    )
    parser.add_argument("--json-out", type=Path, help="also append the JSON lines to this file")
    sub = parser.add_subparsers(dest="command", required=True)

    def gap_flags(p: argparse.ArgumentParser) -> None:
        p.add_argument("--via", choices=["sighup", "http", "both"], default="both")
        p.add_argument("--entry-points", type=int, default=200, help="of target A (5 jobs each)")
        p.add_argument("--slow-seconds", type=float, default=20.0, help="target B's answer time")
        p.add_argument("--warmup", type=float, default=8.0, help="seconds before a reload")
        p.add_argument(
            "--in-flight",
            type=float,
            default=6.0,
            help="reload once B's slow poll has been in flight this long",
        )
        p.add_argument("--after", type=float, default=10.0, help="seconds to run after it")

    def time_flags(p: argparse.ArgumentParser) -> None:
        p.add_argument("--entry-points", type=int, default=10_000)
        p.add_argument("--interval", default="15s")
        p.add_argument("--repeat", type=int, default=3, help="reloads of each kind")
        p.add_argument("--pause", type=float, default=5.0, help="seconds after each reload")

    def bomb_flags(p: argparse.ArgumentParser) -> None:
        p.add_argument("--mode", choices=["length", "chunked", "both"], default="both")
        p.add_argument("--size-mib", type=float, default=200.0, help="decoded size")
        p.add_argument("--seconds", type=float, default=15.0, help="per run")

    gap_flags(sub.add_parser("reload-gap", help="polling through a reload"))
    time_flags(sub.add_parser("reload-time", help="POST /-/reload at 50,000 jobs"))
    bomb_flags(sub.add_parser("gzip-bomb", help="a gzip body inflating to 200 MiB"))
    sub.add_parser("all", help="the three with their defaults")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="ccwatch-resilience-") as tmp:
        workdir = Path(tmp)
        if args.command == "all":
            defaults = argparse.ArgumentParser()
            gap_flags(defaults)
            gap = defaults.parse_args([])
            defaults = argparse.ArgumentParser()
            time_flags(defaults)
            rtime = defaults.parse_args([])
            defaults = argparse.ArgumentParser()
            bomb_flags(defaults)
            bomb = defaults.parse_args([])
            for ns in (gap, rtime, bomb):
                ns.pythonpath = args.pythonpath
            _emit(cmd_reload_gap(gap, workdir), args.json_out)
            _emit(cmd_reload_time(rtime, workdir), args.json_out)
            _emit(cmd_gzip_bomb(bomb, workdir), args.json_out)
        elif args.command == "reload-gap":
            _emit(cmd_reload_gap(args, workdir), args.json_out)
        elif args.command == "reload-time":
            _emit(cmd_reload_time(args, workdir), args.json_out)
        else:
            _emit(cmd_gzip_bomb(args, workdir), args.json_out)


if __name__ == "__main__":
    main()
