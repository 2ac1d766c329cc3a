"""The load report: figures from the workers' results, thresholds, JSON, console and HTML.

The HTML page is self-contained: its plots are inline SVG drawn here (no script, no CDN).
"""

from __future__ import annotations

import html
import json
import math
from collections import Counter
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from .scenario import Scenario

# Exit statuses (docs/operations.md, "Load testing").
EXIT_OK = 0
EXIT_ERROR = 1  # the run could not be done (target unreachable, a worker crashed, ...)
EXIT_USAGE = 2  # bad flags or scenario
EXIT_THRESHOLD = 3  # a --max-loss / --max-join-p95 / --max-freezes threshold was broken
EXIT_FAILED = 4  # more participants failed than --max-failed (wins over 3)


def percentile(values: Iterable[float], q: float) -> float | None:
    """Nearest-rank percentile, q in 0..100."""
    ordered = sorted(values)
    if not ordered:
        return None
    rank = max(1, min(len(ordered), math.ceil(q / 100 * len(ordered))))
    return ordered[rank - 1]


def parse_metrics(text: str) -> dict[str, float]:
    """Prometheus text exposition → {'name{labels}': value} (comments skipped)."""
    values: dict[str, float] = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            key, _, value = line.rpartition(" ")
            try:
                values[key] = float(value)
            except ValueError:
                continue
    return values


def metric_sum(samples: dict[str, float], name: str, **labels: str) -> float:
    """Sum of one metric's samples whose labels include ``labels``."""
    total = 0.0
    for key, value in samples.items():
        base, _, rest = key.partition("{")
        if base == name and all(f'{k}="{v}"' in rest for k, v in labels.items()):
            total += value
    return total


SERVER_COUNTERS = (
    "fortrolig_joins_total",
    "fortrolig_media_ingress_packets_total",
    "fortrolig_media_forwarded_packets_total",
    "fortrolig_media_forwarded_bytes_total",
    "fortrolig_media_retransmitted_total",
    "fortrolig_media_nack_received_total",
    "fortrolig_media_pli_received_total",
    "fortrolig_media_fir_received_total",
    "fortrolig_media_pli_sent_total",
    "fortrolig_media_peers_failed_total",
    "fortrolig_media_srtp_refused_total",
    "fortrolig_media_handler_errors_total",
    "fortrolig_ws_errors_total",
    "fortrolig_join_latency_seconds_count",
    "fortrolig_join_latency_seconds_sum",
)


def server_delta(before: dict[str, float] | None, after: dict[str, float] | None) -> dict[str, Any]:
    """What the server's /metrics counted during the run (counters: after − before)."""
    if before is None or after is None:
        return {"available": False}
    delta = {n: metric_sum(after, n) - metric_sum(before, n) for n in SERVER_COUNTERS}
    count = delta["fortrolig_join_latency_seconds_count"]
    return {
        "available": True,
        "delta": delta,
        "join_latency_mean_s": delta["fortrolig_join_latency_seconds_sum"] / count
        if count
        else None,
        "event_loop_lag_s": metric_sum(after, "fortrolig_event_loop_lag_seconds"),
    }


def _stat(values: list[float]) -> dict[str, float | int | None]:
    return {
        "count": len(values),
        "mean": sum(values) / len(values) if values else None,
        "p50": percentile(values, 50),
        "p95": percentile(values, 95),
        "p99": percentile(values, 99),
        "max": max(values) if values else None,
    }


