"""Benchmark: the daemon's RSS over a long run with a reload every minute.

Starts the vendor simulator and the ccwatch daemon under test as two child processes
(on 127.0.0.1, free ports, from a scratch working directory) and runs for ``--minutes``:

- a steady base configuration: an ECE target with ``--entry-points`` entry points at 5 s
  (five jobs each), a context_service target and a genesys_services target (the shapes of
  ``ccwatch/demo.py``'s DEMO_CONFIG), all pointing at the simulator;
- the simulator's Alvaria organization is given ``--alvaria-settings`` settings and
  frozen: its own walk adds about 18 settings a minute, which grows every settings
  answer and, with it, the daemon's RSS (``--alvaria-growing`` keeps that walk);
- every ``--reload-every`` seconds the file is rewritten and ``POST /-/reload`` sent
  (each answer must be 200). Odd reloads add a GMS probe target (interval 15 s) and an
  Alvaria context cookies target (interval 5 s), even reloads remove them again. Each
  pair gets a new name, suffixed with the reload number, so per-target state that is
  kept by name and never freed shows up as growth (``--fixed-names`` re-adds the same
  two names instead: a control that tells per-name state from other churn);
- the daemon's VmRSS (``/proc/PID/status``) is sampled every ``--sample-every`` seconds;
- ``/metrics`` is scraped right after every reload and shortly before the next one. Every
  scrape counts the series whose ``target`` label names a target removed earlier (they
  must be 0), and the scrape before a removing reload checks that the added targets
  were polled successfully (``ccwatch_poll_success`` 1), so the churn is real.

It reports RSS at the start (daemon ready), after the warm-up, at the end and at peak,
the least-squares slope of RSS in MB per minute over the samples after
``--warmup-minutes`` and over the last half of the run, and the most lingering series
seen; then one JSON line (``--json-out FILE`` also appends it to FILE).

``ccwatch simulate`` serves only ECE entry points 1000-1003, so the simulator child runs
what that command runs (``ccwatch.simulator.run_simulator``) with the entry points of the
configuration. The daemon child is ``python -m ccwatch run --config.file F
--web.listen-address 127.0.0.1:PORT --log.level warning``. ``--pythonpath DIR`` puts DIR
first on both children's PYTHONPATH, to measure an older checkout.

Usage: python bench/soak.py [--minutes 30] [--warmup-minutes 5] [--reload-every 60]
                            [--pythonpath DIR] [--json-out FILE]
Only 127.0.0.1 is used; the run is bounded in time and stops by itself.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import re
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any, TextIO

ROOT = Path(__file__).resolve().parent.parent
FIRST_ENTRY_POINT = 1000
# The simulator's credentials (ccwatch/demo.py, ccwatch/simulator/*.py defaults).
CS_USER, CS_PASSWORD = "administrator", "ccwatch-demo"
ALVARIA_CLIENT_ID = "ccwatch-demo"
ALVARIA_SECRET = "demo-client-secret"  # noqa: S105 - the simulator's own
ALVARIA_API_KEY = "demo-api-key"

# Loopback only: never go through a proxy from the environment.
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))

_SIMULATOR = """\
import asyncio, sys
from ccwatch.simulator import run_simulator
host, port, first, count, tick = sys.argv[1:6]
asyncio.run(run_simulator(host, int(port), tick=float(tick),
                          ece_entry_points=range(int(first), int(first) + int(count))))
