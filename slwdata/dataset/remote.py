"""Bound how long a stalled S3 endpoint can hold an ``SLWDataset``: retries with a deadline.

streaming's S3 downloader uses botocore's defaults around its own ``download_timeout`` (60 s
read and connect timeouts, 3 botocore attempts, s3transfer's 5 attempts at the body) inside its
``download_retry`` loop: an endpoint that accepts connections but never answers (a stopped
process, a dead proxy) held iteration silently for over five minutes. :class:`BoundedS3Downloader`
gives every object one deadline (``remote_timeout``, 180 s by default) across all its attempts:
each socket operation times out after a sixth of it, a failed attempt logs a warning that it is
retrying, and no attempt starts that could end past the deadline, so the download ends in
:class:`RemoteTimeoutError` naming the object within ``remote_timeout`` seconds.

Example::

    with bounded_s3_downloads(remote_timeout=60):
        dataset = StreamingDataset(remote='s3://bucket/ds', ...)   # index.json bounded too
    bound_streams(dataset.streams, remote_timeout=60)
"""

from __future__ import annotations

import functools
import logging
import os
import time
import urllib.parse
from contextlib import contextmanager
from typing import Any, Iterator, Sequence

from slwdata.dataset.streaming_compat import S3Downloader, downloader_mappings, set_stream_downloader, stream_downloader

__all__ = [
    'BoundedS3Downloader',
    'RemoteTimeoutError',
    'bounded_s3_downloads',
    'bound_streams',
    'DEFAULT_REMOTE_TIMEOUT',
]

logger = logging.getLogger(__name__)

DEFAULT_REMOTE_TIMEOUT = 180.0
# Socket timeouts are this fraction of the deadline; an attempt (a HEAD and a GET, each a
# connect and a read) can take at most four of them, so the deadline holds.
_PER_OP = 1 / 6
# A call for an object given up on less than this many seconds ago fails at once (it is
# streaming's download_retry loop, not a new request for the object).
_REGRACE = 10.0


class RemoteTimeoutError(TimeoutError):
    """An object store did not deliver an object within ``remote_timeout`` seconds."""


def _retryable(err: BaseException) -> bool:
    """Timeouts, dropped connections and server-side errors; not a 403 or a 404."""
    from botocore.exceptions import ClientError, HTTPClientError
    from botocore.exceptions import ConnectionError as BotoConnectionError

    if isinstance(err, ClientError):
        code = str(err.response.get('Error', {}).get('Code', ''))
        status = int(err.response.get('ResponseMetadata', {}).get('HTTPStatusCode', 0) or 0)
        return status >= 500 or code in ('SlowDown', 'Throttling', 'RequestTimeout')
    return isinstance(err, (BotoConnectionError, HTTPClientError, OSError)) or type(err).__name__ in (
        'RetriesExceededError',
        'ResponseStreamingError',
    )