def build_report(
    scenario: Scenario,
    participants: list[dict[str, Any]],
    series: list[dict[str, Any]],
    errors: dict[str, int],
    load: dict[str, Any],
    server: dict[str, Any],
    started_at: str,
) -> dict[str, Any]:
    """Every figure of the run, and the threshold verdict."""
    reached = [p for p in participants if p["join_latency_s"] is not None]
    failed = [p for p in participants if p["status"] == "failed"]
    expected = sum(p["packets_expected"] for p in participants)
    lost = sum(p["packets_lost"] for p in participants)
    joins = [p["join_latency_s"] for p in reached]
    bitrates = [p["bitrate_kbps"] for p in reached if p["bitrate_kbps"] is not None]
    samples = [s for p in participants for s in p["decode_samples"]]
    summary = {
        "participants": len(participants),
        "joined": sum(1 for p in participants if p["joined_s"] is not None),
        "reached_media": len(reached),
        "failed": len(failed),
        "failures": dict(Counter(str(p["error"]) for p in failed)),
        "join_latency_s": _stat(joins),
        "welcome_s": _stat([p["welcome_s"] for p in participants if p["welcome_s"] is not None]),
        "packets_received": sum(p["packets_received"] for p in participants),
        "packets_expected": expected,
        "packets_lost": lost,
        "loss_pct": 100.0 * lost / expected if expected else 0.0,
        "loss_pct_worst_participant": max(
            (p["loss_pct"] for p in participants if p["loss_pct"] is not None), default=None
        ),
        "rtx_received": sum(p["rtx_received"] for p in participants),
        "bytes_received": sum(p["bytes_received"] for p in participants),
        "bitrate_kbps": _stat(bitrates),
        "jitter_ms": {
            kind: _stat([p["jitter_ms"][kind] for p in reached if p["jitter_ms"][kind] is not None])
            for kind in ("audio", "video")
        },
        "rtt_ms": _stat([p["rtt_ms"] for p in reached if p["rtt_ms"] is not None]),
        "freezes": sum(p["freezes"] for p in participants),
        "freeze_s": sum(p["freeze_s"] for p in participants),
        "video_frames": sum(p["video_frames"] for p in participants),
        # What the participants sent (the native engine counts it; the python one does not).
        "packets_sent": sum(p.get("packets_sent", 0) for p in participants),
        "bytes_sent": sum(p.get("bytes_sent", 0) for p in participants),
        "video_frames_sent": sum(p.get("video_frames_sent", 0) for p in participants),
        "decode_samples": {
            "checked": len(samples),
            "ok": sum(1 for s in samples if s["ok"]),
        },
    }
    summary["by_node"] = by_node(participants)
    violations = check_thresholds(scenario, summary)
    status = EXIT_OK
    if any(v["kind"] == "failed" for v in violations):
        status = EXIT_FAILED
    elif violations:
        status = EXIT_THRESHOLD
    return {
        "tool": "fortrolig-load",
        "report_version": 1,
        "started_at": started_at,
        "scenario": scenario.to_dict(),
        "summary": summary,
        "errors": errors,
        "series": series,
        "load_generator": load,
        "server": server,
        "violations": violations,
        "exit_status": status,
        "participants": participants,
    }


