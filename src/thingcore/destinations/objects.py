"""Object storage for the ``s3`` rule action: a directory per bucket by default, or an S3-compatible endpoint.

Blocking calls (file writes, boto3) are meant to run in the destinations' thread pool.
"""

from __future__ import annotations

import contextlib
import os
import re
import tempfile
from pathlib import Path
from typing import Any

_BUCKET = re.compile(r"^[a-z0-9][a-z0-9.\-_]{1,254}$")


class ObjectError(Exception):
    """A write that failed; ``retryable`` when the store may accept it later."""

    def __init__(self, message: str, *, retryable: bool) -> None:
        super().__init__(message)
        self.retryable = retryable


def check_bucket(name: str) -> None:
    if not _BUCKET.match(name) or ".." in name:
        raise ObjectError(f"invalid bucket name {name!r}", retryable=False)


def check_key(key: str) -> None:
    """A key becomes a file path: no empty, absolute or ``..`` segments may leave the bucket's directory."""
    if not key or len(key.encode()) > 1024:
        raise ObjectError("an object key must be 1-1024 bytes", retryable=False)
    parts = key.split("/")
    if any(p in ("", ".", "..") for p in parts) or "\\" in key or "\0" in key:
        raise ObjectError(f"object key {key!r} has an empty, '.' or '..' segment (not storable as a file)",
                          retryable=False)


class DirectoryBuckets:
    """``root/<bucket>/<key>``; each object is written to a temporary file and renamed into place (atomic)."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def put(self, bucket: str, key: str, body: bytes) -> None:
        check_bucket(bucket)
        check_key(key)
        path = self.root / bucket / key
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
            try:
                with os.fdopen(fd, "wb") as f:
                    f.write(body)
                    f.flush()
                    os.fsync(f.fileno())
                os.replace(tmp, path)
            except BaseException:
                with contextlib.suppress(OSError):
                    os.unlink(tmp)
                raise
        except IsADirectoryError:
            raise ObjectError(f"{bucket}/{key}: a key is both an object and a prefix", retryable=False) from None
        except (NotADirectoryError, FileExistsError):
            raise ObjectError(f"{bucket}/{key}: a prefix of the key is an object", retryable=False) from None
        except OSError as exc:
            raise ObjectError(f"{bucket}/{key}: {exc.strerror or exc}", retryable=True) from None

    def get(self, bucket: str, key: str) -> bytes:
        check_bucket(bucket)
        check_key(key)
        return (self.root / bucket / key).read_bytes()

    def describe(self, bucket: str, key: str) -> str:
        return str(self.root / bucket / key)

    def close(self) -> None:
        pass


class S3Buckets:
    """PutObject to an S3-compatible endpoint with boto3 (thread-safe client, one per server)."""

    def __init__(self, endpoint_url: str, region: str, access_key_id: str | None, secret: str | None) -> None:
        import boto3
        from botocore.config import Config

        self.endpoint_url = endpoint_url
        self.client: Any = boto3.client(
            "s3", endpoint_url=endpoint_url, region_name=region, aws_access_key_id=access_key_id or "thingcore",
            aws_secret_access_key=secret or "thingcore",
            config=Config(retries={"max_attempts": 1}, connect_timeout=3, read_timeout=10,
                          s3={"addressing_style": "path"}),
        )

    def put(self, bucket: str, key: str, body: bytes) -> None:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            self.client.put_object(Bucket=bucket, Key=key, Body=body)
        except ClientError as exc:
            err = exc.response.get("Error", {})
            status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
            raise ObjectError(f"s3://{bucket}/{key}: {err.get('Code', '')} {err.get('Message', '')}".strip(),
                              retryable=status >= 500 or status == 429 or err.get("Code") == "SlowDown") from None
        except BotoCoreError as exc:  # endpoint unreachable, timeouts
            raise ObjectError(f"s3://{bucket}/{key} at {self.endpoint_url}: {exc}", retryable=True) from None

    def describe(self, bucket: str, key: str) -> str:
        return f"{self.endpoint_url}/{bucket}/{key}"

    def close(self) -> None:
        self.client.close()


def object_store(hub: Any) -> DirectoryBuckets | S3Buckets:
    """The server's object store, as configured in ``[object_storage]``."""
    cfg = hub.settings.object_storage
    if cfg.endpoint_url:
        return hub.once("objects", lambda: S3Buckets(cfg.endpoint_url, cfg.region, cfg.access_key_id,
                                                     cfg.secret_access_key))
    return hub.once("objects", lambda: DirectoryBuckets(hub.path("objects")))
