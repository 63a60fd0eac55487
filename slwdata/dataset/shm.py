"""Clean up the shared memory of SLWDataset runs that were killed (SIGKILL, OOM killer).

StreamingDataset keeps its coordination state in POSIX shared memory named
``<prefix>_<name>`` plus file locks ``<tmp>/<prefix>_*_filelock``. A process killed before its
atexit handlers run leaves them behind: the segments leak, and a registration that lists the
same local cache directory makes the next run fail with "Reused local directory".
``streaming.base.util.clean_stale_shared_memory()`` removes *every* prefix, including those of
live jobs on the same machine, so it is only safe on a dedicated node before training starts.

Here each SLWDataset local leader records who owns its prefix (pid, process start time and the
inode of each segment) in ``<tmp>/slwdata_owner_<prefix>.json``, and removes the record again on
``close()`` and at exit. :func:`clean_dead_owners` removes a prefix's segments only when the
recorded owner provably died (no process with that pid and start time) and each segment is
still the one it created (same inode) and mapped by no live process (``/proc/*/maps``): a
prefix reused by another job, say a plain StreamingDataset run, is left alone.

Example::

    from slwdata.dataset.shm import clean_dead_owners
    clean_dead_owners()    # -> list of prefixes freed
"""

from __future__ import annotations

import atexit
import glob
import json
import logging
import os
from tempfile import gettempdir
from typing import Optional

from slwdata.dataset.streaming_compat import BARRIER_FILELOCK, CACHE_FILELOCK, SHM_TO_CLEAN, shm_path

__all__ = ['register_owner', 'release_owner', 'clean_dead_owners', 'owner_path']

# streaming's segments, and the hash record of slwdata.dataset.integrity.
_SEGMENTS = list(SHM_TO_CLEAN) + ['slw_verified']
# Prefixes whose owner record this process wrote and still holds.
_OWNED: set[int] = set()

logger = logging.getLogger(__name__)


def owner_path(prefix_int: int) -> str:
    """Where the owner record of a shared-memory prefix lives."""
    return os.path.join(gettempdir(), f'slwdata_owner_{prefix_int:06}.json')


def _start_time(pid: int) -> Optional[str]:
    """Process start time (clock ticks since boot) from /proc, or None if there is no such pid."""
    try:
        with open(f'/proc/{pid}/stat') as f:
            stat = f.read()
    except FileNotFoundError:
        return None
    except OSError:
        return ''
    # Field 22; the command name (field 2) may contain spaces, so split after its ')'.
    return stat.rsplit(')', 1)[1].split()[19]


def _alive(record: dict) -> bool:
    pid = int(record.get('pid', -1))
    if pid <= 0:
        return False
    if os.path.isdir('/proc'):
        started = _start_time(pid)
        return started is not None and (started == '' or started == record.get('start'))
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _inode(name: str) -> Optional[int]:
    try:
        return os.stat(os.path.join('/dev/shm', name)).st_ino
    except OSError:
        return None


def register_owner(prefix_int: int) -> None:
    """Record this process as the owner of ``prefix_int`` (called by the local leader, after
    its segments exist); the record is removed by :func:`release_owner` or at exit."""
    segments = {n: _inode(shm_path(prefix_int, n)) for n in _SEGMENTS}
    record = {
        'pid': os.getpid(),
        'start': _start_time(os.getpid()),
        'segments': {n: i for n, i in segments.items() if i is not None},
    }
    tmp = owner_path(prefix_int) + f'.{os.getpid()}.tmp'
    with open(tmp, 'w') as f:
        json.dump(record, f)
    os.replace(tmp, owner_path(prefix_int))
    if not _OWNED:
        atexit.register(_release_all)
    _OWNED.add(prefix_int)


