"""Object-store calls of ``slwdata convert``: bounded in time, retried with backoff, failing closed.

Every remote call of a conversion goes through :class:`Remote`. For ``s3://`` it uses a boto3
client with short connect/read timeouts and botocore's own retries switched off, and retries
here instead, so that each retry prints a progress line and the whole call ends within
``timeout`` seconds (``--remote-timeout`` / ``$SLWDATA_REMOTE_TIMEOUT``) with an error naming
the object. Only "not found" (404 / NoSuchKey) reads as absent; any other error stops the run.
Other schemes (``gs://``, ``oci://``, ...) go through streaming's downloader/uploader: absent
only on ``FileNotFoundError``, without the time bound.
"""

from __future__ import annotations

import json
import os
import random
import socket
import tempfile
import threading
import time
import uuid
from typing import Any, Callable
from urllib.parse import urlparse

from slwdata.errors import ConvertError, RemoteError

__all__ = ["Remote", "RemoteError", "Lease", "LEASE_NAME", "DEFAULT_TIMEOUT", "timeout_from_env"]

DEFAULT_TIMEOUT = 120.0  # seconds per remote call, retries included: a stalled store ends well within 3 minutes
_ENV = "SLWDATA_REMOTE_TIMEOUT"
LEASE_NAME = ".slwdata-lease.json"  # in a remote --out while a conversion writes it
_NOT_FOUND = {"404", "NoSuchKey", "NotFound"}
_RETRY_CODES = {
    "500",
    "502",
    "503",
    "504",
    "InternalError",
    "ServiceUnavailable",
    "SlowDown",
    "RequestTimeout",
    "Throttling",
    "ThrottlingException",
    "RequestTimeTooSkewed",
}


class _Precondition(Exception):
    """A conditional write lost (412 PreconditionFailed / 409 ConditionalRequestConflict)."""


def timeout_from_env(value: float | None) -> float:
    """``value``, else ``$SLWDATA_REMOTE_TIMEOUT``, else the default; must be > 0."""
    if value is None:
        raw = os.environ.get(_ENV)
        try:
            value = float(raw) if raw else DEFAULT_TIMEOUT
        except ValueError:
            raise ConvertError(f"${_ENV}={raw!r} is not a number of seconds — set it to e.g. 120") from None
    if not value > 0:
        raise ConvertError(f"--remote-timeout must be > 0 seconds, got {value}")
    return float(value)