def by_node(participants: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Rooms, participants, join latency and loss per serving node (a cluster run); the node is
    the one the participant's WebSocket ended on after any redirect."""
    groups: dict[str, list[dict[str, Any]]] = {}
    for p in participants:
        groups.setdefault(str(p.get("node") or "unknown"), []).append(p)
    out = {}
    for node, members in sorted(groups.items()):
        expected = sum(p["packets_expected"] for p in members)
        lost = sum(p["packets_lost"] for p in members)
        joins = [p["join_latency_s"] for p in members if p["join_latency_s"] is not None]
        out[node] = {
            "rooms": len({p["room_id"] for p in members}),
            "participants": len(members),
            "failed": sum(1 for p in members if p["status"] == "failed"),
            "join_latency_s": _stat(joins),
            "loss_pct": 100.0 * lost / expected if expected else 0.0,
        }
    return out


def check_thresholds(scenario: Scenario, summary: dict[str, Any]) -> list[dict[str, Any]]:
    """The thresholds the run broke (empty when it passed)."""
    t = scenario.thresholds
    out: list[dict[str, Any]] = []
    if summary["failed"] > t.max_failed or summary["reached_media"] == 0:
        out.append({"kind": "failed", "limit": t.max_failed, "value": summary["failed"]})
    if t.max_loss_pct is not None and summary["loss_pct"] > t.max_loss_pct:
        out.append({"kind": "loss_pct", "limit": t.max_loss_pct, "value": summary["loss_pct"]})
    p95 = summary["join_latency_s"]["p95"]
    if t.max_join_p95_s is not None and (p95 is None or p95 > t.max_join_p95_s):
        out.append({"kind": "join_p95_s", "limit": t.max_join_p95_s, "value": p95})
    if t.max_freezes is not None and summary["freezes"] > t.max_freezes:
        out.append({"kind": "freezes", "limit": t.max_freezes, "value": summary["freezes"]})
    return out


# -- console -------------------------------------------------------------------------------


def _fmt(value: float | None, scale: float = 1.0, digits: int = 1, unit: str = "") -> str:
    if value is None:
        return "–"
    return f"{value * scale:.{digits}f}{unit}"


def print_summary(report: dict[str, Any], console: Console) -> None:
    s = report["summary"]
    rates = [p["bitrate_kbps"] for p in report["participants"] if p["bitrate_kbps"]]
    min_rate = min(rates, default=None)
    sc = report["scenario"]
    table = Table(title=f"fortrolig-load: {sc['rooms']} rooms × {sc['participants_per_room']}")
    table.add_column("figure")
    table.add_column("value", justify="right")
    j = s["join_latency_s"]
    rows = [
        (
            "participants (joined / media / failed)",
            f"{s['participants']} ({s['joined']} / {s['reached_media']} / {s['failed']})",
        ),
        (
            "join latency p50 / p95 / max",
            f"{_fmt(j['p50'], 1000, 0)} / {_fmt(j['p95'], 1000, 0)} / {_fmt(j['max'], 1000, 0)} ms",
        ),
        (
            "packet loss (all / worst participant)",
            f"{s['loss_pct']:.3f} % / {_fmt(s['loss_pct_worst_participant'], 1, 3)} %",
        ),
        ("packets received / expected", f"{s['packets_received']} / {s['packets_expected']}"),
        (
            "jitter p95 audio / video",
            f"{_fmt(s['jitter_ms']['audio']['p95'])} / {_fmt(s['jitter_ms']['video']['p95'])} ms",
        ),
        ("RTT p50 / p95", f"{_fmt(s['rtt_ms']['p50'])} / {_fmt(s['rtt_ms']['p95'])} ms"),
        (
            "received bitrate mean / min per participant",
            f"{_fmt(s['bitrate_kbps']['mean'], 1, 0)} / {_fmt(min_rate, 1, 0)} kbit/s",
        ),
        ("freezes (> 500 ms) / total frozen", f"{s['freezes']} / {s['freeze_s']:.1f} s"),
        (
            "load generator CPU per participant",
            f"{_fmt(report['load_generator'].get('cpu_pct_per_participant'), 1, 2)} % of a core",
        ),
    ]
    if s["decode_samples"]["checked"]:
        rows.append(
            (
                "decoded samples intact",
                f"{s['decode_samples']['ok']} / {s['decode_samples']['checked']}",
            )
        )
    server = report["server"]
    if server.get("available"):
        d = server["delta"]
        rows.append(
            (
                "server: joins / forwarded packets",
                f"{d['fortrolig_joins_total']:.0f} / "
                f"{d['fortrolig_media_forwarded_packets_total']:.0f}",
            )
        )
        rows.append(
            (
                "server: mean join latency (hello → connected)",
                f"{_fmt(server['join_latency_mean_s'], 1000, 0)} ms",
            )
        )
    nodes = s.get("by_node", {})
    if len(nodes) > 1:
        for node, n in nodes.items():
            rows.append(
                (
                    f"node {node}: rooms / participants / join p95 / loss",
                    f"{n['rooms']} / {n['participants']} / "
                    f"{_fmt(n['join_latency_s']['p95'], 1000, 0)} ms / {n['loss_pct']:.3f} %",
                )
            )
    for key, value in rows:
        table.add_row(key, value)
    console.print(table)
    if report["errors"]:
        console.print(
            "errors: " + ", ".join(f"{k}={v}" for k, v in sorted(report["errors"].items()))
        )
    for v in report["violations"]:
        console.print(
            f"[bold red]threshold broken[/]: {v['kind']} = {v['value']} (limit {v['limit']})"
        )
    if not report["violations"]:
        console.print("[green]all thresholds met[/]")


# -- files ---------------------------------------------------------------------------------


def write_json(report: dict[str, Any], path: Path) -> None:
    path.write_text(json.dumps(report, indent=2, sort_keys=False) + "\n", encoding="utf-8")


W, H = 640, 240
PAD_L, PAD_B, PAD_T, PAD_R = 56, 36, 16, 16


def _axis(x_label: str, y_label: str, y_max: float, x_max: float) -> list[str]:
    x0, y0, x1, y1 = PAD_L, H - PAD_B, W - PAD_R, PAD_T
    parts = [
        f'<line x1="{x0}" y1="{y0}" x2="{x1}" y2="{y0}" stroke="#333"/>',
        f'<line x1="{x0}" y1="{y0}" x2="{x0}" y2="{y1}" stroke="#333"/>',
        f'<text x="{(x0 + x1) / 2}" y="{H - 6}" text-anchor="middle">{html.escape(x_label)}</text>',
        f'<text x="12" y="{(y0 + y1) / 2}" text-anchor="middle" '
        f'transform="rotate(-90 12 {(y0 + y1) / 2})">{html.escape(y_label)}</text>',
    ]
    for i in range(5):
        frac = i / 4
        y = y0 - frac * (y0 - y1)
        x = x0 + frac * (x1 - x0)
        parts.append(
            f'<text x="{x0 - 4}" y="{y + 4:.1f}" text-anchor="end">{_tick(y_max * frac)}</text>'
        )
        parts.append(f'<line x1="{x0}" y1="{y:.1f}" x2="{x1}" y2="{y:.1f}" stroke="#eee"/>')
        parts.append(
            f'<text x="{x:.1f}" y="{y0 + 14}" text-anchor="middle">{_tick(x_max * frac)}</text>'
        )
    return parts


def _tick(v: float) -> str:
    return f"{v:.0f}" if v >= 10 or v == 0 else f"{v:.2g}"


def _svg(parts: list[str]) -> str:
    body = "".join(parts)
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {W} {H}" width="{W}" height="{H}" '
        f'font-family="sans-serif" font-size="11">{body}</svg>'
    )


