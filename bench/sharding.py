"""Benchmark: two shards against one process, each saturated, against nginx.

nginx (Debian's, one worker, run as a child of this script with its own temporary
configuration) serves the ECE spec samples from ``tests/fixtures/ece``: it is cheap, so
it leaves most of the second core to ccwatch. The config has ``--entry-points`` ECE entry
points (five jobs each) at ``--interval`` 1s: 20,000 jobs demand 20,000 polls/s, more than
one process can do, so every process is saturated.

Each ccwatch process is a child running this script with ``--child``: it builds the
config (with ``sharding: {shard: I, total_shards: N}``), starts the Daemon, waits until
every job has polled, runs ``tune_gc()``, says so, waits for the go, then counts
``scheduler.polls_total`` and ``time.process_time()`` over ``--seconds`` and prints one
JSON line. The parent runs:

1. one process (shard 0 of 1) alone;
2. shards 0 and 1 of 2 at the same time, measured over the same window;

and prints polls per wall-clock second, polls per CPU-second, the total of the shards
against the single process, and nginx's CPU seconds over each window.

Usage: python bench/sharding.py [--entry-points 4000] [--seconds 30] [--repeat 1]
Only 127.0.0.1 is used; the script stops by itself.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import IO, Any

from _common import free_port, wait_port

FIXTURES = Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "ece"
#: endpoint -> the spec sample nginx serves for it
SAMPLES = {
    "agentAvailability": "agentAvailability.xml",
    "capacity": "capacity.xml",
    "liveSessionStatus": "liveSessionStatus.xml",
    "checkEligibility": "checkEligibility.xml",
    "chatAllowed": "chatAllowed_true.xml",
}
FIRST_ENTRY_POINT = 1000
NGINX_CONF = """\
worker_processes 1;
pid {root}/nginx.pid;
error_log {root}/error.log warn;
events {{
    worker_connections 8192;
}}
http {{
    access_log off;
    client_body_temp_path {root}/body;
    proxy_temp_path {root}/proxy;
    fastcgi_temp_path {root}/fastcgi;
    uwsgi_temp_path {root}/uwsgi;
    scgi_temp_path {root}/scgi;
    keepalive_requests 1000000;
    keepalive_timeout 120s;
    server {{
        listen 127.0.0.1:{port};
        location ~ ^/system/egain/chat/entrypoint/(\\w+)/\\d+$ {{
            default_type application/xml;
            alias {root}/xml/$1.xml;
        }}
    }}
}}
"""


# --------------------------------------------------------------------------- child


def _config(args: argparse.Namespace, web_port: int) -> dict[str, Any]:
    return {
        "web": {"listen_address": f"127.0.0.1:{web_port}"},
        "defaults": {"interval": args.interval, "timeout": "1s"},
        "scheduler": {"max_concurrency": args.concurrency},
        "sharding": {"shard": args.shard, "total_shards": args.total},
        # error: the poll_stale warnings of a saturated scheduler would cost CPU
        "log": {"level": "error", "format": "json"},
        "targets": [
            {
                "name": "bench",
                "source": "ece",
                "url": f"http://127.0.0.1:{args.port}/system",
                "entry_points": list(
                    range(FIRST_ENTRY_POINT, FIRST_ENTRY_POINT + args.entry_points)
                ),
            }
        ],
    }


def _say(out: IO[str], record: dict[str, Any]) -> None:
    out.write(json.dumps(record) + "\n")
    out.flush()


async def child(args: argparse.Namespace, out: IO[str]) -> None:
    """One ccwatch process: ready, then wait for the go on stdin, then measure."""
    from ccwatch.daemon import Daemon, tune_gc
    from ccwatch.sources import parse_config

    daemon = Daemon(parse_config(_config(args, free_port())))
    await daemon.start()
    tune_gc()
    scheduler = daemon.scheduler
    deadline = time.monotonic() + 120
    while not scheduler.ready and time.monotonic() < deadline:  # noqa: ASYNC110
        await asyncio.sleep(0.2)
    tune_gc()
    _say(out, {"ready": scheduler.ready, "jobs": len(scheduler.jobs)})
    await asyncio.to_thread(sys.stdin.readline)  # the go
    polls0, cpu0, wall0 = scheduler.polls_total, time.process_time(), time.monotonic()
    await asyncio.sleep(args.seconds)
    polls1, cpu1, wall1 = scheduler.polls_total, time.process_time(), time.monotonic()
    jobs = scheduler.jobs
    failing = [job for job in jobs if job.failures]
    errors: dict[str, int] = {}
    for job in jobs:
        for reason, count in (job.errors or {}).items():
            errors[reason] = errors.get(reason, 0) + count
    _say(
        out,
        {
            "shard": args.shard,
            "total_shards": args.total,
            "jobs": len(jobs),
            "polls": polls1 - polls0,
            "cpu_seconds": round(cpu1 - cpu0, 3),
            "wall_seconds": round(wall1 - wall0, 3),
            "jobs_never_polled": sum(not job.attempted for job in jobs),
            "jobs_failing": len(failing),
            "failed_polls_by_reason": errors,
            "failure_sample": failing[0].last_error if failing else None,
        },
    )
    await daemon.stop()


# --------------------------------------------------------------------------- nginx


def _cpu_seconds(pid: int) -> float:
    """utime + stime of one process, in seconds (0 when it is gone)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return 0.0
    fields = stat[stat.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _machine_busy() -> float:
    """CPU seconds every core of the machine has spent busy (not idle or waiting)."""
    with open("/proc/stat") as f:
        ticks = [int(x) for x in f.readline().split()[1:]]
    return (sum(ticks[:8]) - ticks[3] - ticks[4]) / os.sysconf("SC_CLK_TCK")


def _children(pid: int) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        if int(stat[stat.rindex(")") + 2 :].split()[1]) == pid:
            found.append(int(entry))
    return found


class Nginx:
    """nginx with one worker on a free loopback port, serving the ECE samples."""

    def __init__(self) -> None:
        binary = shutil.which("nginx") or "/usr/sbin/nginx"
        if not Path(binary).exists():
            raise SystemExit("nginx is not installed (apt-get install -y nginx)")
        self.root = Path(tempfile.mkdtemp(prefix="ccwatch-nginx-"))
        self.root.chmod(0o755)  # the worker may run as nobody
        xml = self.root / "xml"
        xml.mkdir(mode=0o755)
        for endpoint, name in SAMPLES.items():
            shutil.copyfile(FIXTURES / name, xml / f"{endpoint}.xml")
            (xml / f"{endpoint}.xml").chmod(0o644)
        self.port = free_port()
        conf = self.root / "nginx.conf"
        conf.write_text(NGINX_CONF.format(root=self.root, port=self.port))
        self.proc = subprocess.Popen(
            [
                binary,
                *("-p", str(self.root), "-e", str(self.root / "error.log")),
                *("-c", str(conf), "-g", "daemon off;"),
            ],
            stdin=subprocess.DEVNULL,
        )
        self.workers: list[int] = []

    def started(self) -> None:
        asyncio.run(wait_port(self.port))
        deadline = time.monotonic() + 10
        while not self.workers and time.monotonic() < deadline:
            self.workers = _children(self.proc.pid)
            time.sleep(0.05)

    def cpu(self) -> dict[str, float]:
        return {
            "master": _cpu_seconds(self.proc.pid),
            "workers": sum(_cpu_seconds(pid) for pid in self.workers),
        }

    def check(self) -> dict[str, Any]:
        """One GET per endpoint: status, content type, and that ccwatch parses it."""
        from ccwatch.sources import ece

        result: dict[str, Any] = {}
        for endpoint in SAMPLES:
            url = f"http://127.0.0.1:{self.port}/system/egain/chat/entrypoint/{endpoint}/1000"
            with urllib.request.urlopen(url, timeout=5) as resp:
                body = resp.read()
                result[endpoint] = {
                    "status": resp.status,
                    "content_type": resp.headers.get("Content-Type"),
                    "bytes": len(body),
                }
            result[endpoint]["parsed"] = repr(ece.PARSERS[endpoint](body))[:120]
        return result

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)
        shutil.rmtree(self.root, ignore_errors=True)


