"""Count the file-system calls a process makes on one folder, from ``strace -f -y`` output.

A call counts when one of its *path operands* lies under the folder: a path argument of a
path-taking syscall (joined to its directory descriptor when relative) or a descriptor that
``-y`` resolved to a file there. Data is never a path: the bytes a ``write`` sends down a
pipe to uv's compile workers, a ``readlink``'s answer, a ``symlink``'s content may all
contain the folder's name, and none of them is a call on it (the old counter matched any
line that mentioned the folder, about 70k false operations for the 44-wheel set). Pipes
and sockets resolve to ``pipe:[…]``/``socket:[…]``, never to a path, so they never count.
"""

from __future__ import annotations

import posixpath
import re
from collections import Counter
from collections.abc import Iterable

# The syscalls traced: every call that names a path (%file) or takes a descriptor (%desc).
TRACE = "trace=%file,%desc"

# (directory-descriptor argument or None, path argument) for each path operand of a syscall.
_PATH_OPERANDS: dict[str, tuple[tuple[int | None, int], ...]] = {
    **{
        name: ((None, 0),)
        for name in (
            "open", "creat", "stat", "lstat", "stat64", "lstat64", "access", "chdir", "mkdir", "rmdir", "unlink",
            "chmod", "chown", "lchown", "truncate", "statfs", "utime", "utimes", "readlink", "execve", "getxattr",
            "lgetxattr", "setxattr", "lsetxattr", "listxattr", "llistxattr", "removexattr", "lremovexattr",
            "mknod", "chroot", "acct", "swapon", "uselib",
        )
    },
    **{
        name: ((0, 1),)
        for name in (
            "openat", "openat2", "newfstatat", "fstatat64", "faccessat", "faccessat2", "mkdirat", "unlinkat",
            "fchmodat", "fchmodat2", "fchownat", "utimensat", "futimesat", "readlinkat", "statx", "mknodat",
            "name_to_handle_at", "execveat", "open_tree", "inotify_add_watch",
        )
    },
    "rename": ((None, 0), (None, 1)),
    "link": ((None, 0), (None, 1)),
    "renameat": ((0, 1), (2, 3)),
    "renameat2": ((0, 1), (2, 3)),
    "linkat": ((0, 1), (2, 3)),
    "symlink": ((None, 1),),  # the first argument is the link's content, not a path
    "symlinkat": ((1, 2),),
}  # fmt: skip

_CALL = re.compile(r"^(?:\[pid\s+)?(\d+)\]?\s+(?:<\.\.\. (\w+) resumed>\s?(.*)|(\w+)\((.*))$")
_DESCRIPTOR = re.compile(r"^(?:\d+|AT_FDCWD)<(.*)>$")
_UNFINISHED = " <unfinished ...>"


def split_arguments(text: str) -> list[str]:
    """The top-level arguments of a syscall's text after its ``(``; stops at the closing ``)``."""
    parts: list[str] = []
    current: list[str] = []
    depth = 0
    index = 0
    in_string = False
    while index < len(text):
        char = text[index]
        if in_string:
            current.append(char)
            if char == "\\" and index + 1 < len(text):
                current.append(text[index + 1])
                index += 1
            elif char == '"':
                in_string = False
        elif char == '"':
            in_string = True
            current.append(char)
        elif char in "([{<":
            depth += 1
            current.append(char)
        elif char in ")]}>" and depth == 0:
            break  # the call's closing parenthesis: the return value follows
        elif char in ")]}>":
            depth -= 1
            current.append(char)
        elif char == "," and depth == 0:
            parts.append("".join(current).strip())
            current = []
        else:
            current.append(char)
        index += 1
    last = "".join(current).strip()
    if last or parts:
        parts.append(last)
    return parts


def _string(argument: str) -> str | None:
    if len(argument) >= 2 and argument.startswith('"') and argument.endswith('"'):
        return argument[1:-1].encode("latin-1", "backslashreplace").decode("unicode_escape", "replace")
    return None


def _descriptor(argument: str) -> str | None:
    match = _DESCRIPTOR.match(argument)
    return match.group(1) if match else None


def operand_paths(name: str, arguments: list[str]) -> list[str]:
    """The paths a call operates on: path arguments (made absolute) and descriptors resolved by ``-y``."""
    paths: list[str] = []
    operands = _PATH_OPERANDS.get(name, ())
    directory_arguments = {directory for directory, _ in operands if directory is not None}
    for directory, position in operands:
        path = _string(arguments[position]) if position < len(arguments) else None
        if path is None:
            continue
        if not path.startswith("/"):
            base = _descriptor(arguments[directory]) if directory is not None and directory < len(arguments) else None
            if base is None:
                continue  # relative to a working directory strace did not show: not countable
            path = posixpath.join(base, path)
        paths.append(posixpath.normpath(path))
    for position, argument in enumerate(arguments):
        if position in directory_arguments or argument.startswith("AT_FDCWD"):
            continue  # a directory a path is relative to is not itself operated on
        resolved = _descriptor(argument)
        if resolved is not None and resolved.startswith("/"):
            paths.append(resolved.removesuffix(" (deleted)"))
    return paths


def _under(path: str, folder: str) -> bool:
    return path == folder or path.startswith(folder.rstrip("/") + "/")


def count_calls(lines: Iterable[str], folder: str, *, exclude: tuple[str, ...] = ()) -> Counter[str]:
    """Calls on ``folder`` (not under any of ``exclude``) by syscall name, from ``strace -f -y`` lines.

    A call strace split into ``<unfinished ...>`` and ``<... resumed>`` counts once, when it resumes.
    """
    counts: Counter[str] = Counter()
    pending: dict[str, tuple[str, str]] = {}
    for line in lines:
        match = _CALL.match(line.rstrip("\n"))
        if match is None:
            continue  # signals, exits, strace's own messages
        pid, resumed_name, resumed_text, name, text = match.groups()
        if resumed_name is not None:
            if pid not in pending:
                continue
            name, before = pending.pop(pid)
            text = before + resumed_text
        elif text.endswith(_UNFINISHED):
            pending[pid] = (name, text.removesuffix(_UNFINISHED))
            continue
        paths = operand_paths(name, split_arguments(text))
        if any(_under(path, folder) and not any(_under(path, other) for other in exclude) for path in paths):
            counts[name] += 1
    return counts
