"""The signals that stop mer (Ctrl-C, SIGTERM), and when a handler must not raise.

A handler must not raise while C or C++ code has called back into Python: torch's import
runs Python code called from C++, and an exception raised there aborts the whole process
("terminate called after throwing an instance of 'pybind11::error_already_set'"); LLVM
calls llvmlite's object-cache callbacks through ctypes while Numba compiles, and an
exception there is printed and lost."""

from __future__ import annotations

import os
import signal
from types import FrameType

import llvmlite

SIGNALS = (signal.SIGINT, signal.SIGTERM)
# where code called back from C runs: the import machinery, llvmlite's ctypes callbacks
_CALLED_FROM_C = ("<frozen importlib", os.path.dirname(llvmlite.__file__) + os.sep)


def unsafe_to_raise(frame: FrameType | None) -> bool:
    """Whether `frame` (a signal handler's) runs inside an import or a callback from C."""
    while frame is not None:
        if frame.f_code.co_filename.startswith(_CALLED_FROM_C):
            return True
        frame = frame.f_back
    return False
