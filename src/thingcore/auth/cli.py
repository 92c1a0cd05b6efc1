"""``thingcore passwd``: manage the password file (add, remove, list users)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from thingcore.auth.passwords import PasswordFile, PasswordFileError

DEFAULT_FILE = Path("thingcore-data") / "passwd"

passwd_app = typer.Typer(
    name="passwd",
    help="Manage the MQTT password file (user names and argon2id hashes).",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)

FileOption = Annotated[
    Path,
    typer.Option("--file", "-f", help="Password file.", show_default=True, dir_okay=False),
]


def _fail(message: str, code: int = 1) -> typer.Exit:
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(code)


def _open(path: Path, *, must_exist: bool) -> PasswordFile:
    if path.is_dir():
        raise _fail(f"{path} is a directory, not a password file", 2)
    if must_exist and not path.exists():
        raise _fail(f"password file {path} does not exist (create it with `thingcore passwd add`)")
    try:
        return PasswordFile(path)
    except PermissionError:
        raise _fail(f"cannot read password file {path}: permission denied") from None
    except UnicodeDecodeError:
        raise _fail(f"password file {path} is not a UTF-8 text file") from None
    except OSError as exc:
        raise _fail(f"cannot read password file {path}: {exc.strerror or exc}") from None


def _save(pf: PasswordFile) -> None:
    try:
        pf.save()
    except OSError as exc:
        raise _fail(f"cannot write password file {pf.path}: {exc.strerror or exc}") from None


@passwd_app.command("add")
def add(
    username: Annotated[str, typer.Argument(help="User name (the MQTT CONNECT user name).")],
    password: Annotated[
        str | None,
        typer.Option("--password", "-p", help="Password (asked for, hidden, when not given)."),
    ] = None,
    file: FileOption = DEFAULT_FILE,
) -> None:
    """Add a user, or set a new password for an existing one."""
    pf = _open(file, must_exist=False)
    if password is None:
        try:
            password = typer.prompt("Password", hide_input=True, confirmation_prompt=True)
        except typer.Abort:
            raise _fail("aborted", 1) from None
    existed = username in pf
    try:
        pf.set(username, password)
    except PasswordFileError as exc:
        raise _fail(str(exc), 2) from None
    _save(pf)
    typer.echo(f"{'updated' if existed else 'added'} user {username} in {file}")


@passwd_app.command("remove")
def remove(
    username: Annotated[str, typer.Argument(help="User name to remove.")],
    file: FileOption = DEFAULT_FILE,
) -> None:
    """Remove a user."""
    pf = _open(file, must_exist=True)
    try:
        pf.remove(username)
    except KeyError:
        raise _fail(f"no user {username!r} in {file}") from None
    _save(pf)
    typer.echo(f"removed user {username} from {file}")


@passwd_app.command("list")
def list_users(file: FileOption = DEFAULT_FILE) -> None:
    """List user names, one per line."""
    pf = _open(file, must_exist=True)
    for name in pf.usernames():
        typer.echo(name)


__all__ = ["passwd_app"]
