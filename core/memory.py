"""Native memory that stays flat in a process that runs around the clock.

What grew in the live ingest was not Python's objects but the C allocators under them
(docs/operations.md, "Native memory"): glibc's malloc arenas kept the free space of each of the up
to sixteen arenas its threads were given (26 to 73 MB of free chunks in nine minutes, none of it
returned by ``malloc_trim``), and Arrow's mimalloc pool kept pages it had freed. Every command caps
glibc at ``ARENAS`` arenas and gives Arrow the system allocator; DuckDB's allocator is held by the
live ingest's warehouse writer (warehouse/writer.py, ``lean``).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import platform
import re
import sys
import tempfile
from pathlib import Path

ARENAS = 2  # glibc malloc arenas a process may use (M_ARENA_MAX)
_M_ARENA_MAX = -8  # mallopt's parameter (malloc.h)


def _glibc() -> ctypes.CDLL | None:
    if sys.platform != "linux" or platform.libc_ver()[0] != "glibc":
        return None
    return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")


def settle_allocators(arenas: int = ARENAS) -> bool:
    """Cap glibc's malloc arenas at ``arenas`` and give Arrow the system allocator, in this process
    and the ones it starts; a ``MALLOC_ARENA_MAX`` or ``ARROW_DEFAULT_MEMORY_POOL`` already in the
    environment is kept. Call it before the command starts threads: glibc fixes its arena limit
    once a process has eight. True when a cap is in force (False elsewhere: other C libraries)."""
    preset = "MALLOC_ARENA_MAX" in os.environ  # glibc read it when the process started
    os.environ.setdefault("MALLOC_ARENA_MAX", str(arenas))  # the processes this one starts read it
    if "ARROW_DEFAULT_MEMORY_POOL" not in os.environ:
        os.environ["ARROW_DEFAULT_MEMORY_POOL"] = "system"  # read when pyarrow is imported
        pa = sys.modules.get("pyarrow")
        if pa is not None:  # already imported with its default pool
            pa.set_memory_pool(pa.system_memory_pool())
    libc = _glibc()
    if libc is None:
        return False
    return preset or libc.mallopt(_M_ARENA_MAX, arenas) == 1


def malloc_arenas() -> int | None:
    """How many malloc arenas glibc has made in this process (``malloc_info``), or None without glibc."""
    libc = _glibc()
    if libc is None:
        return None
    libc.fopen.restype = ctypes.c_void_p
    libc.fopen.argtypes = [ctypes.c_char_p, ctypes.c_char_p]
    libc.fclose.argtypes = [ctypes.c_void_p]
    libc.malloc_info.argtypes = [ctypes.c_int, ctypes.c_void_p]
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "malloc_info.xml"
        fp = libc.fopen(str(path).encode(), b"w")
        if not fp:
            return None
        try:
            libc.malloc_info(0, fp)
        finally:
            libc.fclose(fp)
        return len(re.findall(r'<heap nr="\d+">', path.read_text()))
