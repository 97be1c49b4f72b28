"""The daemon: builds jobs from the config, runs the scheduler and serves the exporter."""

from __future__ import annotations

import asyncio
import dataclasses
import gc
import os
import signal
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import structlog
from aiohttp import web

from ccwatch import __version__
from ccwatch.calendars import OpeningHours
from ccwatch.collector import (
    BUILD_INFO,
    CONFIG_LAST_RELOAD_SUCCESS,
    CONFIG_LAST_RELOAD_TIME,
    JOBS,
    POLLS_DELAYED,
    POLLS_IN_FLIGHT,
    SHARD_ORDINAL,
    THRESHOLD,
    TOTAL_SHARDS,
    JobRenderer,
    MetricStore,
    OpenRenderer,
    build_info_fragment,
    core_families,
    format_value,
    label_text,
    render_state_samples,
    static_labels_text,
    target_labels_text,
)
from ccwatch.config import ConfigBase, TargetConfig, split_listen_address
from ccwatch.errors import ConfigError
from ccwatch.http import HttpClient
from ccwatch.page import EVENTS
from ccwatch.runtime import loop_name
from ccwatch.scheduler import Job, Scheduler, TargetGroup
from ccwatch.sharding import Sharding
from ccwatch.sharding import resolve as sharding_resolve
from ccwatch.sources import SOURCES, all_subject_labels, load_config
from ccwatch.sources.base import SourceState
from ccwatch.status import Status
from ccwatch.web import (
    ConnectionLimits,
    GuardedSite,
    build_app,
    connection_cap,
    descriptor_limit,
)
from ccwatch.webauth import BasicAuth, RateLimit, WebSecurity
from ccwatch.webconfig import LoadedWebConfig, load_web_config

log = structlog.get_logger("ccwatch")
#: Not sharded: shard 0 of 1 owns every job.
UNSHARDED = Sharding()
#: A reload that has not read its configuration files within this many seconds fails.
RELOAD_DEADLINE = 30.0


def target_shape(
    config: ConfigBase, target: TargetConfig, sharding: Sharding = UNSHARDED
) -> tuple[object, ...]:
    """What a target's jobs are built from; an equal shape keeps the running jobs.

    Secrets from ``*_file`` keys are in the config itself (read at load); TLS files are
    read when the client is made, so their size and modification time are part of the
    shape: a rotated certificate followed by a reload takes effect.
    """
    return (
        _jobs_of(target),
        config.max_response_size_of(target),
        _tls_file_stamps(target),
        sharding,
    )


#: Target keys that no job is built from: a reload that changes only these keeps the
#: target's jobs as they are (and re-exports ``ccwatch_threshold`` and ``ccwatch_open``).
#: ``labels`` is not one of them: the jobs' label texts are made from it.
_NOT_JOBS = ("calendar", "entry_point_calendars", "thresholds")


def _jobs_of(target: TargetConfig) -> TargetConfig:
    """The target without its :data:`_NOT_JOBS` keys, for comparing shapes."""
    fields = type(target).model_fields
    blank = {key: None for key in _NOT_JOBS if key in fields}
    return target.model_copy(update=blank)


def _tls_file_stamps(target: TargetConfig) -> tuple[tuple[str, int, int], ...]:
    tls = target.tls_config
    if tls is None:
        return ()
    stamps = []
    for path in (tls.ca_file, tls.cert_file, tls.key_file):
        if path is not None:
            try:
                stat = os.stat(path)
            except OSError:
                stamps.append((path, -1, -1))
            else:
                stamps.append((path, stat.st_mtime_ns, stat.st_size))
    return tuple(stamps)


def target_timing(config: ConfigBase, target: TargetConfig) -> tuple[float, float, float]:
    """A target's interval, timeout and max_retry_after: changed in place on reload."""
    return (
        config.interval_of(target),
        config.timeout_of(target),
        config.max_retry_after_of(target),
    )


#: Target name -> (source name, its state): the per-target state the daemon owns.
States = dict[str, tuple[str, SourceState]]