class BoundedS3Downloader(S3Downloader):
    """streaming's S3 downloader with a per-object deadline and visible retries.

    Args:
        remote_timeout: seconds one object may take, all attempts together.
    """

    def __init__(self, remote_timeout: float = DEFAULT_REMOTE_TIMEOUT) -> None:
        super().__init__()
        if not remote_timeout > 0:
            raise ValueError(f'remote_timeout must be positive, got {remote_timeout!r}.')
        self.remote_timeout = float(remote_timeout)
        # remote -> monotonic time of its first attempt, and of giving up: streaming's own
        # download_retry loop calls again a second or two after a failure, which must not get
        # a fresh deadline.
        self._first_try: dict[str, float] = {}
        self._gave_up: dict[str, tuple[float, str]] = {}

    def _create_s3_client(self, unsigned: bool = False, timeout: float = 0.0) -> Any:
        from boto3.session import Session
        from botocore import UNSIGNED
        from botocore.config import Config

        per_op = max(0.5, self.remote_timeout * _PER_OP)
        extra = {'signature_version': UNSIGNED} if unsigned else {}
        config = Config(
            connect_timeout=per_op, read_timeout=per_op, retries={'mode': 'standard', 'total_max_attempts': 1}, **extra
        )
        self._s3_client = Session().client('s3', config=config, endpoint_url=os.environ.get('S3_ENDPOINT_URL'))

    def _attempt(self, remote: str, local: str) -> None:
        from boto3.s3.transfer import TransferConfig
        from botocore.exceptions import ClientError, NoCredentialsError

        if self._s3_client is None:
            try:
                self._create_s3_client()
            except NoCredentialsError:
                self._create_s3_client(unsigned=True)
        obj = urllib.parse.urlparse(remote)
        extra_args = {'RequestPayer': 'requester'} if obj.netloc in self._requester_pays_buckets else {}
        try:
            self._s3_client.download_file(
                obj.netloc,
                obj.path.lstrip('/'),
                local,
                ExtraArgs=extra_args,
                Config=TransferConfig(use_threads=False, num_download_attempts=1),
            )
        except ClientError as err:
            code = str(err.response.get('Error', {}).get('Code', ''))
            if code in ('403', '404', 'NoSuchKey', 'NoSuchBucket', 'AccessDenied'):
                err.args = (
                    f'Object {remote} not found or not readable ({code}): check the '
                    'bucket, the path and its permissions.',
                )
            raise

    def _download_file_impl(self, remote: str, local: str, timeout: float) -> None:
        now = time.monotonic()
        gave_up = self._gave_up.pop(remote, None)
        if gave_up is not None and now - gave_up[0] < _REGRACE:
            self._gave_up[remote] = gave_up
            raise RemoteTimeoutError(gave_up[1])
        first = self._first_try.setdefault(remote, now)
        worst = 4 * max(0.5, self.remote_timeout * _PER_OP)
        attempt, backoff = 0, 1.0
        while True:
            attempt += 1
            try:
                self._attempt(remote, local)
                self._first_try.pop(remote, None)
                return
            except Exception as err:  # noqa: BLE001 - classified just below
                if not _retryable(err):
                    self._first_try.pop(remote, None)
                    raise
                self._s3_client = None  # a fresh connection for the next attempt
                spent = time.monotonic() - first
                if spent + backoff + worst > self.remote_timeout:
                    self._first_try.pop(remote, None)
                    msg = (
                        f'{remote}: the object store did not deliver it ({attempt} '
                        f'attempt(s) in {spent:.0f} s; last: {type(err).__name__}: {err}); '
                        f'giving up, as another attempt could end past remote_timeout='
                        f'{self.remote_timeout:g} s. Check that the endpoint '
                        f'({os.environ.get("S3_ENDPOINT_URL") or "AWS S3"}) answers, or '
                        'raise remote_timeout.'
                    )
                    self._gave_up[remote] = (time.monotonic(), msg)
                    raise RemoteTimeoutError(msg) from err
                logger.warning(
                    '%s: %s: %s; retrying in %.0f s (attempt %d; gives up %.0f s after the first).',
                    remote,
                    type(err).__name__,
                    err,
                    backoff,
                    attempt + 1,
                    self.remote_timeout,
                )
                time.sleep(backoff)
                backoff = min(2 * backoff, 8.0)


@contextmanager
def bounded_s3_downloads(remote_timeout: float) -> Iterator[None]:
    """While active, streams created in this process (and the ``index.json`` they fetch) use
    :class:`BoundedS3Downloader`."""
    saved = downloader_mappings().get('s3')
    downloader_mappings()['s3'] = functools.partial(BoundedS3Downloader, remote_timeout)
    try:
        yield
    finally:
        downloader_mappings()['s3'] = saved


def bound_streams(streams: Sequence, remote_timeout: float) -> None:
    """Give the S3 streams among ``streams`` a :class:`BoundedS3Downloader` (streams passed in
    by the user were built outside :func:`bounded_s3_downloads`), which retries by itself:
    streaming's ``download_retry`` loop around it is set to one attempt."""
    for stream in streams:
        downloader = stream_downloader(stream)
        if isinstance(downloader, BoundedS3Downloader):
            downloader.remote_timeout = float(remote_timeout)
        elif isinstance(downloader, S3Downloader):
            set_stream_downloader(stream, BoundedS3Downloader(remote_timeout))
        else:
            continue
        stream.download_retry = 1
