"""The status page at ``/``: server-rendered HTML that works without JavaScript.

- ``/``: the overview: version, config file, last reload; jobs up, down and not yet
  polled; the failing jobs first (at most :data:`PAGE_ROWS`); one row per target; the
  most recent events.
- ``/?target=NAME[&page=N][&health=H]``: every job of one target, :data:`PAGE_ROWS` a page,
  with its current reading in words.
- ``/?health=H[&page=N]``: the jobs of one health across all targets, paged (where the
  overview's "all failing jobs" link goes).

Every value that comes from a config or a vendor goes through :func:`html.escape`. The
page loads nothing: its style and its small script (auto-refresh, row filter) are
inline and allowed by their hashes in :data:`CONTENT_SECURITY_POLICY`, which permits
nothing else.

Rendering is a generator (``Generator[None, None, str]``) that yields after every
:data:`~ccwatch.status.STEP_JOBS` jobs walked; the web layer runs the event loop in
between once the steps add up to a few milliseconds (see :func:`ccwatch.web.stepped`).
"""

from __future__ import annotations

import base64
import hashlib
import html
import math
from collections.abc import Generator, Mapping
from typing import Any, Final
from urllib.parse import quote

from ccwatch.scheduler import Job, TargetGroup
from ccwatch.status import (
    HEALTH_DOWN,
    STEP_JOBS,
    Counts,
    Status,
    describe,
    error_text,
    health,
    held_until,
    interval,
    next_poll,
    reason,
    redact_url,
    rfc3339,
    subject_text,
)

#: Jobs on one page (the overview's failing jobs, a target's page).
PAGE_ROWS: Final = 500
#: Table rows rendered between two steps of a page's generator.
ROW_STEP: Final = 50
#: Events on the overview, newest first.
EVENTS: Final = 20
#: Seconds between two reloads of the page when auto-refresh is on.
REFRESH_SECONDS: Final = 10

_STYLE: Final = """
body{font:14px/1.4 system-ui,sans-serif;margin:0 1.5em 2em;color:#1d2330;background:#fff}
header{display:flex;flex-wrap:wrap;gap:.4em 1.2em;align-items:baseline;padding:.8em 0;
border-bottom:1px solid #d8dce4}
header h1{font-size:1.3em;margin:0}header h1 a{color:inherit;text-decoration:none}
h2{font-size:1.1em;margin:1.4em 0 .5em}
a{color:#1a5fb4}code{font-size:.95em}
.muted{color:#5d6575}.ok{color:#1e7b34;font-weight:600}.bad{color:#b3261e;font-weight:600}
.tiles{display:flex;gap:1em;margin-top:1em}
.tile{border:1px solid #d8dce4;border-radius:6px;padding:.5em 1em;min-width:7em}
.tile b{display:block;font-size:1.6em}
.tile.up b{color:#1e7b34}.tile.down b{color:#b3261e}.tile.unknown b{color:#8a6d00}
table{border-collapse:collapse;width:100%;margin:.3em 0}
th,td{text-align:left;padding:.25em .6em;border-bottom:1px solid #eceef2;vertical-align:top}
th{background:#f4f5f8;font-weight:600;white-space:nowrap}
td.num{text-align:right;font-variant-numeric:tabular-nums}
td.h-up{color:#1e7b34;font-weight:600}td.h-down{color:#b3261e;font-weight:600}
td.h-unknown{color:#8a6d00;font-weight:600}
td.detail{max-width:40em;overflow-wrap:anywhere}
.pager{margin:.6em 0}.pager a,.pager span{margin-right:1em}
#filter{padding:.3em .5em;width:20em}
.err{background:#fdecea;border:1px solid #f4c7c3;padding:.5em 1em;border-radius:6px}
.err code{white-space:pre-wrap}
"""

_SCRIPT: Final = """(function(){
var box=document.getElementById("refresh"),timer=null;
function arm(){if(timer){clearTimeout(timer);timer=null;}
if(box.checked){timer=setTimeout(function(){location.reload();},REFRESH_MS);}}
if(box){var label=document.getElementById("refresh-label");if(label){label.hidden=false;}
try{box.checked=sessionStorage.getItem("ccwatch-refresh")==="1";}catch(e){}
box.addEventListener("change",function(){
try{sessionStorage.setItem("ccwatch-refresh",box.checked?"1":"0");}catch(e){}arm();});arm();}
var filter=document.getElementById("filter");
if(filter){filter.hidden=false;filter.addEventListener("input",function(){
var q=filter.value.toLowerCase();
document.querySelectorAll("table.filterable tbody tr").forEach(function(row){
row.hidden=q!==""&&row.textContent.toLowerCase().indexOf(q)<0;});});}
})();""".replace("REFRESH_MS", str(REFRESH_SECONDS * 1000))