def target_states(config: ConfigBase, running: Mapping[str, tuple[str, SourceState]]) -> States:
    """The state of every configured target whose source keeps one.

    A target that keeps its name and source keeps its state (reconfigured); the state of
    a target no longer configured is not carried over, and goes with it.
    """
    states: States = {}
    for target in config.targets:
        source = SOURCES[target.source]
        if source.state is None:
            continue
        held = running.get(target.name)
        if held is not None and held[0] == source.name:
            held[1].reconfigure(target)
            states[target.name] = held
        else:
            states[target.name] = (source.name, source.state(target))
    return states


def build_group(
    config: ConfigBase,
    target: TargetConfig,
    http: HttpClient,
    state: SourceState | None = None,
    sharding: Sharding = UNSHARDED,
) -> TargetGroup:
    """One target's poll jobs that this shard owns (ids are given by the scheduler)."""
    source = SOURCES[target.source]
    subject_labels = (source.subject_labels, all_subject_labels())
    client = http.for_target(
        target,
        max_response_size=config.max_response_size_of(target),
        headers=source.headers,
        proxy_from_environment=config.proxy_from_environment_of(target),
    )
    redactor = client.redactor  # the target's secrets, for its failures' details
    if source.client_factory is not None:
        client = source.client_factory(target, client, state)
    timing = target_timing(config, target)
    interval, timeout, max_retry_after = timing
    jobs = [
        Job(
            id=0,
            source=source.name,
            target=target.name,
            endpoint=spec.endpoint,
            subject=spec.subject,
            subject_labels=subject_labels,
            interval=interval,
            timeout=timeout,
            poll=spec.poll,
            max_retry_after=max_retry_after,
        )
        for spec in source.jobs(target, client, state)
        if sharding.owns(target.name, spec.subject)
    ]
    return TargetGroup(
        target.name,
        url=target.url,
        source=source.name,
        shape=target_shape(config, target, sharding),
        timing=timing,
        jobs=jobs,
        labels=static_labels_text(target.labels),
        redactor=redactor,
    )


def build_groups(
    config: ConfigBase,
    http: HttpClient,
    running: Mapping[str, TargetGroup] | None = None,
    states: States | None = None,
    sharding: Sharding = UNSHARDED,
) -> list[TargetGroup]:
    """Every configured target's group.

    A running group whose shape and timing are unchanged is returned as it is, so its
    jobs go on untouched; one whose timing alone changed is returned as a new group of
    the same jobs, which the scheduler retimes in place; any other is built anew.
    """
    groups: list[TargetGroup] = []
    if states is None:
        states = target_states(config, {})
    for target in config.targets:
        old = running.get(target.name) if running is not None else None
        if old is not None and old.shape == target_shape(config, target, sharding):
            timing = target_timing(config, target)
            if old.timing == timing:
                groups.append(old)
            else:
                groups.append(
                    TargetGroup(
                        old.name,
                        url=old.url,
                        source=old.source,
                        shape=old.shape,
                        timing=timing,
                        jobs=old.jobs,
                        labels=old.labels,
                        redactor=old.redactor,
                    )
                )
        else:
            held = states.get(target.name)
            group = build_group(config, target, http, held[1] if held else None, sharding)
            if group.jobs:  # a target none of whose subjects is this shard's is left out
                groups.append(group)
    return groups


def opening_hours(config: ConfigBase, clock: Callable[[], float] = time.time) -> OpeningHours:
    """The configured calendars, at run time."""
    return OpeningHours(
        {name: calendar.build(name) for name, calendar in config.calendars.items()}, clock
    )


def build_jobs(config: ConfigBase, http: HttpClient, sharding: Sharding = UNSHARDED) -> list[Job]:
    """Every poll job of every configured target."""
    return [job for group in build_groups(config, http, sharding=sharding) for job in group.jobs]


#: Allocations between two young-generation collections. Each poll allocates a few
#: hundred short-lived objects (task, coroutines, aiohttp request and response); with
#: Python's default (700) the collector runs thousands of times a minute and its full
#: passes dominate the CPU profile at scale.
GC_THRESHOLDS = (20_000, 20, 100)


def tune_gc() -> None:
    """Move everything alive now out of the collector's way and collect less often.

    Called once the jobs exist and again after their first polls, when the long-lived
    objects (jobs, labels, URLs, connections) have been created.
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)


def resolve_sharding(
    config: ConfigBase, flags: tuple[str | None, str | None] = (None, None)
) -> Sharding:
    """This process's shard: ``--shard``/``--total-shards``, else the environment, else
    the config's ``sharding:`` (ConfigError when out of range)."""
    return sharding_resolve(
        config.sharding.shard,
        config.sharding.total_shards,
        flag_shard=flags[0],
        flag_total=flags[1],
    )


