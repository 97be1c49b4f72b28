"""``ccwatch demo``: the simulator and the daemon in one process, on an embedded config."""

from __future__ import annotations

import asyncio
import signal
import sys

import structlog
import yaml

from ccwatch.config import ConfigBase
from ccwatch.daemon import Daemon
from ccwatch.simulator import serve as serve_simulator
from ccwatch.sources import parse_config

log = structlog.get_logger("ccwatch.demo")

DEMO_CONFIG = """
web:
  listen_address: {listen_address}
defaults:
  interval: 5s
  timeout: 2s
# opening hours: the closed/no-agent alerts fire only while open (see ccwatch_open)
calendars:
  business:
    timezone: Europe/Berlin
    hours:
      mon-fri: ["08:00-18:00"]
      sat: ["09:00-13:00"]
    # Bavarian holidays; Assumption Day (15 August) is in the catholic category
    holidays: {{country: DE, subdivision: BY, categories: [public, catholic]}}
  always:
    hours: {{mon-sun: ["00:00-24:00"]}}
targets:
  - name: ece-demo
    source: ece
    url: {sim_url}/system
    entry_points: [1000, 1001, 1002, 1003]
    calendar: business
    entry_point_calendars: {{1003: always}}
    labels: {{team: sales, site: munich}}
    thresholds: {{ece_queue_depth: 8, ece_wait_time: 2m}}
  # the simulator's Context Service registration drops now and then
  - name: context-service-demo
    source: context_service
    url: {sim_url}
    basic_auth:
      username: administrator
      password: ccwatch-demo
  - name: genesys-services-demo
    source: genesys_services
    url: {sim_url}
    customer_ids: [ABC1234, DEF5678, GHI9012]
    # contact keys are phone numbers: the names are their contact_key label values
    contact_keys:
      - {{key: "408-832-7799", name: hotline-a}}
      - {{key: "650-555-0123", name: hotline-b}}
    completed_window: 1h
    service_types: [400, 401, 402, 403]
  # opt-in: a GMS probe creates a real service each time (here, in the simulator)
  - name: gms-probe-demo
    source: gms_probe
    url: {sim_url}
    gms_service: request-inbound-poll
    form:
      _phone_number: "6504669999"
    status_request: status
    expected_statuses: [waiting-for-agent]
    interval: 15s
  - name: alvaria-demo
    source: alvaria_context_cookies
    url: {sim_url}
    org_id: orgId
    oauth2:
      token_url: {sim_url}/tokenservice/oauth2/access_token
      client_id: ccwatch-demo
      client_secret: demo-client-secret
      scopes: [customerexperienceapi.contextcookies]
    api_key: demo-api-key
    stale_after: 30d
    interval: 5s
"""


def demo_config(sim_url: str, listen_address: str) -> ConfigBase:
    text = DEMO_CONFIG.format(sim_url=sim_url, listen_address=listen_address)
    return parse_config(yaml.safe_load(text), origin="demo config")


async def run_demo(listen_address: str, simulator_host: str = "127.0.0.1") -> None:
    runner = await serve_simulator(simulator_host, 0, tick=5.0)
    try:
        addresses = [a for a in runner.addresses if isinstance(a, tuple)]
        sim_url = f"http://{simulator_host}:{addresses[0][1]}"
        daemon = Daemon(demo_config(sim_url, listen_address))
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, daemon.request_stop)
        await daemon.start()
        print(
            f"\nccwatch demo is running.\n"
            f"  status:    {daemon.metrics_url.removesuffix('metrics')}\n"
            f"  metrics:   {daemon.metrics_url}\n"
            f"  simulator: {sim_url}/-/sim/state\n"
            f"Values change every few seconds. Press Ctrl+C to stop.\n",
            file=sys.stderr,
            flush=True,
        )
        try:
            await daemon._stop.wait()
        finally:
            await daemon.stop()
    finally:
        await runner.cleanup()