"""


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


def _load() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def _write_config(path: Path, config: dict[str, Any]) -> None:
    """Write atomically; JSON is YAML, so the daemon reads it as its YAML config."""
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(config, indent=1), encoding="utf-8")
    tmp.replace(path)


def slope_per_minute(points: list[tuple[float, float]]) -> float | None:
    """Least-squares slope of (seconds, MB) points, in MB per minute."""
    if len(points) < 2:
        return None
    n = len(points)
    mean_t = sum(t for t, _ in points) / n
    mean_y = sum(y for _, y in points) / n
    var = sum((t - mean_t) ** 2 for t, _ in points)
    if var == 0:
        return None
    cov = sum((t - mean_t) * (y - mean_y) for t, y in points)
    return cov / var * 60.0


def _git_describe(path: Path) -> str | None:
    """Commit (and whether the work tree differs) of the checkout at ``path``; read-only."""
    env = {**os.environ, "GIT_OPTIONAL_LOCKS": "0"}  # never refresh the index
    try:
        sha = subprocess.run(
            ["git", "-C", str(path), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
            timeout=30,
            env=env,
        ).stdout.strip()
        status = subprocess.run(
            ["git", "-C", str(path), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            check=True,
            timeout=30,
            env=env,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    return sha + ("+modified" if status.strip() else "")


# --------------------------------------------------------------------------- configuration


def base_targets(sim_url: str, entry_points: int) -> list[dict[str, Any]]:
    """The steady targets (shapes from ccwatch/demo.py's DEMO_CONFIG)."""
    return [
        {
            "name": "ece-soak",
            "source": "ece",
            "url": f"{sim_url}/system",
            "entry_points": list(range(FIRST_ENTRY_POINT, FIRST_ENTRY_POINT + entry_points)),
            "interval": "5s",
        },
        {
            "name": "context-service-soak",
            "source": "context_service",
            "url": sim_url,
            "basic_auth": {"username": CS_USER, "password": CS_PASSWORD},
        },
        {
            "name": "genesys-services-soak",
            "source": "genesys_services",
            "url": sim_url,
            "customer_ids": ["ABC1234", "DEF5678", "GHI9012"],
            "contact_keys": ["408-832-7799", "650-555-0123"],
            "completed_window": "1h",
            "service_types": [400, 401, 402, 403],
        },
    ]


def transient_targets(sim_url: str, reload_number: int) -> list[dict[str, Any]]:
    """The GMS probe and Alvaria targets a reload adds, named after the reload."""
    return [
        {
            "name": f"gms-probe-soak-{reload_number}",
            "source": "gms_probe",
            "url": sim_url,
            "gms_service": "request-interaction",
            "form": {"_phone_number": "6504669999"},
            "status_request": "status",
            "expected_statuses": ["waiting-for-agent"],
            "interval": "15s",
        },
        {
            "name": f"alvaria-soak-{reload_number}",
            "source": "alvaria_context_cookies",
            "url": sim_url,
            "org_id": "orgId",
            "oauth2": {
                "token_url": f"{sim_url}/tokenservice/oauth2/access_token",
                "client_id": ALVARIA_CLIENT_ID,
                "client_secret": ALVARIA_SECRET,
                "scopes": ["customerexperienceapi.contextcookies"],
            },
            "api_key": ALVARIA_API_KEY,
            "stale_after": "30d",
            "interval": "5s",
        },
    ]


def config(targets: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "defaults": {"interval": "5s", "timeout": "2s"},
        "log": {"level": "warning", "format": "json"},
        "targets": targets,
    }


def freeze_alvaria(sim_url: str, count: int) -> None:
    """Give the simulator's Alvaria organization ``count`` settings and freeze it.

    Left alone, the simulator adds about 18 settings a minute and never removes one
    within a run, so every settings answer grows and the daemon's RSS with it, which is
    not what this benchmark measures. A few settings are expired and a few stale.
    """
    now = time.time()
    day = 86400.0
    settings = []
    for i in range(count):
        modified = now - (i % 45) * day  # those over 30 days old are stale
        setting: dict[str, Any] = {
            "customerId": f"customer{i % 25 + 1}",
            "key": f"key{i % 4 + 1}",
            "content": f"content{i}",
            "channel": ("all", "voice", "chat")[i % 3],
            "service": f"service{i % 5 + 1}",
            "creationTime": modified - day,
            "lastModifiedTime": modified,
        }
        if i % 10 != 0:  # one in ten never expires
            setting["expiresOnTime"] = now - day if i % 7 == 0 else now + (i % 60 + 1) * day
        settings.append(setting)
    request = urllib.request.Request(  # noqa: S310 - loopback
        f"{sim_url}/-/sim/alvaria/orgs/orgId/settings",
        data=json.dumps({"settings": settings}).encode(),
        headers={"Content-Type": "application/json"},
        method="PUT",
    )
    with _OPENER.open(request, timeout=10) as resp:
        if resp.status != 200:
            raise RuntimeError(f"freezing the Alvaria settings: HTTP {resp.status}")


# --------------------------------------------------------------------------- processes


class Child:
    """A child process with its output in a log file of the scratch directory."""

    def __init__(self, name: str, cmd: list[str], workdir: Path, env: dict[str, str]) -> None:
        self.name = name
        self.log_path = workdir / f"{name}.log"
        self._log: TextIO = open(self.log_path, "w")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            cmd, cwd=workdir, env=env, stdout=self._log, stderr=subprocess.STDOUT
        )

    @property
    def pid(self) -> int:
        return self.proc.pid

    @property
    def alive(self) -> bool:
        return self.proc.poll() is None

    def check_alive(self) -> None:
        if not self.alive:
            raise RuntimeError(f"{self.name} exited with {self.proc.returncode}: {self.log_tail()}")

    def log_tail(self, lines: int = 5) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return " | ".join(text.strip().splitlines()[-lines:])

    def stop(self, grace: float = 10.0) -> None:
        if self.alive:
            self.proc.terminate()
            try:
                self.proc.wait(grace)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self._log.close()