def svg_histogram(values: list[float], x_label: str, bins: int = 20) -> str:
    """Bars of how many values fall in each of ``bins`` equal bins from 0 to the maximum."""
    if not values:
        return _svg([f'<text x="{W / 2}" y="{H / 2}" text-anchor="middle">no data</text>'])
    top = max(values) or 1.0
    width = top / bins
    counts = [0] * bins
    for v in values:
        counts[min(bins - 1, int(v / width))] += 1
    c_max = max(counts)
    parts = _axis(x_label, "participants", c_max, top)
    x0, y0 = PAD_L, H - PAD_B
    bar_w = (W - PAD_L - PAD_R) / bins
    for i, c in enumerate(counts):
        h = (y0 - PAD_T) * c / c_max
        parts.append(
            f'<rect x="{x0 + i * bar_w + 1:.1f}" y="{y0 - h:.1f}" width="{bar_w - 2:.1f}" '
            f'height="{h:.1f}" fill="#3b6ea8"><title>{c}</title></rect>'
        )
    return _svg(parts)


def svg_line(xs: list[float], ys: list[float], x_label: str, y_label: str) -> str:
    """A polyline of ys over xs, both axes from 0."""
    if not xs:
        return _svg([f'<text x="{W / 2}" y="{H / 2}" text-anchor="middle">no data</text>'])
    x_max = max(xs) or 1.0
    y_max = max(ys) if ys and max(ys) > 0 else 1.0
    parts = _axis(x_label, y_label, y_max, x_max)
    x0, y0 = PAD_L, H - PAD_B
    sx = (W - PAD_L - PAD_R) / x_max
    sy = (y0 - PAD_T) / y_max
    points = " ".join(f"{x0 + x * sx:.1f},{y0 - y * sy:.1f}" for x, y in zip(xs, ys, strict=True))
    parts.append(f'<polyline points="{points}" fill="none" stroke="#c0392b" stroke-width="1.5"/>')
    return _svg(parts)