# --------------------------------------------------------------------------- parent


def _spawn(args: argparse.Namespace, shard: int, total: int, port: int) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [
            *(sys.executable, __file__, "--child"),
            *("--shard", str(shard), "--total", str(total), "--port", str(port)),
            *("--entry-points", str(args.entry_points), "--interval", args.interval),
            *("--seconds", str(args.seconds), "--concurrency", str(args.concurrency)),
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )


def _line(proc: subprocess.Popen[str]) -> dict[str, Any]:
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if not line:
        raise RuntimeError(f"a ccwatch child exited early (code {proc.wait(5)})")
    record: dict[str, Any] = json.loads(line)
    return record


def _window(args: argparse.Namespace, nginx: Nginx, total: int) -> dict[str, Any]:
    """Shards 0 .. total - 1 together: ready, go at once, results and nginx's CPU."""
    procs = [_spawn(args, shard, total, nginx.port) for shard in range(total)]
    try:
        ready = [_line(proc) for proc in procs]
        if not all(r["ready"] for r in ready):
            raise RuntimeError(f"not every job polled within 120 s: {ready}")
        time.sleep(args.settle)  # steady state: every process saturated
        cpu0, busy0, wall0 = nginx.cpu(), _machine_busy(), time.monotonic()
        for proc in procs:
            assert proc.stdin is not None
            proc.stdin.write("go\n")
            proc.stdin.flush()
        results = [_line(proc) for proc in procs]
        cpu1, busy1, wall1 = nginx.cpu(), _machine_busy(), time.monotonic()
        for proc in procs:
            proc.wait(30)
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait(5)
    for r in results:
        r["polls_per_wall_second"] = round(r["polls"] / r["wall_seconds"])
        r["polls_per_cpu_second"] = round(r["polls"] / max(r["cpu_seconds"], 1e-9))
    nginx_cpu = {k: round(cpu1[k] - cpu0[k], 2) for k in cpu0}
    wall = wall1 - wall0
    ours = sum(r["cpu_seconds"] for r in results) + sum(nginx_cpu.values())
    return {
        "processes": results,
        "window_seconds": round(wall1 - wall0, 2),
        "nginx_cpu_seconds": nginx_cpu,
        "nginx_cores": round(sum(nginx_cpu.values()) / wall, 2),
        "ccwatch_cores": round(sum(r["cpu_seconds"] for r in results) / wall, 2),
        # everything else on the machine (the parent, the kernel, other people's work)
        "other_cores": round((busy1 - busy0 - ours) / wall, 2),
    }


