"""The ``ccwatch`` command line, following Prometheus exporter conventions."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import sys
from collections.abc import Sequence

from ccwatch import __version__, runtime
from ccwatch.errors import ConfigError

# Everything heavier (pydantic, aiohttp, the sources) is imported by the command that
# needs it: ``ccwatch healthcheck`` runs every 30 s in a container and must stay cheap.


def _subject(value: str) -> tuple[str, str]:
    label, sep, wanted = value.partition("=")
    if not sep or not label.strip() or not wanted:
        raise argparse.ArgumentTypeError(f"expected LABEL=VALUE, e.g. entry_point=1000: {value!r}")
    return label.strip(), wanted


def _byte_count(value: str) -> int:
    if not value.isascii() or not value.isdigit():
        raise argparse.ArgumentTypeError(f"expected a number of bytes: {value!r}")
    return int(value)


def _bcrypt_cost(value: str) -> int:
    if not value.isascii() or not value.isdigit() or not 4 <= int(value) <= 31:
        raise argparse.ArgumentTypeError(f"expected a cost from 4 to 31: {value!r}")
    return int(value)


def _years(value: str) -> tuple[int, ...]:
    from ccwatch.timeintervals import parse_years

    try:
        return parse_years(value)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _interval_name(value: str) -> str:
    if not value.strip():
        raise argparse.ArgumentTypeError("expected a time interval name, such as holidays")
    return value


def _parser() -> argparse.ArgumentParser:
    from ccwatch.config import DEFAULT_CONFIG_PATH
    from ccwatch.probe import DEFAULT_BODY_LIMIT
    from ccwatch.sources import all_subject_labels

    parser = argparse.ArgumentParser(
        prog="ccwatch",
        description="Watch contact-center availability and export it to Prometheus.",
    )
    parser.add_argument("--version", action="version", version=f"ccwatch {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def log_flags(p: argparse.ArgumentParser) -> None:
        p.add_argument(
            "--log.level",
            dest="log_level",
            choices=["debug", "info", "warning", "error"],
            help="log level (default: the config's log.level, else info)",
        )
        p.add_argument(
            "--log.format",
            dest="log_format",
            choices=["auto", "json", "console"],
            help="auto: JSON lines unless stderr is a terminal",
        )

    def shard_flags(p: argparse.ArgumentParser) -> None:
        p.add_argument(
            "--shard",
            metavar="S",
            help="this process's shard: an ordinal from 0, or a StatefulSet pod name "
            "ending in -<ordinal> (overrides CCWATCH_SHARDING__SHARD and sharding.shard)",
        )
        p.add_argument(
            "--total-shards",
            dest="total_shards",
            metavar="N",
            help="how many shards share the configuration (overrides "
            "CCWATCH_SHARDING__TOTAL_SHARDS and sharding.total_shards; default 1)",
        )

    run = sub.add_parser("run", help="run the exporter")
    run.add_argument(
        "--config.file",
        dest="config_file",
        default=DEFAULT_CONFIG_PATH,
        help=f"configuration file (default {DEFAULT_CONFIG_PATH})",
    )
    run.add_argument(
        "--web.listen-address",
        dest="listen_address",
        help="HOST:PORT to serve /metrics on (overrides web.listen_address)",
    )
    run.add_argument(
        "--web.config.file",
        dest="web_config_file",
        metavar="FILE",
        help="web configuration file: TLS, basic auth, headers, in the Prometheus "
        "exporter-toolkit format (overrides web.config_file)",
    )
    run.add_argument(
        "--event-loop",
        dest="event_loop",
        choices=runtime.CHOICES,
        default="auto",
        help="the event loop: uvloop where it is installed (auto, the default), or "
        "the standard asyncio loop",
    )
    shard_flags(run)
    log_flags(run)

    check = sub.add_parser("check-config", help="validate a configuration file and exit")
    check.add_argument("file")
    shard_flags(check)
    check.add_argument(
        "--web.config.file",
        dest="web_config_file",
        metavar="FILE",
        help="also validate this web configuration file (TLS, basic auth, headers; "
        "the exporter-toolkit format), loading its certificate and key",
    )

    hash_password = sub.add_parser(
        "hash-password",
        help="print the bcrypt hash of a password, for the web config's basic_auth_users",
        description=(
            "Print the bcrypt hash of a password for basic_auth_users in the web "
            "configuration file. On a terminal the password is asked for twice; otherwise "
            "one line is read from standard input (without its line ending)."
        ),
    )
    hash_password.add_argument(
        "--cost",
        type=_bcrypt_cost,
        default=10,
        help="bcrypt cost, 4 to 31: each step doubles the time a check takes (default %(default)s)",
    )

    # listed here; parsed by ccwatch.healthcheck (see main)
    sub.add_parser(
        "healthcheck",
        add_help=False,
        help="exit 0 if the local ccwatch answers on /-/healthy (for a container "
        "HEALTHCHECK); see 'ccwatch healthcheck --help'",
    )

    sim = sub.add_parser("simulate", help="run the vendor API simulator")
    sim.add_argument("--listen", default="127.0.0.1:9866", help="HOST:PORT (default %(default)s)")
    sim.add_argument("--tick", type=float, default=5.0, help="seconds between state changes")
    log_flags(sim)

    probe = sub.add_parser(
        "probe",
        help="poll the matching jobs once, now, and show every HTTP exchange",
        description=(
            "Poll the matching jobs of the configuration once, now, with their configured "
            "timeouts, TLS, proxy and auth, and show for each job every HTTP exchange "
            "(request, status, duration, headers, the start of the body), the reading or "
            "the failure, and the metric lines it would produce. Starts no server and no "
            "schedule. Credentials and configured secrets are redacted. A gms_probe job "
            "creates a real service, as the daemon's polls do."
        ),
        epilog=(
            "Filters: --target and --endpoint may be repeated (either value matches). "
            "--subject may be repeated: the same LABEL repeated matches either value, "
            "different LABELs must all match (--subject entry_point=1000 --subject "
            "entry_point=1001: either entry point). "
            "Exit status: 0 every job succeeded, 1 a job failed, 2 a usage or config error "
            "or no job matches."
        ),
    )
    probe.add_argument(
        "--config.file",
        dest="config_file",
        default=DEFAULT_CONFIG_PATH,
        metavar="FILE",
        help=f"configuration file (default {DEFAULT_CONFIG_PATH})",
    )
    probe.add_argument(
        "--target",
        dest="targets",
        action="append",
        default=[],
        metavar="NAME",
        help="only this target's jobs; repeatable",
    )
    probe.add_argument(
        "--endpoint",
        dest="endpoints",
        action="append",
        default=[],
        metavar="E",
        help="only jobs of this endpoint (capacity, settings, probe, ...); repeatable",
    )
    probe.add_argument(
        "--subject",
        dest="subjects",
        action="append",
        default=[],
        type=_subject,
        metavar="LABEL=VALUE",
        help=(
            "only jobs whose subject label LABEL is VALUE "
            f"(labels: {', '.join(all_subject_labels())}); repeatable: the same LABEL "
            "repeated matches either value, different LABELs must all match"
        ),
    )
    probe.add_argument(
        "--format",
        choices=["text", "json"],
        default="text",
        help="text (default), or json: one JSON object per job and line",
    )
    probe.add_argument(
        "--body-limit",
        dest="body_limit",
        type=_byte_count,
        default=DEFAULT_BODY_LIMIT,
        metavar="BYTES",
        help="show at most this many bytes of each body (default %(default)s)",
    )

    intervals = sub.add_parser(
        "time-intervals",
        help="print a calendar's holidays and closed dates as an Alertmanager time interval",
        description=(
            "Print an Alertmanager time_intervals: section (YAML) with one time interval: "
            "the days on which the calendar is closed all day in the given years (its "
            "public holidays, with their categories, and its closed: dates), each a "
            "years/months/days_of_month range in the calendar's time zone (location). Use "
            "it as mute_time_intervals on the route of the people who work to that "
            "calendar, so that Alertmanager mutes their notifications on the days ccwatch's "
            "calendar is closed."
        ),
        epilog=(
            "Exit status: 0 printed, 1 an invalid configuration or no closed day in those "
            "years, 2 a usage error (such as an unknown --calendar)."
        ),
    )
    intervals.add_argument(
        "--config.file",
        dest="config_file",
        default=DEFAULT_CONFIG_PATH,
        metavar="FILE",
        help=f"configuration file (default {DEFAULT_CONFIG_PATH})",
    )
    intervals.add_argument(
        "--calendar",
        required=True,
        metavar="NAME",
        help="the calendar of the configuration's calendars: section",
    )
    intervals.add_argument(
        "--years",
        type=_years,
        metavar="YEARS",
        help="years and ranges, such as 2027,2028 or 2027-2029 (default: this year and next)",
    )
    intervals.add_argument(
        "--name",
        type=_interval_name,
        metavar="NAME",
        help="the time interval's name (default: <calendar>-holidays)",
    )

    demo = sub.add_parser("demo", help="run the simulator and the exporter together")
    demo.add_argument(
        "--web.listen-address",
        dest="listen_address",
        default="127.0.0.1:9865",
        help="HOST:PORT for the exporter (default %(default)s)",
    )
    log_flags(demo)
    return parser


def _check_config(
    path: str,
    web_config_file: str | None = None,
    shard_flags: tuple[str | None, str | None] = (None, None),
) -> int:
    """The main config, and the web config (the flag's, else the main config's
    ``web.config_file``); with sharding, what this shard would own."""
    from ccwatch.daemon import build_jobs, resolve_sharding, web_config_path
    from ccwatch.http import HttpClient
    from ccwatch.sources import load_config

    status = 0
    try:
        config = load_config(path)
    except ConfigError as exc:
        exc.report(path, sys.stderr)
        status = 1
    else:
        try:
            sharding = resolve_sharding(config, shard_flags)
        except ConfigError as exc:
            print(f"{path}: invalid sharding", file=sys.stderr)
            for line in exc.errors:
                print(f"  {line}", file=sys.stderr)
            return 1
        if sharding.total > 1:
            jobs = build_jobs(config, HttpClient(), sharding)
            owned = len({job.target for job in jobs})
            print(
                f"{path}: OK; {sharding}: {owned} of {len(config.targets)} targets, "
                f"{len(jobs)} of {len(build_jobs(config, HttpClient()))} poll jobs"
            )
        else:
            jobs = build_jobs(config, HttpClient())
            print(f"{path}: OK ({len(config.targets)} targets, {len(jobs)} poll jobs)")
        for line in config.warnings():
            print(f"  warning: {line}")
        web_config_file = web_config_path(config, path, web_config_file)
    if web_config_file is not None:
        status = max(status, _check_web_config(web_config_file))
    return status


def _check_web_config(path: str) -> int:
    from ccwatch.webconfig import load_web_config

    try:
        web = load_web_config(path)
    except ConfigError as exc:
        print(f"{path}: invalid web configuration", file=sys.stderr)
        for line in exc.errors:
            print(f"  {line}", file=sys.stderr)
        return 1
    print(f"{path}: OK ({web.summary()})")
    for key, message in web.warnings:
        print(f"  warning: {key}: {message}")
    return 0


def _run(args: argparse.Namespace) -> int:
    import structlog

    from ccwatch import logs
    from ccwatch.daemon import Daemon, load_web, resolve_sharding
    from ccwatch.sources import load_config

    logs.configure(args.log_level or "info", args.log_format or "auto")
    log = structlog.get_logger("ccwatch")
    try:
        config = load_config(args.config_file)
        if args.listen_address:
            from ccwatch.config import check_listen_address

            check_listen_address(args.listen_address)
    except ConfigError as exc:
        log.error("config_invalid", file=args.config_file, errors=exc.errors)
        return 1
    except ValueError as exc:
        log.error("flag_invalid", flag="--web.listen-address", error=str(exc))
        return 1
    try:
        web = load_web(config, args.config_file, args.web_config_file)
    except ConfigError as exc:
        log.error("web_config_invalid", errors=exc.errors)
        return 1
    shard_flags = (args.shard, args.total_shards)
    try:
        resolve_sharding(config, shard_flags)
    except ConfigError as exc:
        log.error("sharding_invalid", errors=exc.errors)
        return 1
    if args.log_level is None or args.log_format is None:
        logs.configure(args.log_level or config.log.level, args.log_format or config.log.format)
    daemon = Daemon(
        config,
        config_path=args.config_file,
        listen_address=args.listen_address,
        web_config=web,
        web_config_flag=args.web_config_file,
        shard_flags=shard_flags,
    )
    try:
        runtime.run(daemon.run(), args.event_loop)
    except ImportError:
        log.error("flag_invalid", flag="--event-loop", error="uvloop is not installed")
        return 1
    except OSError as exc:
        log.error("listen_failed", address=daemon.listen_address, error=str(exc))
        return 1
    return 0


def _simulate(args: argparse.Namespace) -> int:
    from ccwatch import logs
    from ccwatch.config import split_listen_address
    from ccwatch.simulator import run_simulator

    logs.configure(args.log_level or "info", args.log_format or "auto")
    host, port = split_listen_address(args.listen)

    async def serve() -> None:
        task = asyncio.create_task(run_simulator(host, port, tick=args.tick))
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, task.cancel)
        with contextlib.suppress(asyncio.CancelledError):
            await task

    asyncio.run(serve())
    return 0


def _probe(args: argparse.Namespace) -> int:
    from ccwatch import logs
    from ccwatch.probe import Filters, run_probe

    logs.configure("warning", "auto")
    filters = Filters(
        targets=tuple(args.targets),
        endpoints=tuple(args.endpoints),
        subjects=tuple(args.subjects),
    )
    try:
        return run_probe(
            args.config_file,
            filters,
            json_lines=args.format == "json",
            body_limit=args.body_limit,
            out=sys.stdout,
            err=sys.stderr,
        )
    except KeyboardInterrupt:
        return 130


def _demo(args: argparse.Namespace) -> int:
    from ccwatch import logs
    from ccwatch.demo import run_demo

    logs.configure(args.log_level or "info", args.log_format or "auto")
    runtime.run(run_demo(args.listen_address))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    arguments = list(sys.argv[1:] if argv is None else argv)
    if arguments[:1] == ["healthcheck"]:
        from ccwatch.healthcheck import main as healthcheck

        return healthcheck(arguments[1:])
    args = _parser().parse_args(arguments)
    if args.command == "check-config":
        return _check_config(args.file, args.web_config_file, (args.shard, args.total_shards))
    if args.command == "hash-password":
        from ccwatch.webconfig import hash_password_command

        return hash_password_command(args.cost)
    if args.command == "run":
        return _run(args)
    if args.command == "simulate":
        return _simulate(args)
    if args.command == "probe":
        return _probe(args)
    if args.command == "time-intervals":
        from ccwatch.timeintervals import run_time_intervals

        return run_time_intervals(
            args.config_file, args.calendar, args.years, args.name, out=sys.stdout, err=sys.stderr
        )
    return _demo(args)


if __name__ == "__main__":
    sys.exit(main())
