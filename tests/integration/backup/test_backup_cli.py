"""`fortrolig backup ...` on a real data directory: success output and the CLI error format."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from fortrolig.app.cli import main
from fortrolig.core.principal import Principal
from fortrolig.journal.factory import open_journal


def _journal(data_dir: Path) -> None:
    async def make() -> None:
        svc = await open_journal(data_dir)
        try:
            client = await svc.create_client(Principal("p1", "practitioner"), "Karen", None)
            await svc.add_note(Principal("p1", "practitioner"), client.id, "note")
        finally:
            await svc.close()

    asyncio.run(make())


def _refused(capsys: pytest.CaptureFixture[str], argv: list[str], code: str) -> None:
    assert main(argv) != 0
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.startswith(f"fortrolig: {code}: "), captured.err


def test_cli_round_trip_and_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = tmp_path / "data"
    _journal(data)
    key, out = tmp_path / "off" / "backup.key", tmp_path / "b.fbak"
    common = ["--data-dir", str(data), "--key", str(key)]
    assert main(["backup", "create", *common, "--new-key", "--out", str(out)]) == 0
    assert "created" in capsys.readouterr().out
    assert main(["backup", "verify", *common, str(out), "--json"]) == 0
    assert '"format_version": 1' in capsys.readouterr().out

    db = data / "journal.db"
    before = db.read_bytes()
    _refused(capsys, ["backup", "restore", *common, str(out)], "restore_target_not_empty")
    _refused(capsys, ["backup", "verify", *common, str(tmp_path / "nope")], "backup_not_found")
    other = tmp_path / "other.key"
    assert (
        main(
            [
                "backup",
                "create",
                *common[:2],
                "--key",
                str(other),
                "--new-key",
                "--out",
                str(tmp_path / "c.fbak"),
            ]
        )
        == 0
    )
    capsys.readouterr()
    _refused(
        capsys, ["backup", "verify", *common[:2], "--key", str(other), str(out)], "backup_wrong_key"
    )
    out.write_bytes(out.read_bytes()[:-7])
    _refused(capsys, ["backup", "restore", *common, "--force", str(out)], "backup_corrupt")
    _refused(capsys, ["backup", "create", *common, "--out", str(out)], "backup_exists")
    assert db.read_bytes() == before