def web_config_path(
    config: ConfigBase, config_path: str | Path | None, flag: str | None
) -> str | None:
    """The web config file to use: ``--web.config.file``, else ``web.config_file``
    (relative to the main config file's directory), else none."""
    if flag:
        return flag
    name = config.web.config_file
    if name is None:
        return None
    if config_path is not None and not os.path.isabs(name):
        return os.path.join(os.path.dirname(os.path.abspath(config_path)), name)
    return name


def load_web(
    config: ConfigBase, config_path: str | Path | None, flag: str | None
) -> LoadedWebConfig | None:
    """The web config the daemon starts with (ConfigError with key paths if invalid)."""
    path = web_config_path(config, config_path, flag)
    return load_web_config(path) if path is not None else None


def web_security(web_config: LoadedWebConfig | None, public_paths: list[str]) -> WebSecurity:
    """What the web layer enforces for ``web_config``."""
    if web_config is None:
        return WebSecurity()
    limit = web_config.rate_limit
    return WebSecurity(
        auth=BasicAuth(web_config.users) if web_config.users else None,
        public_paths=frozenset(public_paths),
        headers=dict(web_config.headers),
        allowed_sans=web_config.tls.allowed_sans if web_config.tls is not None else frozenset(),
        rate_limit=RateLimit(*limit) if limit is not None else None,
    )


def log_web_config(web_config: LoadedWebConfig | None, *, startup: bool = False) -> None:
    """One line on the web config in use (its path and the user names, nothing secret),
    and at startup one warning per setting Python's ssl honours only approximately."""
    if web_config is None:
        if startup:
            log.info("web_config", tls=False, basic_auth=False)
        return
    log.info(
        "web_config",
        file=web_config.path,
        tls=web_config.tls is not None,
        basic_auth_users=sorted(web_config.users),
        headers=sorted(web_config.headers),
    )
    if startup:
        for key, message in web_config.warnings:
            log.warning("web_config_approximated", key=key, detail=message)


