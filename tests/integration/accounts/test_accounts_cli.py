"""The administrator functions (create account, reset TOTP) and their exit codes."""

from __future__ import annotations

import io
import stat
from pathlib import Path

from fortrolig.accounts import account_cli
from fortrolig.accounts.account_cli import EXIT_CONFIG, EXIT_FAILED, EXIT_OK
from fortrolig.accounts.account_service import open_accounts

PASSWORD = "trætte tøjdyr danser tango"


async def test_create_and_reset(tmp_path: Path) -> None:
    # The functions call asyncio.run themselves, so run them off this test's loop.
    import asyncio

    def run(fn: str, *args: str) -> tuple[int, str, str]:
        out, err = io.StringIO(), io.StringIO()
        code = getattr(account_cli, fn)(tmp_path, *args, out=out, err=err)
        return code, out.getvalue(), err.getvalue()

    code, out, _ = await asyncio.to_thread(run, "create_account", "Bo@Klinik.dk", "Bo", PASSWORD)
    assert code == EXIT_OK and "bo@klinik.dk" in out and "totp_enrolment_required" in out
    keyring = tmp_path / "keys" / "accounts-keyring.json"
    assert stat.S_IMODE(keyring.stat().st_mode) == 0o600
    assert stat.S_IMODE((tmp_path / "accounts.db").stat().st_mode) == 0o600
    code, _, err = await asyncio.to_thread(run, "create_account", "bo@klinik.dk", "Bo", PASSWORD)
    assert code == EXIT_FAILED and err.startswith("fortrolig: email_taken: ")
    code, _, err = await asyncio.to_thread(run, "create_account", "c@klinik.dk", "C", "short")
    assert code == EXIT_FAILED and "weak_password" in err

    service = await open_accounts(tmp_path, None)
    try:
        await service.enrol_totp("bo@klinik.dk", PASSWORD)
        row = await service.store.find_by_email("bo@klinik.dk")
        assert row is not None and row.totp_sealed is not None
    finally:
        await service.close()
    code, out, _ = await asyncio.to_thread(run, "reset_totp", "bo@klinik.dk")
    assert code == EXIT_OK and "reset" in out
    code, _, err = await asyncio.to_thread(run, "reset_totp", "nobody@klinik.dk")
    assert code == EXIT_FAILED and "account_not_found" in err

    keyring.chmod(0o644)  # a readable keyring stops the command
    code, _, err = await asyncio.to_thread(run, "reset_totp", "bo@klinik.dk")
    assert code == EXIT_CONFIG and err.startswith("fortrolig: ") and "keyring" in err


def test_read_password_from_a_stream() -> None:
    assert account_cli.read_password(io.StringIO(PASSWORD + "\nrest\n")) == PASSWORD