class Remote:
    """One output prefix (``s3://bucket/prefix``) and the calls a conversion makes on it."""

    def __init__(self, url: str, timeout: float, log: Callable[[str], None]) -> None:
        self.url = url.rstrip("/")
        self.timeout = timeout
        self.log = log
        p = urlparse(self.url)
        self.scheme, self.bucket, self.prefix = p.scheme, p.netloc, p.path.strip("/")
        self._client: Any = None

    def name(self, key: str) -> str:
        return f"{self.url}/{key}"

    # -- s3 ------------------------------------------------------------------------------------

    def client(self) -> Any:
        if self._client is None:
            import boto3
            from botocore.config import Config

            # Per attempt; the retry loop below bounds the whole call.
            per_try = max(1.0, min(20.0, self.timeout / 3))
            cfg = Config(
                connect_timeout=per_try,
                read_timeout=per_try,
                retries={"total_max_attempts": 1, "mode": "standard"},
                s3={"addressing_style": os.environ.get("S3_ADDRESSING_STYLE", "auto")},
            )
            self._client = boto3.session.Session().client(
                "s3", endpoint_url=os.environ.get("S3_ENDPOINT_URL") or None, config=cfg
            )
        return self._client

    def _key(self, name: str) -> str:
        return f"{self.prefix}/{name}" if self.prefix else name

    def _call(self, what: str, key: str, fn: Callable[[], Any], conditional: bool = False) -> Any:
        """Run ``fn`` with retries until it succeeds, fails for good, or ``timeout`` passes.
        ``conditional``: a lost conditional write raises :class:`_Precondition`."""
        from botocore.exceptions import BotoCoreError, ClientError

        start = time.monotonic()
        attempt = 0
        while True:
            attempt += 1
            try:
                return fn()
            except ClientError as exc:
                code = str(exc.response.get("Error", {}).get("Code", ""))
                status = str(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", ""))
                if code in _NOT_FOUND or (status == "404" and code not in ("NoSuchBucket",)):
                    raise FileNotFoundError(self.name(key)) from exc
                if conditional and (code in ("PreconditionFailed", "ConditionalRequestConflict") or status == "412"):
                    raise _Precondition(code or status) from exc
                if code == "NoSuchBucket":
                    raise RemoteError(
                        f"cannot {what} {self.name(key)}: bucket {self.bucket!r} does not exist — "
                        "create it or fix --out"
                    ) from None
                if code not in _RETRY_CODES and status not in _RETRY_CODES:
                    raise RemoteError(
                        f"cannot {what} {self.name(key)}: {code or status} "
                        f"({exc.response.get('Error', {}).get('Message', '')}) — check the "
                        "credentials and permissions for this bucket"
                    ) from None
                err = f"{code or status}"
            except (BotoCoreError, OSError, socket.timeout) as exc:
                err = f"{type(exc).__name__}: {exc}"
            elapsed = time.monotonic() - start
            wait = min(8.0, 0.5 * 2 ** (attempt - 1)) * (0.5 + random.random() / 2)
            if elapsed + wait >= self.timeout:
                raise RemoteError(
                    f"cannot {what} {self.name(key)}: no answer after {attempt} attempts in {elapsed:.0f}s "
                    f"(last: {err}) — check that the object store is up and reachable "
                    f"(S3_ENDPOINT_URL={os.environ.get('S3_ENDPOINT_URL', '')!r}), raise --remote-timeout "
                    "if it is only slow"
                ) from None
            self.log(
                f"slwdata convert: {what} {self.name(key)} failed ({err}); retrying in {wait:.1f}s "
                f"(attempt {attempt + 1}, giving up after {self.timeout:.0f}s)"
            )
            time.sleep(wait)

    # -- the calls -----------------------------------------------------------------------------

    def read_text(self, name: str) -> str | None:
        """Text of ``<url>/name``; None only when the store says it does not exist."""
        if self.scheme == "s3":
            c = self.client()
            try:
                body = self._call(
                    "read", name, lambda: c.get_object(Bucket=self.bucket, Key=self._key(name))["Body"].read()
                )
            except FileNotFoundError:
                return None
            return body.decode("utf-8")
        from streaming.base.storage.download import CloudDownloader

        with tempfile.TemporaryDirectory(prefix="slwdata-") as scratch:
            local = os.path.join(scratch, name)
            try:
                CloudDownloader.direct_download(self.name(name), local, timeout=self.timeout)
            except FileNotFoundError:
                return None
            except Exception as exc:  # noqa: BLE001 - each store's client raises its own types
                raise RemoteError(
                    f"cannot read {self.name(name)}: {type(exc).__name__}: {exc} — check the "
                    "object store and its credentials"
                ) from None
            with open(local, encoding="utf-8") as f:
                return f.read()

    def check_bucket(self) -> None:
        """Fail before any work when the bucket is missing or not ours to read (s3 only)."""
        if self.scheme == "s3":
            c = self.client()
            self._call("list", "", lambda: c.list_objects_v2(Bucket=self.bucket, Prefix=self._key(""), MaxKeys=1))

    def upload(self, local: str, name: str) -> None:
        """Upload one file to ``<url>/name``."""
        if self.scheme == "s3":
            c = self.client()
            with open(local, "rb") as f:  # opened here: a local error is not retried as a network one

                def put() -> None:
                    f.seek(0)
                    c.put_object(Bucket=self.bucket, Key=self._key(name), Body=f)

                self._call("upload", name, put)
            return
        from streaming.base.storage.upload import CloudUploader

        local_dir = os.path.dirname(local)
        try:
            CloudUploader.get((local_dir, self.url), keep_local=True, exist_ok=True).upload_file(name)
        except Exception as exc:  # noqa: BLE001 - each store's client raises its own types
            raise RemoteError(
                f"cannot upload {self.name(name)}: {type(exc).__name__}: {exc} — check the "
                "object store and its credentials"
            ) from None

    # -- the lease: one writer per remote output ----------------------------------------------

    def acquire_lease(self, ttl: float) -> "Lease":
        """Take ``<url>/.slwdata-lease.json`` with a conditional write (If-None-Match, or If-Match
        on the ETag of a lease whose owner is provably gone), or refuse naming the live owner.
        Stores that ignore conditional writes degrade to last-writer-wins. s3 only."""
        lease = Lease(self, ttl)
        if self.scheme != "s3":
            return lease
        c = self.client()
        key = self._key(LEASE_NAME)
        for _ in range(3):
            try:
                lease.etag = self._call(
                    "create the lease",
                    LEASE_NAME,
                    lambda: c.put_object(Bucket=self.bucket, Key=key, Body=lease.body(), IfNoneMatch="*"),
                    conditional=True,
                )["ETag"]
                break
            except _Precondition:
                pass
            try:
                got = self._call("read the lease", LEASE_NAME, lambda: c.get_object(Bucket=self.bucket, Key=key))
            except FileNotFoundError:
                continue  # released meanwhile: try to create it again
            try:
                owner = json.loads(got["Body"].read())
            except ValueError:
                owner = {}
            if Lease.live(owner):
                raise ConvertError(
                    f"{self.url} is being written by another conversion (pid {owner.get('pid', '?')} on "
                    f"{owner.get('host', '?')}, started {owner.get('started', '?')}; its lease "
                    f"{self.name(LEASE_NAME)} is renewed until it ends) — wait for it to finish or choose "
                    "another --out; this run changed nothing"
                )
            try:  # the owner is gone: take over its lease, unless another run just did
                lease.etag = self._call(
                    "take over the lease",
                    LEASE_NAME,
                    lambda: c.put_object(Bucket=self.bucket, Key=key, Body=lease.body(), IfMatch=got["ETag"]),
                    conditional=True,
                )["ETag"]
                self.log(
                    f"slwdata convert: took over the lease of a conversion that is gone "
                    f"(pid {owner.get('pid', '?')} on {owner.get('host', '?')})"
                )
                break
            except (_Precondition, FileNotFoundError):
                continue
        else:
            raise ConvertError(
                f"{self.url}: another conversion keeps taking {self.name(LEASE_NAME)} — "
                "wait for it to finish or choose another --out; this run changed nothing"
            )
        lease.start()
        return lease


class Lease:
    """This run's lease on a remote output, renewed in the background until :meth:`release`."""

    def __init__(self, remote: Remote, ttl: float) -> None:
        self.remote, self.ttl = remote, ttl
        self.token = uuid.uuid4().hex
        self.started = time.strftime("%Y-%m-%d %H:%M:%S %Z")
        self.etag: str | None = None
        self.lost: str | None = None  # why renewing failed, if it did
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def body(self) -> bytes:
        return json.dumps(
            {
                "token": self.token,
                "pid": os.getpid(),
                "host": socket.gethostname(),
                "started": self.started,
                "expires": time.time() + self.ttl,
            }
        ).encode()

    @staticmethod
    def live(owner: dict[str, Any]) -> bool:
        """Whether a lease's owner may still be running: not expired, and on this host its pid exists."""
        if float(owner.get("expires", 0)) < time.time():
            return False
        if owner.get("host") == socket.gethostname():
            try:
                os.kill(int(owner.get("pid", 0)), 0)
            except ProcessLookupError:
                return False
            except (PermissionError, ValueError, OverflowError):
                return True
        return True

    def start(self) -> None:
        self._thread = threading.Thread(target=self._renew, name="slwdata-lease", daemon=True)
        self._thread.start()

    def _renew(self) -> None:
        c = self.remote.client()
        key = self.remote._key(LEASE_NAME)
        while not self._stop.wait(self.ttl / 4):
            try:
                self.etag = self.remote._call(
                    "renew the lease",
                    LEASE_NAME,
                    lambda: c.put_object(Bucket=self.remote.bucket, Key=key, Body=self.body(), IfMatch=self.etag),
                    conditional=True,
                )["ETag"]
            except _Precondition:
                self.lost = "another conversion took it over"
                return
            except Exception as exc:  # noqa: BLE001 - reported when the run publishes
                self.lost = str(exc)

    def check(self) -> None:
        """Raise if the lease could not be kept (another run may be writing the output)."""
        if self.lost:
            raise RemoteError(
                f"lost the lease {self.remote.name(LEASE_NAME)} ({self.lost}) — another "
                "conversion may be writing this output; make sure none is, then rerun"
            )

    def release(self, delete: bool = True) -> None:
        """Stop renewing; remove the lease unless ``delete`` is False (the store just failed: the
        lease then expires, and a rerun on this host takes it over at once)."""
        self._stop.set()
        if self._thread is not None and delete:
            self._thread.join(self.remote.timeout + 5)
            c = self.remote.client()
            try:
                self.remote._call(
                    "remove the lease",
                    LEASE_NAME,
                    lambda: c.delete_object(Bucket=self.remote.bucket, Key=self.remote._key(LEASE_NAME)),
                )
            except (ConvertError, FileNotFoundError) as exc:
                self.remote.log(
                    f"slwdata convert: warning: could not remove {self.remote.name(LEASE_NAME)} "
                    f"({exc}); it expires by itself"
                )