def _run(args: argparse.Namespace, nginx: Nginx) -> dict[str, Any]:
    single = _window(args, nginx, 1)
    sharded = _window(args, nginx, 2)
    one = single["processes"][0]
    total = sum(r["polls_per_wall_second"] for r in sharded["processes"])
    return {
        "single": {
            "polls_per_wall_second": one["polls_per_wall_second"],
            "polls_per_cpu_second": one["polls_per_cpu_second"],
            **{k: v for k, v in single.items() if k != "processes"},
            "process": one,
        },
        "two_shards": {
            "polls_per_wall_second_total": total,
            "shards": [
                {
                    "shard": r["shard"],
                    "polls_per_wall_second": r["polls_per_wall_second"],
                    "polls_per_cpu_second": r["polls_per_cpu_second"],
                    "polls_per_cpu_second_vs_single_pct": round(
                        100 * (r["polls_per_cpu_second"] / one["polls_per_cpu_second"] - 1), 1
                    ),
                }
                for r in sharded["processes"]
            ],
            **{k: v for k, v in sharded.items() if k != "processes"},
            "processes": sharded["processes"],
        },
        "total_vs_single": round(total / one["polls_per_wall_second"], 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--entry-points", type=int, default=4000)
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--interval", default="1s")
    parser.add_argument("--concurrency", type=int, default=256)
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--settle", type=float, default=3.0, help="seconds after ready")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--shard", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--total", type=int, default=1, help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        from ccwatch import logs

        logs.configure("error", "json")
        with os.fdopen(os.dup(sys.stdout.fileno()), "w") as out:
            sys.stdout = sys.stderr  # only the records go to the parent
            asyncio.run(child(args, out))
        return
    nginx = Nginx()
    try:
        nginx.started()
        report: dict[str, Any] = {
            "entry_points": args.entry_points,
            "jobs": args.entry_points * len(SAMPLES),
            "interval": args.interval,
            "seconds": args.seconds,
            "cpus": os.cpu_count(),
            "load_average_before": [round(x, 2) for x in os.getloadavg()],
            "nginx_check": nginx.check(),
            "runs": [_run(args, nginx) for _ in range(args.repeat)],
            "load_average_after": [round(x, 2) for x in os.getloadavg()],
        }
    finally:
        nginx.stop()
    json.dump(report, sys.stdout, indent=2)
    print()


if __name__ == "__main__":
    main()
