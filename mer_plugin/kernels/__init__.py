"""Numba kernels: pure functions over arrays (no I/O, no torch, no globals)."""