def render_html(report: dict[str, Any]) -> str:
    """A self-contained page: the summary, the plots and the per-participant table."""
    s = report["summary"]
    joins_ms = [
        p["join_latency_s"] * 1000
        for p in report["participants"]
        if p["join_latency_s"] is not None
    ]
    series = report["series"]
    ts = [float(p["t"]) for p in series]
    loss = [float(p["loss_pct"]) for p in series]
    mbps = [float(p["mbps"]) for p in series]

    base_url = report["scenario"]["base_url"]
    server = html.escape(json.dumps(report["server"], indent=2))

    def row(cells: Iterable[object], tag: str = "td") -> str:
        return "<tr>" + "".join(f"<{tag}>{html.escape(str(c))}</{tag}>" for c in cells) + "</tr>"

    head = row(
        "# room role status error join_ms loss_% video_jitter_ms RTT_ms kbit/s freezes".split(),
        "th",
    )

    summary_rows = "".join(
        row([k, json.dumps(v) if isinstance(v, dict) else v]) for k, v in s.items()
    )
    people = [
        row(
            [
                p["index"],
                p["room_id"],
                p["role"],
                p["status"],
                p["error"] or "",
                _fmt(p["join_latency_s"], 1000, 0),
                _fmt(p["loss_pct"], 1, 3),
                _fmt(p["jitter_ms"]["video"]),
                _fmt(p["rtt_ms"]),
                _fmt(p["bitrate_kbps"], 1, 0),
                p["freezes"],
            ]
        )
        for p in report["participants"]
    ]
    violations = (
        "".join(f"<li>{html.escape(json.dumps(v))}</li>" for v in report["violations"])
        or "<li>none</li>"
    )
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>fortrolig-load report</title>
<style>
body{{font-family:sans-serif;margin:2em;max-width:70em;color:#222}}
table{{border-collapse:collapse;margin:1em 0}}
td,th{{border:1px solid #ccc;padding:2px 8px;font-size:13px;text-align:left}}
h2{{margin-top:1.5em}}
</style></head><body>
<h1>fortrolig-load report</h1>
<p>Started {html.escape(report["started_at"])} against {html.escape(base_url)};
exit status {report["exit_status"]}.</p>
<h2>Thresholds broken</h2><ul>{violations}</ul>
<h2>Join latency (WebSocket connect → first remote video frame)</h2>
{svg_histogram(joins_ms, "join latency (ms)")}
<h2>Packet loss over time (all participants, per second)</h2>
{svg_line(ts, loss, "seconds since start", "loss %")}
<h2>Received bitrate over time (all participants)</h2>
{svg_line(ts, mbps, "seconds since start", "Mbit/s")}
<h2>Summary</h2><table>{summary_rows}</table>
<h2>Scenario</h2><pre>{html.escape(json.dumps(report["scenario"], indent=2))}</pre>
<h2>Load generator</h2><pre>{html.escape(json.dumps(report["load_generator"], indent=2))}</pre>
<h2>Server (/metrics during the run)</h2><pre>{server}</pre>
<h2>Participants</h2>
<table>{head}{"".join(people)}</table>
</body></html>
"""