def _sha256(text: str) -> str:
    return "sha256-" + base64.b64encode(hashlib.sha256(text.encode()).digest()).decode()


#: Nothing but the page itself, its inline style and its inline script.
CONTENT_SECURITY_POLICY: Final = (
    "default-src 'none'; "
    f"style-src '{_sha256(_STYLE)}'; "
    f"script-src '{_sha256(_SCRIPT)}'; "
    "img-src 'self'; "
    "base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)

e = html.escape


def _link(**query: str | int) -> str:
    """A relative link to the page with ``query``, escaped for an attribute."""
    parts = [f"{name}={quote(str(value), safe='')}" for name, value in query.items()]
    return e("./?" + "&".join(parts) if parts else "./")


def _time(when: float | None, status: Status) -> str:
    """``HH:MM:SS`` (UTC) with how long ago or how soon; the full time on hover."""
    if when is None:
        return '<span class="muted">never</span>'
    stamp = rfc3339(when) or ""
    delta = when - status.wall
    if abs(delta) < 0.5:
        relative = "now"
    elif delta < 0:
        relative = f"{_duration(-delta)} ago"
    else:
        relative = f"in {_duration(delta)}"
    return f'<time datetime="{stamp}" title="{stamp}">{stamp[11:19]}</time> ({relative})'


def _duration(seconds: float) -> str:
    if seconds < 1:
        return f"{seconds * 1000:.0f}ms" if seconds < 0.1 else f"{seconds:.2f}s"
    if seconds < 60:
        return f"{seconds:.0f}s"
    minutes, secs = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes}m{secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    if hours < 48:
        return f"{hours}h{minutes:02d}m"
    return f"{hours // 24}d{hours % 24:02d}h"


def _page(status: Status, title: str, body: list[str]) -> str:
    reload = (
        f'<span class="ok">ok</span> {_time(status.reload_time, status)}'
        if status.reload_ok
        else f'<span class="bad">failed</span> {_time(status.reload_time, status)}'
    )
    error = ""
    if not status.reload_ok and status.reload_error:
        error = (
            '<p class="err">The last reload failed; the previous configuration is still '
            f"in use:<br><code>{e(status.reload_error)}</code></p>"
        )
    head = (
        '<!doctype html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width,initial-scale=1">'
        f"<title>{e(title)}</title><style>{_STYLE}</style></head><body>"
        f'<header><h1><a href="./">ccwatch</a></h1>'
        f'<span class="muted">version {e(status.version)}, '
        f"up {_duration(status.wall - status.started)}</span>"
        f"<span>config <code>{e(status.config_file or '(built in)')}</code></span>"
        f"<span>last reload {reload}</span>"
        f'<span class="muted">as of {_time(status.wall, status)}</span>'
        '<span><a href="metrics">metrics</a> · <a href="logs">events</a> · '
        '<a href="api/v1/targets">targets API</a></span>'
        '<label id="refresh-label" hidden><input type="checkbox" id="refresh"> '
        f"refresh every {REFRESH_SECONDS}s</label></header>{error}"
    )
    return head + "".join(body) + f"<script>{_SCRIPT}</script></body></html>\n"


def _tiles(counts: Counts) -> str:
    return (
        '<div class="tiles">'
        f'<div class="tile up" id="jobs-up"><b>{counts.up}</b>jobs up</div>'
        f'<div class="tile down" id="jobs-down"><b>{counts.down}</b>jobs down</div>'
        f'<div class="tile unknown" id="jobs-unknown"><b>{counts.unknown}</b>not yet polled</div>'
        f'<div class="tile"><b>{counts.total}</b>jobs in all</div></div>'
    )


_FILTER: Final = '<input type="search" id="filter" placeholder="filter the rows below" hidden>'


# --------------------------------------------------------------------------- rows


def _failing_row(job: Job, status: Status) -> str:
    return (
        f'<tr class="job-down"><td><a href="{_link(target=job.target)}">{e(job.target)}</a></td>'
        f"<td>{e(job.endpoint)}</td><td>{e(subject_text(job))}</td>"
        f'<td class="reason">{e(reason(job))}</td>'
        f'<td class="detail">{e(error_text(job, status))}</td>'
        f"<td>{_time(job.failing_since or job.stale_since, status)}</td>"
        f'<td class="num">{job.failures}</td>'
        f"<td>{_next(job, status)}</td></tr>"
    )


def _next(job: Job, status: Status) -> str:
    if job.task is not None:
        return "polling now"
    return _time(next_poll(job, status), status)


_FAILING_HEAD: Final = (
    "<thead><tr><th>target</th><th>endpoint</th><th>subject</th><th>reason</th>"
    "<th>detail</th><th>failing since</th><th>failures</th><th>next poll</th></tr></thead>"
)


def _job_row(job: Job, status: Status, source: str, with_target: bool) -> str:
    state = health(job)
    if job.reading is not None:
        now = f'<td class="reading">{e(describe(job.reading, source))}</td>'
    elif state == HEALTH_DOWN:
        now = (
            f'<td class="detail"><span class="reason">{e(reason(job))}</span>: '
            f"{e(error_text(job, status))}</td>"
        )
    else:
        now = '<td class="muted">no reading yet</td>'
    target = (
        f'<td><a href="{_link(target=job.target)}">{e(job.target)}</a></td>' if with_target else ""
    )
    duration = _duration(job.last_duration) if job.last_poll is not None else ""
    since = _time(job.failing_since or job.stale_since, status) if state == HEALTH_DOWN else ""
    return (
        f'<tr class="job-{state}">{target}<td>{e(job.endpoint)}</td>'
        f'<td>{e(subject_text(job))}</td><td class="h-{state}">{state}</td>{now}'
        f"<td>{_time(job.last_poll, status)}</td><td class=num>{duration}</td>"
        f"<td>{_time(job.last_success, status)}</td>"
        f'<td class="num">{job.failures}</td><td>{since}</td><td>{_next(job, status)}</td></tr>'
    )


def _job_head(with_target: bool) -> str:
    target = "<th>target</th>" if with_target else ""
    return (
        f"<thead><tr>{target}<th>endpoint</th><th>subject</th><th>health</th>"
        "<th>reading, or why not</th><th>last poll</th><th>duration</th><th>last success</th>"
        "<th>failures</th><th>failing since</th><th>next poll</th></tr></thead>"
    )


def _target_row(group: TargetGroup, counts: Counts, status: Status) -> str:
    held = held_until(group, status)
    hold = (
        f'<span class="bad">{e(group.hold_reason or "held")}</span> until {_time(held, status)}'
        if held is not None
        else ""
    )
    down = f'<td class="num h-down">{counts.down}</td>' if counts.down else '<td class="num">0</td>'
    return (
        f'<tr><td><a href="{_link(target=group.name)}">{e(group.name)}</a></td>'
        f"<td>{e(group.source)}</td><td><code>{e(redact_url(group.url))}</code></td>"
        f'<td class="num">{interval(group):g}s</td><td class="num">{counts.up}</td>{down}'
        f'<td class="num">{counts.unknown}</td><td>{hold}</td></tr>'
    )


def _event_row(event: Mapping[str, Any], status: Status) -> str:
    stamp = event.get("timestamp")
    when = _time(float(stamp), status) if isinstance(stamp, (int, float)) else ""
    level = str(event.get("level", ""))
    css = "bad" if level in ("warning", "error") else "ok"
    details = " ".join(
        f"{key}={value}"
        for key, value in event.items()
        if key not in ("timestamp", "level", "event", "target")
    )
    return (
        f'<tr><td>{when}</td><td class="{css}">{e(level)}</td>'
        f"<td>{e(str(event.get('event', '')))}</td><td>{e(str(event.get('target', '')))}</td>"
        f'<td class="detail">{e(details)}</td></tr>'
    )


def _pager(page: int, pages: int, **query: str) -> str:
    links = [f"<span>page {page} of {pages}</span>"]
    if page > 1:
        links.append(f'<a href="{_link(**query, page=page - 1)}" rel="prev">previous</a>')
    if page < pages:
        links.append(f'<a href="{_link(**query, page=page + 1)}" rel="next">next</a>')
    return f'<div class="pager">{"".join(links)}</div>'


# --------------------------------------------------------------------------- pages


def overview(status: Status) -> Generator[None, None, str]:
    """The overview page."""
    totals = Counts()
    per_target: list[tuple[TargetGroup, Counts]] = []
    failing: list[Job] = []
    failing_total = 0
    walked = 0
    for group in status.groups:
        counts = Counts()
        # Counts.tally inlined: this loop walks every job of the estate
        for job in list(group.jobs):
            walked += 1
            if walked % STEP_JOBS == 0:
                yield
            if not job.attempted:
                counts.unknown += 1
            elif job.failures or job.stale:
                counts.down += 1
                failing_total += 1
                if len(failing) < PAGE_ROWS:
                    failing.append(job)
            else:
                counts.up += 1
        totals.add(counts)
        per_target.append((group, counts))
    body = [_tiles(totals)]
    if failing_total:
        body.append(f"<h2>Failing jobs ({failing_total})</h2>{_FILTER}")
        rows_list: list[str] = []
        for index, job in enumerate(failing, 1):
            rows_list.append(_failing_row(job, status))
            if index % ROW_STEP == 0:
                yield
        rows = "".join(rows_list)
        body.append(
            f'<table class="filterable" id="failing">{_FAILING_HEAD}<tbody>{rows}</tbody></table>'
        )
        if failing_total > len(failing):
            pages = math.ceil(failing_total / PAGE_ROWS)
            body.append(
                f'<p>{failing_total - len(failing)} more failing jobs: <a href="'
                f'{_link(health=HEALTH_DOWN, page=2)}">next page</a> · '
                f'<a href="{_link(health=HEALTH_DOWN)}">all {pages} pages</a></p>'
            )
    else:
        body.append('<h2>Failing jobs</h2><p class="ok" id="failing">No job is failing.</p>')
    yield
    body.append(f"<h2>Targets ({len(per_target)})</h2>")
    body.append(
        '<table id="targets"><thead><tr><th>target</th><th>source</th><th>URL</th>'
        "<th>interval</th><th>up</th><th>down</th><th>not yet polled</th>"
        "<th>Retry-After hold</th></tr></thead><tbody>"
    )
    for index, (group, counts) in enumerate(per_target, 1):
        body.append(_target_row(group, counts, status))
        if index % ROW_STEP == 0:
            yield
    body.append("</tbody></table>")
    events = list(status.events)[-EVENTS:]
    body.append(
        f'<h2>Recent events</h2><p class="muted">The {EVENTS} newest, newest first; '
        'all of them as JSON lines at <a href="logs">/logs</a>.</p>'
    )
    if events:
        rows = "".join(_event_row(event, status) for event in reversed(events))
        body.append(
            '<table id="events"><thead><tr><th>time</th><th>level</th><th>event</th>'
            f"<th>target</th><th>details</th></tr></thead><tbody>{rows}</tbody></table>"
        )
    else:
        body.append('<p class="muted" id="events">No events yet.</p>')
    return _page(status, "ccwatch status", body)


def jobs_page(
    status: Status, *, target: str | None, health_filter: str | None, page: int
) -> Generator[None, None, str | None]:
    """One target's jobs, or the jobs of one health across targets; None: no such target."""
    groups = list(status.groups)
    if target is not None:
        groups = [group for group in groups if group.name == target]
        if not groups:
            return None
    start = (page - 1) * PAGE_ROWS
    shown: list[tuple[Job, str]] = []
    counts = Counts()
    matched = 0
    walked = 0
    for group in groups:
        for job in list(group.jobs):
            walked += 1
            if walked % STEP_JOBS == 0:
                yield
            state = counts.tally(job)
            if health_filter is not None and state != health_filter:
                continue
            if start <= matched < start + PAGE_ROWS:
                shown.append((job, group.source))
            matched += 1
    pages = max(1, math.ceil(matched / PAGE_ROWS))
    query: dict[str, str] = {}
    if target is not None:
        query["target"] = target
    if health_filter is not None:
        query["health"] = health_filter
    body: list[str] = []
    if target is not None:
        group = groups[0]
        held = held_until(group, status)
        hold = (
            f' · <span class="bad">held ({e(group.hold_reason or "")}) until '
            f"{_time(held, status)}</span>"
            if held is not None
            else ""
        )
        body.append(
            f'<h2 id="target">Target {e(group.name)}</h2>'
            f"<p>source <b>{e(group.source)}</b> · <code>{e(redact_url(group.url))}</code> · "
            f"every {interval(group):g}s{hold}</p>"
        )
        title = f"ccwatch: {target}"
    else:
        body.append(f'<h2 id="target">Jobs {e(health_filter or "")} across all targets</h2>')
        title = f"ccwatch: {health_filter} jobs"
    body.append(_tiles(counts))
    filters = [f'<a href="{_link(**({"target": target} if target else {}))}">all</a>']
    for name in ("up", "down", "unknown"):
        if name == health_filter:
            filters.append(f"<b>{name}</b>")
        else:
            filters.append(f'<a href="{_link(**{**query, "health": name})}">{name}</a>')
    body.append(f'<p class="pager">show: {" · ".join(filters)}</p>')
    body.append(_pager(page, pages, **query))
    body.append(_FILTER)
    rows_list: list[str] = []
    for index, (job, source) in enumerate(shown, 1):
        rows_list.append(_job_row(job, status, source, target is None))
        if index % ROW_STEP == 0:
            yield
    rows = "".join(rows_list)
    body.append(
        f'<table class="filterable" id="jobs">{_job_head(target is None)}<tbody>{rows}'
        "</tbody></table>"
    )
    if not shown:
        body.append('<p class="muted">No job on this page.</p>')
    body.append(_pager(page, pages, **query))
    return _page(status, title, body)


def not_found(status: Status, message: str) -> str:
    return _page(
        status, "ccwatch: not found", [f'<h2>Not found</h2><p id="message">{e(message)}</p>']
    )


__all__ = ["CONTENT_SECURITY_POLICY", "PAGE_ROWS", "jobs_page", "not_found", "overview"]
