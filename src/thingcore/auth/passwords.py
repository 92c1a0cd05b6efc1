"""A mosquitto-like password file: ``username:$argon2id$...`` per line, ``#`` comments.

Hashing uses argon2-cffi's :class:`~argon2.PasswordHasher` (argon2id). A verification costs
tens of milliseconds of CPU, so the broker goes through :meth:`PasswordFile.averify`, which runs
it in a worker thread (``asyncio.to_thread``), bounds how many run at once, and remembers
successful verifications for a while so a reconnect storm stays cheap.

The file is re-read when its modification time, size or inode changes (checked at most every
``reload_interval`` seconds), so ``thingcore passwd add`` takes effect without a restart.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import tempfile
import threading
import time
import weakref
from collections import OrderedDict
from pathlib import Path

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

log = logging.getLogger(__name__)

_HEADER = "# thingcore password file: username:argon2id-hash (managed by `thingcore passwd`)\n"


class PasswordFileError(ValueError):
    """The password file (or a name or password given for it) is not acceptable."""


def _as_bytes(password: str | bytes) -> bytes:
    return password.encode("utf-8") if isinstance(password, str) else bytes(password)


def check_username(username: str) -> None:
    """Raise :class:`PasswordFileError` if ``username`` cannot be stored in the file."""
    if not username:
        raise PasswordFileError("the user name is empty")
    if username != username.strip():
        raise PasswordFileError("the user name starts or ends with white space")
    if username.startswith("#"):
        raise PasswordFileError("the user name starts with '#' (that would read as a comment)")
    if "?" in username:
        raise PasswordFileError("the user name contains '?' (what follows '?' is read as client metadata)")
    if any(c in username for c in "\r\n\x00"):
        raise PasswordFileError("the user name contains a line break or NUL character")


class PasswordFile:
    """Users and argon2id hashes, loaded from (and saved to) ``path``.

    A missing file is an empty user list until :meth:`save` creates it; :attr:`exists` tells.
    ``verify`` is synchronous and CPU-heavy; from async code use ``averify``.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        hasher: PasswordHasher | None = None,
        reload_interval: float = 1.0,
        cache_ttl: float = 300.0,
        cache_size: int = 10_000,
        max_concurrent: int | None = None,
    ) -> None:
        self.path = Path(path)
        self.hasher = hasher or PasswordHasher()
        self.reload_interval = reload_interval
        self.cache_ttl = cache_ttl
        self.cache_size = cache_size
        self.max_concurrent = max_concurrent or max(2, (os.cpu_count() or 2))
        self._lock = threading.RLock()
        self._users: dict[str, str] = {}
        self._signature: tuple[int, int, int] | None = None
        self._checked_at = 0.0
        self._generation = 0
        self._dummy_hash: str | None = None
        # (username, sha256(password)) -> (expiry monotonic time, generation)
        self._cache: OrderedDict[tuple[str, bytes], tuple[float, int]] = OrderedDict()
        self._semaphores: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Semaphore] = (
            weakref.WeakKeyDictionary()
        )
        self.load()

    # -- reading ---------------------------------------------------------------------------

    @property
    def exists(self) -> bool:
        return self._signature is not None

    def _stat_signature(self) -> tuple[int, int, int] | None:
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            return None
        return (st.st_mtime_ns, st.st_size, st.st_ino)

    def load(self) -> None:
        """(Re)read the file. A missing file gives an empty user list."""
        with self._lock:
            signature = self._stat_signature()
            users: dict[str, str] = {}
            if signature is not None:
                text = self.path.read_text(encoding="utf-8")
                for lineno, raw in enumerate(text.splitlines(), 1):
                    line = raw.strip()
                    if not line or line.startswith("#"):
                        continue
                    # Hashes never contain ':', so split at the last one.
                    name, sep, hashed = line.rpartition(":")
                    if not sep or not name or not hashed.startswith("$"):
                        log.warning("%s:%d: ignoring a line that is not username:hash", self.path, lineno)
                        continue
                    if not hashed.startswith("$argon2"):
                        log.warning(
                            "%s:%d: user %r has a hash that is not argon2; that user cannot log in",
                            self.path,
                            lineno,
                            name,
                        )
                    users[name] = hashed
            self._users = users
            self._signature = signature
            self._checked_at = time.monotonic()
            self._changed()

    def _changed(self) -> None:
        self._generation += 1
        self._cache.clear()

    def maybe_reload(self, *, force: bool = False) -> bool:
        """Re-read the file if it changed on disk. Returns whether it was re-read."""
        now = time.monotonic()
        if not force and now - self._checked_at < self.reload_interval:
            return False
        self._checked_at = now
        signature = self._stat_signature()
        if signature == self._signature:
            return False
        try:
            self.load()
        except (OSError, UnicodeDecodeError) as exc:
            log.error("cannot reload password file %s: %s; keeping the previous users", self.path, exc)
            return False
        log.info("password file %s reloaded (%d users)", self.path, len(self._users))
        return True

    def usernames(self) -> list[str]:
        return list(self._users)

    def __contains__(self, username: object) -> bool:
        return username in self._users

    def __len__(self) -> int:
        return len(self._users)

    # -- verifying -------------------------------------------------------------------------

    def _dummy(self) -> str:
        if self._dummy_hash is None:
            self._dummy_hash = self.hasher.hash(os.urandom(16))
        return self._dummy_hash

    def verify(self, username: str, password: str | bytes) -> bool:
        """Check a password (CPU-heavy, blocking). Unknown users cost the same as known ones."""
        self.maybe_reload()
        return self._verify_now(username, password)

    def _verify_now(self, username: str, password: str | bytes) -> bool:
        hashed = self._users.get(username)
        secret = _as_bytes(password)
        if hashed is None:
            try:
                self.hasher.verify(self._dummy(), secret)
            except (VerificationError, InvalidHashError):
                pass
            return False
        try:
            return self.hasher.verify(hashed, secret)
        except VerifyMismatchError:
            return False
        except (VerificationError, InvalidHashError):
            return False

    def _semaphore(self) -> asyncio.Semaphore:
        loop = asyncio.get_running_loop()
        sem = self._semaphores.get(loop)
        if sem is None:
            sem = self._semaphores[loop] = asyncio.Semaphore(self.max_concurrent)
        return sem

    async def averify(self, username: str, password: str | bytes) -> bool:
        """:meth:`verify` in a worker thread, with a bounded cache of recent successes."""
        self.maybe_reload()
        secret = _as_bytes(password)
        key = (username, hashlib.sha256(secret).digest())
        now = time.monotonic()
        hit = self._cache.get(key)
        if hit is not None:
            expiry, generation = hit
            if expiry > now and generation == self._generation:
                return True
            self._cache.pop(key, None)
        generation = self._generation
        async with self._semaphore():
            ok = await asyncio.to_thread(self._verify_now, username, secret)
        if ok and generation == self._generation and self.cache_ttl > 0 and self.cache_size > 0:
            self._cache[key] = (time.monotonic() + self.cache_ttl, generation)
            while len(self._cache) > self.cache_size:
                self._cache.popitem(last=False)
        return ok

    # -- changing --------------------------------------------------------------------------

    def set(self, username: str, password: str | bytes) -> None:
        """Add or replace a user (in memory; call :meth:`save` to write the file)."""
        check_username(username)
        secret = _as_bytes(password)
        if not secret:
            raise PasswordFileError("the password is empty")
        hashed = self.hasher.hash(secret)
        with self._lock:
            self._users[username] = hashed
            self._changed()

    def remove(self, username: str) -> None:
        """Remove a user (in memory); ``KeyError`` if there is no such user."""
        with self._lock:
            del self._users[username]
            self._changed()

    def save(self) -> None:
        """Write the file atomically (temporary file + ``os.replace``), mode 0600."""
        with self._lock:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            body = _HEADER + "".join(f"{name}:{hashed}\n" for name, hashed in self._users.items())
            fd, tmp = tempfile.mkstemp(prefix=f".{self.path.name}.", suffix=".tmp", dir=self.path.parent)
            try:
                # mkstemp creates the file with mode 0600 already.
                with os.fdopen(fd, "w", encoding="utf-8") as fh:
                    fh.write(body)
                    fh.flush()
                    os.fsync(fh.fileno())
                os.replace(tmp, self.path)
            except BaseException:
                try:
                    os.unlink(tmp)
                except FileNotFoundError:
                    pass
                raise
            self._signature = self._stat_signature()
            self._checked_at = time.monotonic()


__all__ = ["PasswordFile", "PasswordFileError", "check_username"]
