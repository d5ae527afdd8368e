"""Refuse writes, renames and removals that a planted symlink would send outside the volume.

The volume is shared: anyone with write access can put a link where
volume-cli writes or removes (``python-deps/.store``, ``.generations/<p>``,
``.metadata/locks``...). Following it would write into, or delete, another
tree. Two rules, both without following the last component (a link there is
replaced or removed as a link):

* ``check_inside``: the path's folder, links followed, is ``base`` or below it
  (the models engine, where links inside the cache are ours).
* ``check_chain``: no folder between the volume root and the path is a link at
  all (the deps engine and ``.metadata``, where we never make folder links).

Each check costs one ``lstat`` per path component on a network file system;
``known`` holds folders already checked in this step so each is checked once.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from volume_cli.errors import UnsafePathError
from volume_cli.layout import VolumeLayout

# Top-level folders of a volume root a deps/metadata path lives under; the root is the folder above.
VOLUME_TOP = ("python-deps", ".metadata")


def check_inside(path: Path, base: Path, *, known: set[Path] | None = None) -> Path:
    """Refuse ``path`` unless its folder, with every symlink followed, is ``base`` or under it.

    The last component is deliberately not followed: a link there is replaced
    or removed as a link. A planted link anywhere above it (``models--x``,
    ``blobs``, the staging folder, a URL model's parent folder) or a ``..``
    from a manifest would otherwise make a write or a removal land outside.
    """
    if path.name in ("", ".", ".."):
        raise _outside(path, base)
    if known is not None and path.parent in known:
        return path
    real_base = os.path.realpath(base)
    real_parent = os.path.realpath(path.parent)
    if real_parent != real_base and not real_parent.startswith(real_base + os.sep):
        raise _outside(path, base)
    if known is not None:
        known.add(path.parent)
    return path


def _outside(path: Path, base: Path) -> UnsafePathError:
    return UnsafePathError(
        f"refused to touch {path}: it resolves outside {base} (a symlink or '..' points elsewhere)",
        hint=f"remove the planted link, or check what points outside {base}",
    )


def is_inside(path: Path, base: Path) -> bool:
    try:
        check_inside(path, base)
    except UnsafePathError:
        return False
    return True


def check_chain(path: Path, root: Path, *, known: set[Path] | None = None) -> Path:
    """Refuse ``path`` unless it is below ``root`` and no folder between them is a symlink.

    The root itself may be a link (``/workspace`` to a mount); a folder that
    does not exist yet ends the walk (we create it, as a real folder).
    """
    _check_folders(path.parent, root, subject=path, known=known)
    return path


def check_folder(folder: Path, root: Path, *, known: set[Path] | None = None) -> Path:
    """``check_chain`` for a folder we write into: the folder itself must not be a link either."""
    _check_folders(folder, root, subject=folder, known=known)
    return folder


def _check_folders(folder: Path, root: Path, *, subject: Path, known: set[Path] | None) -> None:
    relative = os.path.relpath(folder, root)
    if subject.name in ("", ".", "..") or subject == root or relative.split(os.sep)[0] == "..":
        raise _outside(subject, root)
    current = root
    for part in Path(relative).parts if relative != "." else ():
        current = current / part
        if known is not None and current in known:
            continue
        try:
            mode = os.lstat(current).st_mode
        except (FileNotFoundError, NotADirectoryError):
            return
        if stat.S_ISLNK(mode):
            raise planted_link(current, subject)
        if known is not None:
            known.add(current)


def planted_link(link: Path, path: Path) -> UnsafePathError:
    where = f"{link} is a symbolic link" if link == path else f"{link} above it is a symbolic link"
    return UnsafePathError(
        f"refused to touch {path}: {where} (volume-cli never writes or removes through one)",
        hint=f"remove the link {link} (rm {link}), then run the command again",
    )


def volume_root_of(path: Path) -> Path | None:
    """The volume root above a ``python-deps/...`` or ``.metadata/...`` path, judged by its name only."""
    parts = path.parts
    for index in range(len(parts) - 1, 0, -1):
        if parts[index] in VOLUME_TOP:
            return Path(*parts[:index])
    return None


def guard_volume(layout: VolumeLayout, *, project: str | None = None, python_version: str | None = None) -> set[Path]:
    """Check every folder a deps command writes under, once; returns them for later ``known`` checks."""
    known: set[Path] = set()
    folders = [layout.store_dir, layout.deps_dir / ".staging", layout.projects_state_dir, layout.locks_dir]
    folders += [layout.logs_dir, layout.metadata_dir / "runtime"]
    if python_version is not None:
        folders.append(layout.python_dir(python_version) / ".generations")
        if project is not None:
            boot = layout.boot_dir(project, python_version)
            folders += [layout.generations_dir(project, python_version), boot.parent, boot]
    if project is not None:
        folders.append(layout.project_state_dir(project))
    for folder in folders:
        check_folder(folder, layout.root, known=known)
    return known