def release_owner(prefix_int: int) -> None:
    """Remove the owner record of ``prefix_int`` if this process wrote it."""
    path = owner_path(prefix_int)
    try:
        with open(path) as f:
            record = json.load(f)
        if record.get('pid') == os.getpid() and record.get('start') == _start_time(os.getpid()):
            os.unlink(path)
    except (OSError, ValueError):
        pass
    _OWNED.discard(prefix_int)
    if not _OWNED:
        atexit.unregister(_release_all)


def _release_all() -> None:
    for prefix_int in list(_OWNED):
        release_owner(prefix_int)


def _mapped_by_live_process(prefix_int: int) -> Optional[int]:
    """Another process that has a segment of ``prefix_int`` mapped, or None. Processes of other users
    cannot be read, but cannot map this user's segments either (streaming creates them 0600)."""
    needle = '/dev/shm/' + shm_path(prefix_int, '')
    for entry in os.listdir('/proc') if os.path.isdir('/proc') else []:
        # This process may map them only because streaming's prefix search looked at them (a
        # dataset that failed to start); a job of its own on the prefix made new inodes.
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            with open(f'/proc/{entry}/maps') as f:
                lines = [line for line in f if needle in line]
        except OSError:
            continue
        for line in lines:
            # A mapping of a segment unlinked since (``(deleted)``, or another inode under the same
            # name) belongs to an earlier job on this prefix, not to the segments there now.
            fields = line.split()
            if len(fields) < 6 or line.rstrip().endswith('(deleted)'):
                continue
            try:
                if os.stat(fields[5]).st_ino == int(fields[4]):
                    return int(entry)
            except (OSError, ValueError):
                continue
    return None


def _unlink_quiet(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


def _unlink_shm(name: str) -> bool:
    path = os.path.join('/dev/shm', name)
    try:
        os.unlink(path)
        return True
    except FileNotFoundError:
        return False


def clean_dead_owners() -> list[int]:
    """Remove the shared memory and file locks of SLWDataset prefixes whose owner died.

    Returns the prefixes cleaned. Prefixes without an owner record (other StreamingDataset
    users), prefixes of live processes, and segments that are not the dead owner's (another
    inode) or that a live process maps are left alone; a record whose prefix now belongs to
    someone else is dropped.
    """
    cleaned = []
    for path in sorted(glob.glob(os.path.join(gettempdir(), 'slwdata_owner_*.json'))):
        try:
            prefix_int = int(os.path.basename(path)[len('slwdata_owner_') : -len('.json')])
            with open(path) as f:
                record = json.load(f)
        except (ValueError, OSError):
            continue
        if _alive(record):
            continue
        user = _mapped_by_live_process(prefix_int)
        # The segments that existed when the owner registered must still be the same files
        # (a job that took the prefix over made new ones); those the owner made later (epoch
        # data) have no recorded inode, and the live-mapping check covers them.
        recorded = record.get('segments') or {}
        foreign = [n for n, i in recorded.items() if _inode(shm_path(prefix_int, n)) not in (None, i)]
        if user is not None or foreign:
            logger.warning(
                'Shared-memory prefix %06d of dead process %s is now %s: left alone, stale owner record %s removed.',
                prefix_int,
                record.get('pid'),
                f'in use by pid {user}' if user is not None else f'held by another job ({", ".join(foreign)})',
                path,
            )
            _unlink_quiet(path)
            continue
        # File locks first: a prefix with shared memory but no lock is still skipped by
        # streaming's prefix search, so no new run can grab it half-cleaned.
        for lock in (BARRIER_FILELOCK, CACHE_FILELOCK):
            _unlink_quiet(os.path.join(gettempdir(), shm_path(prefix_int, lock)))
        leaked = [name for name in _SEGMENTS if _unlink_shm(shm_path(prefix_int, name))]
        _unlink_quiet(path)
        if leaked:
            logger.warning(
                'Removed shared memory %s left by dead process %s.',
                ', '.join(shm_path(prefix_int, n) for n in leaked),
                record.get('pid'),
            )
        cleaned.append(prefix_int)
    return cleaned
