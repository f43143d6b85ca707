"""Take away what a delivery worker does not need, before it reads any message (Linux; less elsewhere).

Applied in the worker itself, in this order, each where the platform allows: every inherited file
descriptor above 2 closed; a fresh empty working directory; an unprivileged user (``nobody``) when
started as root; ``PR_SET_NO_NEW_PRIVS`` and not dumpable; no core files, no file writes, no new
processes; an address-space ceiling; and last, a ceiling of three open files, so the worker can
open nothing at all (no socket, no file, no directory) while it keeps the two pipes it talks over.
The CPU ceiling is re-armed per message (:func:`arm_cpu_limit`). There is no maintained Python
binding for seccomp or landlock on PyPI (checked for issue 17), so neither is used; the open-file
ceiling closes the same doors.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import resource
import sys
from dataclasses import dataclass

PR_SET_DUMPABLE = 4
PR_SET_NO_NEW_PRIVS = 38
#: stdin (jobs), stdout (results), stderr.
OPEN_FILES = 3


@dataclass(frozen=True)
class IsolationSettings:
    """The ceilings of one worker; JSON-able, handed to it on its command line."""

    #: Address space beyond what the worker uses after its imports.
    address_space_budget: int = 1024 * 1024 * 1024
    #: The unprivileged account to run as when started as root.
    user: str = "nobody"


def isolate(settings: IsolationSettings, workdir: str) -> list[str]:
    """Apply every measure the platform allows; the names of those applied, for the appliance's log."""
    applied: list[str] = []
    os.closerange(3, _max_fd())
    applied.append("inherited fds closed")
    os.chdir(workdir)
    if os.listdir("."):
        raise RuntimeError("the worker's directory is not empty")
    applied.append("empty working directory")
    if _drop_to_user(settings.user):
        applied.append(f"user {settings.user}")
    elif hasattr(os, "geteuid") and os.geteuid() != 0:
        applied.append(f"user {_user_name(os.geteuid())}")
    if _prctl(PR_SET_NO_NEW_PRIVS, 1):
        applied.append("no_new_privs")
    if _prctl(PR_SET_DUMPABLE, 0):
        applied.append("not dumpable")
    for name, label in (
        ("RLIMIT_CORE", "no core files"),
        ("RLIMIT_FSIZE", "no file writes"),
        ("RLIMIT_NPROC", "no new processes"),
    ):
        if _set_limit(name, 0):
            applied.append(label)
    ceiling = _address_space_in_use() + settings.address_space_budget
    if _set_limit("RLIMIT_AS", ceiling):
        applied.append(f"address space {ceiling // (1024 * 1024)} MiB")
    if _set_limit("RLIMIT_NOFILE", OPEN_FILES):
        applied.append("no new files or sockets (RLIMIT_NOFILE 3)")
    applied.append("cpu seconds per message")
    return applied


def arm_cpu_limit(seconds: int) -> None:
    """Let the coming message use at most ``seconds`` of CPU: past that the kernel kills the worker (SIGXCPU)."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    used = int(usage.ru_utime + usage.ru_stime) + 1
    _soft, hard = resource.getrlimit(resource.RLIMIT_CPU)
    soft = used + seconds
    if hard != resource.RLIM_INFINITY:
        soft = min(soft, hard)
    resource.setrlimit(resource.RLIMIT_CPU, (soft, hard))


def _max_fd() -> int:
    try:
        return os.sysconf("SC_OPEN_MAX")
    except (ValueError, OSError):
        return 65536


def _drop_to_user(user: str) -> bool:
    if not hasattr(os, "geteuid") or os.geteuid() != 0:
        return False
    import pwd

    entry = pwd.getpwnam(user)
    os.setgroups([])
    os.setgid(entry.pw_gid)
    os.setuid(entry.pw_uid)
    if os.geteuid() == 0 or os.getuid() == 0:
        raise RuntimeError("could not leave root")
    return True


def _user_name(uid: int) -> str:
    import pwd

    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)


def _prctl(option: int, value: int) -> bool:
    if not sys.platform.startswith("linux"):
        return False
    libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    return int(libc.prctl(option, value, 0, 0, 0)) == 0


def _set_limit(name: str, value: int) -> bool:
    which = getattr(resource, name, None)
    if which is None:
        return False
    try:
        resource.setrlimit(which, (value, value))
    except (ValueError, OSError):
        return False
    return True


def _address_space_in_use() -> int:
    try:
        with open("/proc/self/statm", "rb") as f:
            return int(f.read().split()[0]) * resource.getpagesize()
    except OSError:
        return 512 * 1024 * 1024
