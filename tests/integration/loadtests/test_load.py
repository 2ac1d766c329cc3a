"""`fortrolig-load` against a real node: its report agrees with the node's /metrics."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from fortrolig.loadtests.cli import main
from tests.conftest import ROOT, Server

LOAD = [sys.executable, "-m", "fortrolig.loadtests.cli"]
# A light media profile: the test machine's two cores are shared with the server under test.
LIGHT = ["--resolution", "320x180", "--fps", "15", "--video-bitrate", "300k"]


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("clip-cache")


def load(
    server: Server, out: Path, cache: Path, *args: str, timeout: float = 50
) -> subprocess.CompletedProcess[str]:
    cmd = [
        *LOAD,
        "--base-url",
        server.base_url,
        "--data-dir",
        str(server.data_dir),
        "--cache-dir",
        str(cache),
        "--out",
        str(out),
        "--no-progress",
        "--workers",
        "2",
        *LIGHT,
        *args,
    ]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=ROOT)


def read_report(out: Path) -> dict[str, Any]:
    return dict(json.loads((out / "report.json").read_text()))


@pytest.mark.timeout(60)
def test_two_rooms_of_two_report_matches_server_metrics(
    server: Server, tmp_path: Path, cache_dir: Path
) -> None:
    joins0 = server.metric("fortrolig_joins_total")
    forwarded0 = server.metric("fortrolig_media_forwarded_packets_total")
    latency0 = server.metric("fortrolig_join_latency_seconds_count")

    run = load(
        server,
        tmp_path / "r",
        cache_dir,
        "--rooms",
        "2",
        "--participants-per-room",
        "2",
        "--duration",
        "10s",
        "--decode-sample",
        "--max-loss",
        "2%",
        "--max-join-p95",
        "5s",
        "--max-freezes",
        "0",
    )
    assert run.returncode == 0, run.stdout + run.stderr
    report = read_report(tmp_path / "r")
    s = report["summary"]

    joins = server.metric("fortrolig_joins_total") - joins0
    forwarded = server.metric("fortrolig_media_forwarded_packets_total") - forwarded0
    assert s["participants"] == s["joined"] == s["reached_media"] == 4
    assert joins == 4
    assert server.metric("fortrolig_join_latency_seconds_count") - latency0 == 4
    # The tool's own view of /metrics agrees with ours (nothing else ran meanwhile).
    assert report["server"]["delta"]["fortrolig_joins_total"] == joins

    # Every RTP packet the server forwarded is one a participant received: the clients count
    # from their first packet until their peer connection closes, and on loopback nothing is
    # lost. The only packets the server counts and no client does are those in flight while a
    # participant leaves (its peer is closing while the others still forward to it): a few
    # frames at most, so the two totals agree within 2 %.
    received = s["packets_received"]
    assert received > 0
    assert abs(forwarded - received) <= 0.02 * forwarded, (forwarded, received)
    # Two remote tracks per participant for ~10 s: media really flowed the whole time.
    for p in report["participants"]:
        assert p["remote_tracks"] == 2
        assert p["window_s"] > 9
        assert p["video_frames"] > 9 * 15 * 0.9
        assert p["bitrate_kbps"] > 250
        assert p["rtt_ms"] is not None
    assert s["loss_pct"] <= 2.0
    assert s["freezes"] == 0
    assert s["decode_samples"] == {"checked": 8, "ok": 8}
    assert report["exit_status"] == 0
    assert report["load_generator"]["cpu_pct_per_participant"] > 0
    page = (tmp_path / "r" / "report.html").read_text()
    assert page.count("<svg") == 3  # join latency, loss and bitrate over time
    assert "<script" not in page and "https://" not in page  # self-contained
    assert "packet loss" in run.stdout.lower()


@pytest.mark.timeout(40)
def test_an_impossible_join_threshold_exits_3(
    server: Server, tmp_path: Path, cache_dir: Path
) -> None:
    run = load(
        server,
        tmp_path / "r",
        cache_dir,
        "--rooms",
        "1",
        "--duration",
        "2s",
        "--max-join-p95",
        "1ms",
    )
    assert run.returncode == 3, run.stdout + run.stderr
    report = read_report(tmp_path / "r")
    assert [v["kind"] for v in report["violations"]] == ["join_p95_s"]
    assert report["exit_status"] == 3


def test_help() -> None:
    run = subprocess.run([*LOAD, "--help"], capture_output=True, text=True, timeout=30, cwd=ROOT)
    assert run.returncode == 0
    assert "--max-join-p95" in run.stdout and "exit status" in run.stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--rooms", "0"], "rooms must be between"),
        (["--rooms", "5000"], "rooms must be between"),
        (["--participants-per-room", "1"], "participants_per_room must be between"),
        (["--duration", "forever"], "not a duration"),
        (["--resolution", "big"], "not a resolution"),
        (["--max-loss", "lots"], "not a percentage"),
        (["--base-url", "ftp://example.eu"], "base_url must be"),
        (["--ice-address", "localhost"], "ice_address must be an IP address"),
        (["--rooms", "1000", "--participants-per-room", "16"], "participants (rooms x"),
        (["--ramp", "0.05", "--rooms", "500"], "over the cap"),
        ([], "give --access-token, --data-dir or --tokens-file"),
    ],
)
def test_bad_scenario_exits_2(
    args: list[str], message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["--out", str(tmp_path), *args]) == 2
    err = capsys.readouterr().err
    assert message in err
    assert "Traceback" not in err


def test_bad_scenario_file_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "s.toml"
    path.write_text('[scenario]\nrooms = 2\nroms = 3\n[media]\nresolution = "640x360"\n')
    assert main(["--scenario", str(path), "--access-token", "x"]) == 2
    assert "unknown key scenario.roms" in capsys.readouterr().err
    path.write_text("[scenario\n")
    assert main(["--scenario", str(path), "--access-token", "x"]) == 2
    assert "not valid TOML" in capsys.readouterr().err
    assert main(["--scenario", str(tmp_path / "missing.toml"), "--access-token", "x"]) == 2
    assert "cannot read scenario file" in capsys.readouterr().err


def test_a_bad_flag_exits_2_through_argparse(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["--no-such-flag"])
    assert exc.value.code == 2