class Daemon:
    """One running ccwatch: config, HTTP client, scheduler, metric store and web server."""

    def __init__(
        self,
        config: ConfigBase,
        *,
        config_path: str | Path | None = None,
        listen_address: str | None = None,
        web_config: LoadedWebConfig | None = None,
        web_config_flag: str | None = None,
        shard_flags: tuple[str | None, str | None] = (None, None),
        clock: Callable[[], float] = time.time,
        connection_limits: ConnectionLimits | None = None,
    ) -> None:
        self.config = config
        #: the web server's deadlines and connection cap (shorter ones in tests)
        self.connection_limits = connection_limits or ConnectionLimits()
        #: the soft RLIMIT_NOFILE the connection cap is derived from (read at start)
        self.descriptors: int | None = None
        #: the wall clock of the calendars (a fixed one in tests)
        self.clock = clock
        #: --shard and --total-shards as given: they win over the file on reload too
        self.shard_flags = shard_flags
        self.sharding = resolve_sharding(config, shard_flags)
        self.config_path = config_path
        self.listen_address = listen_address or config.web.listen_address
        #: the web config file in use (TLS, basic auth, headers), and the flag's path,
        #: which wins over ``web.config_file`` on reload too
        self.web = web_config
        self.web_config_flag = web_config_flag
        self.security = web_security(web_config, config.web.public_paths)
        self.http = HttpClient(max_connections=config.scheduler.max_concurrency)
        self.store = MetricStore()
        for family in core_families(all_subject_labels()):
            self.store.register(family)
        for source in SOURCES.values():
            for family in source.families:
                self.store.register(family)
        self.store.set(BUILD_INFO, 0, build_info_fragment())
        self._set_shard_metrics()
        self.render = JobRenderer(self.store)
        #: per-target state of the sources that keep one (probe verdicts, token caches)
        self.states = target_states(config, {})
        self._state_families = [
            family.name
            for source in SOURCES.values()
            if source.state is not None
            for family in source.families
        ]
        self.scheduler = Scheduler(
            (),
            self.store,
            max_concurrency=config.scheduler.max_concurrency,
            groups=build_groups(config, self.http, states=self.states, sharding=self.sharding),
            render=self.render,
        )
        self.history = self.scheduler.history  # kept across reloads
        self._set_job_counts()
        self.hours = opening_hours(config, clock)
        self.open = OpenRenderer(self.store)
        self._set_target_series()
        self._runner: web.AppRunner | None = None
        self.site: GuardedSite | None = None
        self._stop = asyncio.Event()
        self._reload_lock = asyncio.Lock()
        #: how long a reload may take to read its files before it fails
        self.reload_deadline = RELOAD_DEADLINE
        self._last_reload_ok = True
        self._last_reload_time = time.time()
        self._last_reload_error: str | None = None
        self._started = time.time()
        self.bound: list[tuple[str, int]] = []

    # ----------------------------------------------------------------- exporter protocol

    @property
    def ready(self) -> bool:
        return self.scheduler.ready

    def readiness(self) -> str:
        total = self.scheduler.job_count
        return f"ccwatch is not ready: {self.scheduler.unattempted} of {total} jobs not polled yet"

    def _set_shard_metrics(self) -> None:
        shard, total = self.sharding.shard, self.sharding.total
        self.store.set(SHARD_ORDINAL, 0, f"{SHARD_ORDINAL} {shard}\n".encode())
        self.store.set(TOTAL_SHARDS, 0, f"{TOTAL_SHARDS} {total}\n".encode())

    def _set_job_counts(self) -> None:
        """``ccwatch_jobs{source}``: set when a scheduler is installed, not per scrape."""
        counts: dict[str, int] = dict.fromkeys(SOURCES, 0)
        for group in self.scheduler.groups.values():
            for job in group.jobs:
                counts[job.source] += 1
        self.store.set(
            JOBS,
            0,
            "".join(
                f"{JOBS}{{{label_text([('source', name)])}}} {n}\n" for name, n in counts.items()
            ).encode(),
        )

    def _set_target_series(self) -> None:
        """What follows from the config and the jobs alone, set at start and on reload:
        ``ccwatch_threshold`` and the subjects of ``ccwatch_open``, both for the targets
        this shard polls."""
        groups = self.scheduler.groups
        thresholds: list[str] = []
        subjects: dict[str, str | None] = {}
        for target in self.config.targets:
            group = groups.get(target.name)
            if group is None:
                continue
            labels = target_labels_text(target.name, group.labels)
            thresholds.extend(
                f'{THRESHOLD}{{{labels},name="{name}"}} {format_value(value)}\n'
                for name, value in self.config.thresholds_of(target)
            )
            for job in group.jobs:
                if job.vendor_labels not in subjects:
                    subjects[job.vendor_labels] = target.calendar_of(job.subject)
        if thresholds:
            self.store.set(THRESHOLD, 0, "".join(thresholds).encode())
        else:
            self.store.delete(THRESHOLD, 0)
        self.open.configure(subjects.items())

    def metric_chunks(self, *, openmetrics: bool) -> Iterator[bytes]:
        store = self.store
        # The freshness rule is enforced here too: after a stalled loop, a scrape may come
        # before any timer has had a chance to run.
        self.scheduler.expire_stale()
        store.set(POLLS_IN_FLIGHT, 0, f"{POLLS_IN_FLIGHT} {self.scheduler.in_flight}\n".encode())
        store.set(POLLS_DELAYED, 0, f"{POLLS_DELAYED} {self.scheduler.delayed_total}\n".encode())
        store.set(
            CONFIG_LAST_RELOAD_SUCCESS,
            0,
            f"{CONFIG_LAST_RELOAD_SUCCESS} {int(self._last_reload_ok)}\n".encode(),
        )
        store.set(
            CONFIG_LAST_RELOAD_TIME,
            0,
            f"{CONFIG_LAST_RELOAD_TIME} {format_value(self._last_reload_time)}\n".encode(),
        )
        self.open.refresh(self.hours.states())
        groups = self.scheduler.groups
        render_state_samples(
            store,
            self.render.samples,
            # only the targets this shard polls: another shard exports the others' state
            (
                (target_labels_text(name, groups[name].labels), state.samples())
                for name, (_, state) in sorted(self.states.items())
                if name in groups
            ),
            self._state_families,
        )
        return store.chunks(openmetrics=openmetrics)

    def recent_events(self) -> list[dict[str, Any]]:
        return list(self.history)

    def status(self) -> Status:
        return Status(
            version=__version__,
            config_file=str(self.config_path) if self.config_path is not None else "",
            started=self._started,
            reload_ok=self._last_reload_ok,
            reload_time=self._last_reload_time,
            reload_error=self._last_reload_error,
            groups=list(self.scheduler.groups.values()),
            events=list(self.history)[-EVENTS:],
            wall=time.time(),
            loop=self.scheduler.loop_time(),
        )

    async def reload(self) -> str | None:
        if self.config_path is None:
            return "no configuration file to reload (started without --config.file)"
        async with self._reload_lock:
            try:
                # reading and validating a big file takes a while: in a worker thread, so
                # that the event loop goes on polling (it gets the GIL every few ms); with
                # a deadline, so that nothing read can hold the reload lock for ever
                config, web_config = await self._read_config(self.config_path)
                sharding = resolve_sharding(config, self.shard_flags)
                if sharding.total != self.sharding.total:
                    raise ConfigError(
                        [
                            f"sharding.total_shards: changing the total shards from "
                            f"{self.sharding.total} to {sharding.total} takes a restart"
                        ]
                    )
                self._check_web_change(web_config)
            except ConfigError as exc:
                self._last_reload_ok = False
                self._last_reload_error = str(exc)
                log.error("config_reload_failed", errors=exc.errors)
                return str(exc)
            self.apply_web(web_config, config.web.public_paths)
            if sharding != self.sharding:
                log.info("shard_changed", previous=str(self.sharding), shard=str(sharding))
                self.sharding = sharding
                self._set_shard_metrics()
            await self.apply(config)
            return None

    async def _read_config(
        self, config_path: str | Path
    ) -> tuple[ConfigBase, LoadedWebConfig | None]:
        """The configuration and the web configuration it names, read in a worker thread
        within :data:`RELOAD_DEADLINE` seconds; :class:`ConfigError` otherwise."""

        def read() -> tuple[ConfigBase, LoadedWebConfig | None]:
            config = load_config(config_path)
            path = web_config_path(config, config_path, self.web_config_flag)
            return config, (load_web_config(path) if path is not None else None)

        try:
            return await asyncio.wait_for(asyncio.to_thread(read), self.reload_deadline)
        except TimeoutError:
            raise ConfigError(
                [
                    f"{config_path}: reading the configuration took longer than "
                    f"{self.reload_deadline:g}s; the previous configuration stays"
                ]
            ) from None

    def _check_web_change(self, new: LoadedWebConfig | None) -> None:
        """A reload cannot switch between HTTP and HTTPS: the listening socket stays."""
        had_tls = self.web is not None and self.web.tls is not None
        has_tls = new is not None and new.tls is not None
        if had_tls != has_tls:
            raise ConfigError(
                [
                    "web config: switching between HTTP and HTTPS takes a restart "
                    f"(running with{'' if had_tls else 'out'} tls_server_config)"
                ]
            )

    def apply_web(self, web_config: LoadedWebConfig | None, public_paths: list[str]) -> None:
        """Use a newly read web config: basic auth users, headers, public paths, allowed
        client names and rate limit at once; TLS settings other than the certificate
        files (which are re-read when they change) take effect on restart."""
        old = self.web
        if (
            old is not None
            and web_config is not None
            and old.config.tls_server_config != web_config.config.tls_server_config
        ):
            log.warning(
                "tls_settings_unchanged",
                detail="tls_server_config changes take effect on restart; the certificate "
                "and key files are re-read whenever their content changes",
            )
        if web_config is not None and old is not None and old.tls is not None:
            web_config = dataclasses.replace(web_config, tls=old.tls)
        self.web = web_config
        self.security.replace_with(web_security(web_config, public_paths))
        log_web_config(web_config)

    async def apply(self, config: ConfigBase) -> None:
        """Swap in a new configuration without stopping the scheduler.

        Unchanged targets go on as they are, polls in flight included; changed jobs keep
        their state and phase; removed jobs are cancelled and their series dropped.
        """
        started = time.perf_counter()
        hours = opening_hours(config, self.clock)  # before anything changes
        states = target_states(config, self.states)
        groups = build_groups(config, self.http, self.scheduler.groups, states, self.sharding)
        counts = self.scheduler.update(groups, max_concurrency=config.scheduler.max_concurrency)
        self.states = states  # removed targets' states go with them
        # only a change in the file is news: a --web.listen-address flag overrides it
        address_changed = config.web.listen_address != self.config.web.listen_address
        self.config = config
        self._set_job_counts()
        self.hours = hours
        self._set_target_series()
        self._last_reload_ok = True
        self._last_reload_error = None
        self._last_reload_time = time.time()
        if address_changed:
            log.warning(
                "listen_address_unchanged",
                detail="web.listen_address changes take effect on restart",
            )
        log.info(
            "config_reloaded",
            targets=len(config.targets),
            jobs=self.scheduler.job_count,
            **{f"jobs_{name}": n for name, n in counts.items()},
            seconds=round(time.perf_counter() - started, 3),
        )

    # ----------------------------------------------------------------- life cycle

    async def start(self) -> None:
        log.info(
            "starting",
            version=__version__,
            targets=len(self.config.targets),
            jobs=self.scheduler.job_count,
            shard=self.sharding.shard,
            total_shards=self.sharding.total,
            event_loop=loop_name(),
        )
        for line in self.config.warnings():
            log.warning("config_warning", detail=line)
        self.scheduler.start()
        log_web_config(self.web, startup=True)
        # always guarded: a reload may add basic auth users to a plain HTTP endpoint
        app = build_app(self, self.security)
        limits = self.connection_limits
        self._runner = web.AppRunner(
            app,
            access_log=None,
            handle_signals=False,
            keepalive_timeout=limits.keepalive_timeout,
        )
        await self._runner.setup()
        host, port = split_listen_address(self.listen_address)
        tls = self.web.tls if self.web is not None else None
        self.descriptors = descriptor_limit()
        self.site = site = GuardedSite(
            self._runner,
            host,
            port,
            limits=limits,
            cap=self.max_connections,
            reuse_address=True,
            ssl_context=tls.context if tls is not None else None,
        )
        await site.start()
        self.bound = [
            (str(addr[0]), int(addr[1]))
            for addr in self._runner.addresses
            if isinstance(addr, tuple)
        ]
        log.info(
            "listening",
            address=self.listen_address,
            metrics_url=self.metrics_url,
            max_connections=self.max_connections(),
            open_files_limit=self.descriptors,
        )

    def max_connections(self) -> int:
        """The cap on open client connections: the configured one, else what the
        descriptor limit leaves after polling at ``scheduler.max_concurrency``."""
        if self.connection_limits.max_connections is not None:
            return self.connection_limits.max_connections
        return connection_cap(self.descriptors, self.config.scheduler.max_concurrency)

    @property
    def metrics_url(self) -> str:
        if not self.bound:
            return ""
        host, port = self.bound[0]
        if host in ("0.0.0.0", "::"):
            host = "127.0.0.1"
        scheme = "https" if self.web is not None and self.web.tls is not None else "http"
        return f"{scheme}://{host}:{port}/metrics"

    async def stop(self) -> None:
        grace = max((job.timeout for job in self.scheduler.jobs), default=0.0)
        log.info("stopping", in_flight=self.scheduler.in_flight, grace_seconds=grace)
        await self.scheduler.stop(grace=grace)
        if self._runner is not None:
            await self._runner.cleanup()
        await self.http.close()
        if self.security.auth is not None:
            self.security.auth.close()
        log.info("stopped", polls=self.scheduler.polls_total)

    async def _tune_gc_when_ready(self) -> None:
        while not self.scheduler.ready:  # noqa: ASYNC110 - a cheap once-a-second check
            await asyncio.sleep(1.0)
        tune_gc()

    def request_stop(self) -> None:
        self._stop.set()

    async def run(self) -> None:
        """Start, serve until SIGTERM/SIGINT (SIGHUP reloads), then stop gracefully."""
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGTERM, self.request_stop)
        loop.add_signal_handler(signal.SIGINT, self.request_stop)
        loop.add_signal_handler(signal.SIGHUP, lambda: loop.create_task(self.reload()))
        await self.start()
        tune_gc()
        settle = asyncio.create_task(self._tune_gc_when_ready())
        try:
            await self._stop.wait()
        finally:
            settle.cancel()
            for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
                loop.remove_signal_handler(sig)
            await self.stop()
