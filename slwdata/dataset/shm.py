"""Clean up the shared memory of SLWDataset runs that were killed (SIGKILL, OOM killer).

StreamingDataset keeps its coordination state in POSIX shared memory named
``<prefix>_<name>`` plus file locks ``<tmp>/<prefix>_*_filelock``. A process killed before its
atexit handlers run leaves them behind: the segments leak, and a registration that lists the
same local cache directory makes the next run fail with "Reused local directory".
``streaming.base.util.clean_stale_shared_memory()`` removes *every* prefix, including those of
live jobs on the same machine, so it is only safe on a dedicated node before training starts.

Here each SLWDataset local leader records who owns its prefix (pid and process start time) in
``<tmp>/slwdata_owner_<prefix>.json``; :func:`clean_dead_owners` removes only the prefixes whose
recorded owner is no longer running.

Example::

    from slwdata.dataset.shm import clean_dead_owners
    clean_dead_owners()    # -> list of prefixes freed
"""

from __future__ import annotations

import glob
import json
import logging
import os
from tempfile import gettempdir
from typing import Optional

from streaming.base.constant import BARRIER_FILELOCK, CACHE_FILELOCK, SHM_TO_CLEAN

__all__ = ['register_owner', 'clean_dead_owners', 'owner_path']

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


def register_owner(prefix_int: int) -> None:
    """Record this process as the owner of ``prefix_int`` (called by the local leader)."""
    record = {'pid': os.getpid(), 'start': _start_time(os.getpid())}
    tmp = owner_path(prefix_int) + f'.{os.getpid()}.tmp'
    with open(tmp, 'w') as f:
        json.dump(record, f)
    os.replace(tmp, owner_path(prefix_int))


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
    users) and prefixes of live processes are left alone.
    """
    cleaned = []
    for path in sorted(glob.glob(os.path.join(gettempdir(), 'slwdata_owner_*.json'))):
        try:
            prefix_int = int(os.path.basename(path)[len('slwdata_owner_'):-len('.json')])
            with open(path) as f:
                record = json.load(f)
        except (ValueError, OSError):
            continue
        if _alive(record):
            continue
        # File locks first: a prefix with shared memory but no lock is still skipped by
        # streaming's prefix search, so no new run can grab it half-cleaned.
        for lock in (BARRIER_FILELOCK, CACHE_FILELOCK):
            try:
                os.unlink(os.path.join(gettempdir(), f'{prefix_int:06}_{lock}'))
            except FileNotFoundError:
                pass
        leaked = [name for name in SHM_TO_CLEAN if _unlink_shm(f'{prefix_int:06}_{name}')]
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass
        if leaked:
            logger.warning('Removed shared memory %s left by dead process %s.',
                           ', '.join(f'{prefix_int:06}_{n}' for n in leaked), record.get('pid'))
        cleaned.append(prefix_int)
    return cleaned
