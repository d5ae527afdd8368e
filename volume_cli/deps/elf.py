"""The RPATH/RUNPATH of an ELF shared library, read without loading it.

Only the headers, the dynamic segment and the strings it points at are read,
so a 1 GB CUDA library costs a few small reads.
"""

from __future__ import annotations

import struct
from pathlib import Path

_DT_NULL, _DT_STRTAB, _DT_RPATH, _DT_RUNPATH = 0, 5, 15, 29
_PT_LOAD, _PT_DYNAMIC = 1, 2


def search_paths(path: Path) -> list[str]:
    """The RPATH and RUNPATH entries of ``path``; [] for anything that is not a 64-bit little-endian ELF."""
    try:
        with open(path, "rb") as handle:
            header = handle.read(64)
            if len(header) < 64 or header[:4] != b"\x7fELF" or header[4] != 2 or header[5] != 1:
                return []
            (phoff,) = struct.unpack_from("<Q", header, 0x20)
            phentsize, phnum = struct.unpack_from("<HH", header, 0x36)
            handle.seek(phoff)
            table = handle.read(phentsize * phnum)
            loads: list[tuple[int, int, int]] = []
            dynamic: tuple[int, int] | None = None
            for index in range(phnum):
                kind, _flags, offset, vaddr, _paddr, filesz = struct.unpack_from("<IIQQQQ", table, index * phentsize)
                if kind == _PT_LOAD:
                    loads.append((vaddr, offset, filesz))
                elif kind == _PT_DYNAMIC:
                    dynamic = (offset, filesz)
            if dynamic is None:
                return []
            handle.seek(dynamic[0])
            raw = handle.read(dynamic[1])
            strtab_vaddr: int | None = None
            wanted: list[int] = []
            for position in range(0, len(raw) - 15, 16):
                tag, value = struct.unpack_from("<qQ", raw, position)
                if tag == _DT_NULL:
                    break
                if tag == _DT_STRTAB:
                    strtab_vaddr = value
                elif tag in (_DT_RPATH, _DT_RUNPATH):
                    wanted.append(value)
            if strtab_vaddr is None or not wanted:
                return []
            strtab_offset = _file_offset(strtab_vaddr, loads)
            if strtab_offset is None:
                return []
            paths: list[str] = []
            for string_offset in wanted:
                handle.seek(strtab_offset + string_offset)
                text = handle.read(4096).split(b"\0", 1)[0].decode("utf-8", "replace")
                paths += [part for part in text.split(":") if part]
            return paths
    except (OSError, struct.error):
        return []


def _file_offset(vaddr: int, loads: list[tuple[int, int, int]]) -> int | None:
    for start, offset, size in loads:
        if start <= vaddr < start + size:
            return vaddr - start + offset
    return None