def _wait_http(child: Child, url: str, timeout: float) -> float:
    """Seconds until ``url`` answered 200."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        child.check_alive()
        try:
            if _http("GET", url, 5)[0] == 200:
                return time.monotonic() - t0
        except OSError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"{url} not 200 after {timeout} s: {child.log_tail()}")


def proc_status(pid: int) -> dict[str, int]:
    """VmRSS, VmHWM (KiB) and Threads of /proc/PID/status."""
    out: dict[str, int] = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            key, _, value = line.partition(":")
            if key in ("VmRSS", "VmHWM", "Threads"):
                out[key] = int(value.split()[0])
    return out


def proc_cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rpartition(")")[2].split()
    # after the command: state is field 3, utime 14 and stime 15 (1-based)
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def proc_fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def _mb(kib: int) -> float:
    """MiB, as the other benchmarks count and docs/benchmarks.md labels "MB"."""
    return round(kib / 1024, 2)


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


# --------------------------------------------------------------------------- the run


def run(args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CCWATCH_")}
    if args.pythonpath:
        env["PYTHONPATH"] = os.pathsep.join(
            p for p in (args.pythonpath, env.get("PYTHONPATH", "")) if p
        )
    checkout = Path(args.pythonpath).resolve() if args.pythonpath else ROOT
    ccwatch_file = subprocess.run(
        [sys.executable, "-c", "import ccwatch; print(ccwatch.__file__)"],
        cwd=workdir,
        env=env,
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout.strip()

    sim_port, web_port = _free_port(), _free_port()
    sim_url = f"http://127.0.0.1:{sim_port}"
    url = f"http://127.0.0.1:{web_port}"
    cfg = workdir / "soak.yml"
    base = base_targets(sim_url, args.entry_points)
    _write_config(cfg, config(base))
    load_start = _load()

    simulator = Child(
        "simulator",
        [
            sys.executable,
            "-c",
            _SIMULATOR,
            "127.0.0.1",
            str(sim_port),
            str(FIRST_ENTRY_POINT),
            str(args.entry_points),
            str(args.tick),
        ],
        workdir,
        env,
    )
    daemon: Child | None = None
    try:
        _wait_http(simulator, f"{sim_url}/-/sim/state", 60)
        if not args.alvaria_growing:
            freeze_alvaria(sim_url, args.alvaria_settings)
        daemon = Child(
            "daemon",
            [
                sys.executable,
                "-m",
                "ccwatch",
                "run",
                "--config.file",
                str(cfg),
                "--web.listen-address",
                f"127.0.0.1:{web_port}",
                "--log.level",
                "warning",
                "--log.format",
                "json",
            ],
            workdir,
            env,
        )
        _wait_http(daemon, f"{url}/-/healthy", 60)
        ready_s = _wait_http(daemon, f"{url}/-/ready", 120)
        pid = daemon.pid

        total = args.minutes * 60.0
        period = args.reload_every
        lead = min(5.0, period * 0.1)  # the "before the next reload" scrape
        n_reloads = int((total - 1e-6) // period)
        # (seconds after start, order at equal times, kind, number)
        events: list[tuple[float, int, str, int]] = []
        i = 0
        while i * args.sample_every <= total + 1e-6:
            events.append((i * args.sample_every, 0, "sample", i))
            i += 1
        for k in range(1, n_reloads + 1):
            events.append((k * period - lead, 1, "scrape", k))
            events.append((k * period, 2, "reload", k))
        events.append((total, 3, "scrape", n_reloads + 1))
        events.sort()

        samples: list[tuple[float, float]] = []
        threads: list[int] = []
        fds: list[int] = []
        removed: set[str] = set()
        current: list[str] = []
        reload_answers: list[float] = []
        reload_failures: list[dict[str, Any]] = []
        lingering_max = 0
        lingering_max_post = 0
        lingering_by_metric: collections.Counter[str] = collections.Counter()
        add_phases = 0
        add_phases_ok = 0
        add_phase_failures: list[dict[str, Any]] = []
        series_counts: list[tuple[float, str, int]] = []
        cpu0 = proc_cpu_seconds(pid)

        def check_scrape(t: float, kind: str) -> list[tuple[str, dict[str, str], float]]:
            nonlocal lingering_max, lingering_max_post
            metrics = scrape(url)
            series_counts.append((round(t, 1), kind, len(metrics)))
            gone = removed - set(current)  # --fixed-names re-adds removed names
            stale = [(n, lb) for n, lb, _ in metrics if lb.get("target") in gone]
            lingering_max = max(lingering_max, len(stale))
            if kind == "post":
                lingering_max_post = max(lingering_max_post, len(stale))
            lingering_by_metric.update(n for n, _ in stale)
            return metrics

        t0 = time.monotonic()
        for at, _, kind, number in events:
            time.sleep(max(0.0, t0 + at - time.monotonic()))
            simulator.check_alive()
            daemon.check_alive()
            t = time.monotonic() - t0
            if kind == "sample":
                st = proc_status(pid)
                samples.append((round(t, 2), _mb(st["VmRSS"])))
                threads.append(st["Threads"])
                fds.append(proc_fds(pid))
            elif kind == "scrape":
                metrics = check_scrape(t, "pre")
                if current:
                    add_phases += 1
                    success = {
                        (lb.get("target", ""), lb.get("endpoint", "")): v
                        for n, lb, v in metrics
                        if n == "ccwatch_poll_success" and lb.get("target") in current
                    }
                    polled = {name for name, _ in success}
                    if polled == set(current) and all(v == 1 for v in success.values()):
                        add_phases_ok += 1
                    else:
                        add_phase_failures.append(
                            {
                                "reload": number - 1,
                                "poll_success": {"/".join(k): v for k, v in success.items()},
                            }
                        )
            else:
                previous = current
                if number % 2 == 1:
                    extra = transient_targets(sim_url, 1 if args.fixed_names else number)
                    current = [str(x["name"]) for x in extra]
                else:
                    extra = []
                    current = []
                _write_config(cfg, config(base + extra))
                t_reload = time.monotonic()
                status, body = _http("POST", f"{url}/-/reload", 120)
                reload_answers.append(time.monotonic() - t_reload)
                if status != 200:
                    reload_failures.append(
                        {
                            "reload": number,
                            "status": status,
                            "body": body[:300].decode(errors="replace"),
                        }
                    )
                removed.update(previous)
                check_scrape(time.monotonic() - t0, "post")

        cpu = proc_cpu_seconds(pid) - cpu0
        sim_state = json.loads(_http("GET", f"{sim_url}/-/sim/state")[1])
        alvaria_end = sim_state["alvaria"]["orgs"]["orgId"]["settings"]
        hwm = _mb(proc_status(pid)["VmHWM"])
        log_events: collections.Counter[str] = collections.Counter()
        for line in daemon.log_path.read_text(errors="replace").splitlines():
            try:
                log_events[str(json.loads(line).get("event"))] += 1
            except (ValueError, AttributeError):
                log_events["(not JSON)"] += 1
    finally:
        if daemon is not None:
            daemon.stop()
        simulator.stop()

    warm = args.warmup_minutes * 60.0
    after_warmup = [p for p in samples if p[0] >= warm - 1.0]
    last_half = [p for p in samples if p[0] >= total / 2 - 1.0]
    slope = slope_per_minute(after_warmup)
    slope_half = slope_per_minute(last_half)
    rss = [y for _, y in samples]
    return {
        "benchmark": "soak",
        "ccwatch": ccwatch_file,
        "checkout": str(checkout),
        "commit": _git_describe(checkout),
        "minutes": args.minutes,
        "warmup_minutes": args.warmup_minutes,
        "reload_every_s": period,
        "sample_every_s": args.sample_every,
        "entry_points": args.entry_points,
        "fixed_names": args.fixed_names,
        "alvaria_settings": "growing" if args.alvaria_growing else args.alvaria_settings,
        "alvaria_settings_end": alvaria_end,
        "loadavg_start": load_start,
        "loadavg_end": _load(),
        "ready_after_s": round(ready_s, 2),
        "reloads": n_reloads,
        "reloads_not_200": reload_failures,
        "reload_answer_s_max": round(max(reload_answers), 3) if reload_answers else None,
        "reload_answer_s_median": (
            round(sorted(reload_answers)[len(reload_answers) // 2], 3) if reload_answers else None
        ),
        "transient_targets_removed": len(removed),
        "rss_mb_start": rss[0],
        "rss_mb_warmup": after_warmup[0][1] if after_warmup else None,
        "rss_mb_end": rss[-1],
        "rss_mb_peak_sampled": max(rss),
        "rss_mb_min_after_warmup": min(y for _, y in after_warmup) if after_warmup else None,
        "vmhwm_mb": hwm,
        "slope_mb_per_min_after_warmup": round(slope, 4) if slope is not None else None,
        "slope_mb_per_min_last_half": round(slope_half, 4) if slope_half is not None else None,
        "lingering_series_max": lingering_max,
        "lingering_series_max_after_removal": lingering_max_post,
        "lingering_by_metric": dict(lingering_by_metric),
        "add_phases": add_phases,
        "add_phases_polled_ok": add_phases_ok,
        "add_phase_failures": add_phase_failures,
        "cpu_seconds": round(cpu, 1),
        "threads_start_end_max": [threads[0], threads[-1], max(threads)],
        "fds_start_end_max": [fds[0], fds[-1], max(fds)],
        "daemon_log_events": dict(log_events),
        "series_counts": series_counts,
        "rss_samples": samples,
    }


def summary(r: dict[str, Any]) -> None:
    def fmt(v: float | None) -> str:
        return "n/a" if v is None else f"{v:+.4f}"

    bad = len(r["reloads_not_200"])
    print(
        f"soak: {r['minutes']:g} min, {r['reloads']} reloads every {r['reload_every_s']:g} s "
        f"({'all 200' if not bad else f'{bad} NOT 200'}), {r['entry_points']} ECE entry points"
        f"{', fixed names' if r['fixed_names'] else ''}, Alvaria settings "
        f"{r['alvaria_settings']} (at the end: {r['alvaria_settings_end']}); "
        f"ccwatch from {r['ccwatch']} ({r['commit']})"
    )
    print(
        f"  RSS start {r['rss_mb_start']} MB, after {r['warmup_minutes']:g} min warm-up "
        f"{r['rss_mb_warmup']} MB, end {r['rss_mb_end']} MB, peak {r['rss_mb_peak_sampled']} MB "
        f"sampled (VmHWM {r['vmhwm_mb']} MB)"
    )
    print(
        f"  slope after warm-up {fmt(r['slope_mb_per_min_after_warmup'])} MB/min, "
        f"last half {fmt(r['slope_mb_per_min_last_half'])} MB/min"
    )
    print(
        f"  series of removed targets: max {r['lingering_series_max']} "
        f"(right after a removing reload: {r['lingering_series_max_after_removal']})"
        + (f" {r['lingering_by_metric']}" if r["lingering_by_metric"] else "")
    )
    print(
        f"  added targets polled OK in {r['add_phases_polled_ok']} of {r['add_phases']} phases; "
        f"reload answer median {r['reload_answer_s_median']} s, max {r['reload_answer_s_max']} s; "
        f"CPU {r['cpu_seconds']} s; fds {r['fds_start_end_max']}, "
        f"threads {r['threads_start_end_max']} (start/end/max)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--minutes", type=float, default=30.0, help="length of the run")
    parser.add_argument(
        "--warmup-minutes", type=float, default=5.0, help="samples before this are not in slopes"
    )
    parser.add_argument("--reload-every", type=float, default=60.0, help="seconds")
    parser.add_argument("--sample-every", type=float, default=10.0, help="RSS sample, seconds")
    parser.add_argument("--entry-points", type=int, default=50, help="of the ECE target")
    parser.add_argument(
        "--fixed-names",
        action="store_true",
        help="re-add the same two target names each time (a control for per-name state)",
    )
    parser.add_argument(
        "--alvaria-settings",
        type=int,
        default=40,
        help="settings of the simulator's Alvaria organization, frozen (default %(default)s)",
    )
    parser.add_argument(
        "--alvaria-growing",
        action="store_true",
        help="leave the simulator's Alvaria settings growing (about 18 a minute)",
    )
    parser.add_argument("--tick", type=float, default=5.0, help="the simulator's tick, seconds")
    parser.add_argument(
        "--pythonpath",
        help="put this directory first on both children's PYTHONPATH (e.g. an older checkout)",
    )
    parser.add_argument("--json-out", type=Path, help="also append the JSON line to this file")
    args = parser.parse_args()
    if args.warmup_minutes >= args.minutes:
        parser.error("--warmup-minutes must be shorter than --minutes")
    with tempfile.TemporaryDirectory(prefix="ccwatch-soak-") as tmp:
        result = run(args, Path(tmp))
    summary(result)
    line = json.dumps(result, separators=(",", ":"))
    print(line, flush=True)
    if args.json_out is not None:
        with open(args.json_out, "a") as f:
            f.write(line + "\n")


if __name__ == "__main__":
    main()
