"""Log-mel spectrogram kernel: framing, Hann window, |rFFT|^2, sparse mel, log, fused.

Numerically this follows `torchaudio.transforms.MelSpectrogram` (power 2, periodic
Hann window of length n_fft, no normalisation) followed by a log compression.

Layout: frames are processed `LANES` at a time with the frame index innermost
("structure of arrays"), so every butterfly, the mel sums and the window are plain
loops over `LANES` independent frames that LLVM turns into SIMD code. The FFT is
our own Stockham autosort FFT in float32: radix 4 (and one radix 2) for powers of
two, a generic radix-p stage for any other factor, and the usual trick of packing
an even-length real frame into a half-length complex one.

One module for one fused algorithm: the FFT stages, the window, the mel sums and the
driver share a data layout and are only correct together, so they are not split.

Each frame's result depends only on its own n_fft samples: the same operations
run on every lane, fastmath is off (no reassociation or FMA contraction), so a
frame's output is bit-identical whichever chunk, lane or thread computes it.
This is what lets a stream fed in arbitrary blocks reproduce the whole-signal
result exactly.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit, prange

LANES = 16  # frames processed together; one AVX-512 vector of float32

LOG10_1P, LOG, DB, NONE = 0, 1, 2, 3
LOG_MODES = {"log10_1p": LOG10_1P, "log": LOG, "db": DB, "none": NONE}


# --- mel filterbank (numpy, float64, as torchaudio.functional.melscale_fbanks) ---

_F_SP = 200.0 / 3  # slaney: linear below 1 kHz, 200/3 Hz per mel
_MIN_LOG_HZ = 1000.0
_MIN_LOG_MEL = _MIN_LOG_HZ / _F_SP
_LOGSTEP = math.log(6.4) / 27.0


def hz_to_mel(freq: np.ndarray | float, mel_scale: str = "htk") -> np.ndarray:
    """Hz to mel on the "htk" or "slaney" scale."""
    freq = np.asarray(freq, dtype=np.float64)
    if mel_scale == "htk":
        return 2595.0 * np.log10(1.0 + freq / 700.0)
    if mel_scale != "slaney":
        raise ValueError(f"mel_scale must be 'htk' or 'slaney', not {mel_scale!r}")
    log_part = _MIN_LOG_MEL + np.log(np.maximum(freq, _MIN_LOG_HZ) / _MIN_LOG_HZ) / _LOGSTEP
    return np.where(freq >= _MIN_LOG_HZ, log_part, freq / _F_SP)


def mel_to_hz(mels: np.ndarray | float, mel_scale: str = "htk") -> np.ndarray:
    """Mel to Hz, the inverse of `hz_to_mel`."""
    mels = np.asarray(mels, dtype=np.float64)
    if mel_scale == "htk":
        return 700.0 * (10.0 ** (mels / 2595.0) - 1.0)
    if mel_scale != "slaney":
        raise ValueError(f"mel_scale must be 'htk' or 'slaney', not {mel_scale!r}")
    log_part = _MIN_LOG_HZ * np.exp(_LOGSTEP * (np.maximum(mels, _MIN_LOG_MEL) - _MIN_LOG_MEL))
    return np.where(mels >= _MIN_LOG_MEL, log_part, _F_SP * mels)


def mel_filterbank(
    n_freqs: int,
    f_min: float,
    f_max: float,
    n_mels: int,
    sample_rate: int,
    norm: str | None = None,
    mel_scale: str = "htk",
) -> np.ndarray:
    """Triangular mel filterbank, (n_freqs, n_mels) float32, as torchaudio's melscale_fbanks.

    Computed in float64 (torchaudio uses float32), then rounded to float32.
    """
    if norm not in (None, "slaney"):
        raise ValueError(f"norm must be None or 'slaney', not {norm!r}")
    all_freqs = np.linspace(0.0, sample_rate // 2, n_freqs)  # sic: integer Nyquist
    m_pts = np.linspace(hz_to_mel(f_min, mel_scale), hz_to_mel(f_max, mel_scale), n_mels + 2)
    f_pts = mel_to_hz(m_pts, mel_scale)
    f_diff = np.diff(f_pts)
    slopes = f_pts[None, :] - all_freqs[:, None]  # (n_freqs, n_mels + 2)
    down = -slopes[:, :-2] / f_diff[:-1]
    up = slopes[:, 2:] / f_diff[1:]
    fb = np.maximum(0.0, np.minimum(down, up))
    if norm == "slaney":
        fb *= 2.0 / (f_pts[2:] - f_pts[:-2])
    return fb.astype(np.float32)


def sparse_filterbank(fb: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Each mel band's nonzero bins: (first bin, offsets into weights, weights).

    Band j covers bins `lo[j] .. lo[j] + off[j+1] - off[j] - 1` with weights
    `weights[off[j]:off[j+1]]`; an all-zero band has no bins.
    """
    n_mels = fb.shape[1]
    lo = np.zeros(n_mels, dtype=np.int64)
    off = np.zeros(n_mels + 1, dtype=np.int64)
    parts = []
    for j in range(n_mels):
        nz = np.flatnonzero(fb[:, j])
        if nz.size:
            lo[j] = nz[0]
            parts.append(fb[nz[0] : nz[-1] + 1, j])
        else:
            parts.append(fb[:0, j])
        off[j + 1] = off[j] + parts[-1].size
    return lo, off, np.ascontiguousarray(np.concatenate(parts), dtype=np.float32)


def hann_window(n: int) -> np.ndarray:
    """Periodic Hann window of length n, float32, as torch.hann_window(n)."""
    return (0.5 - 0.5 * np.cos(2.0 * np.pi * np.arange(n) / n)).astype(np.float32)


# --- FFT plan (numpy) ---


def _radices(n: int) -> list[int]:
    """Stage radices of an n-point FFT: 4s first, then a 2, then odd factors."""
    out = []
    while n % 4 == 0:
        out.append(4)
        n //= 4
    if n % 2 == 0:
        out.append(2)
        n //= 2
    p = 3
    while n > 1:
        while n % p == 0:
            out.append(p)
            n //= p
        p += 2
    return out


def fft_plan(n_fft: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Plan for the power spectrum of an n_fft-point real frame.

    Returns (radices, roots, post): the complex FFT has m = n_fft // 2 points
    (n_fft even: real frame packed as even + i*odd samples) or m = n_fft (odd);
    roots[:, r] = exp(-2 pi i r / m) covers every twiddle of every stage;
    post[:, k] = exp(-2 pi i k / n_fft), k <= m, unpacks the packed spectrum.
    """
    m = n_fft // 2 if n_fft % 2 == 0 else n_fft
    r = np.arange(m) / m
    roots = np.stack([np.cos(2 * np.pi * r), -np.sin(2 * np.pi * r)])
    k = np.arange(m + 1) / n_fft
    post = np.stack([np.cos(2 * np.pi * k), -np.sin(2 * np.pi * k)])
    radices = np.array(_radices(m), dtype=np.int64)
    return radices, roots.astype(np.float32), post.astype(np.float32)


# --- Numba kernel ---
#
# Buffers hold one row of LANES floats per FFT point: element (point n, frame f)
# sits at n * LANES + f. Indices are unsigned (np.uint64) so numba emits no
# negative-index wraparound, and lane loops run to `_lanes(buf)`, a value LLVM
# can bound by LANES: both are needed for LLVM to turn lane loops into single
# SIMD iterations (measured: 5-10x on the FFT stages).

U = np.uint64
_L = U(LANES)


@njit(cache=True, error_model="numpy", inline="always")
def _lanes(buf):
    """LANES (every buffer is longer), as a runtime value LLVM knows is <= LANES."""
    return min(U(buf.shape[0]), _L)


@njit(cache=True, error_model="numpy")
def _load(x, start, hop, nv, window, packed, ar, ai):
    """Window frames start + f * hop (f < LANES) into the lanes of (ar, ai).

    Even n_fft: sample pairs packed as (even, odd) = (re, im), n_fft // 2 points;
    odd n_fft: (sample, 0). Lanes f >= nv repeat frame nv - 1 (discarded later).
    """
    nl = _lanes(ar)
    offs = np.empty(LANES, np.uint64)
    for f in range(LANES):
        offs[f] = U(start + min(f, nv - 1) * hop)
    if packed:
        for n in range(U(window.shape[0] // 2)):
            we, wo = window[U(2) * n], window[U(2) * n + U(1)]
            row = n * _L
            for f in range(nl):
                ar[row + f] = x[offs[f] + U(2) * n] * we
                ai[row + f] = x[offs[f] + U(2) * n + U(1)] * wo
    else:
        for n in range(U(window.shape[0])):
            w = window[n]
            row = n * _L
            for f in range(nl):
                ar[row + f] = x[offs[f] + n] * w
                ai[row + f] = 0.0


@njit(cache=True, error_model="numpy")
def _radix4_first(xr, xi, yr, yi, n, roots):
    """First radix-4 Stockham stage (stride 1): one SIMD lane loop per butterfly."""
    m = n // 4
    step = roots.shape[1] // n
    nl = _lanes(xr)
    for k in range(m):
        w1r, w1i = roots[0, k * step], roots[1, k * step]
        w2r, w2i = roots[0, 2 * k * step], roots[1, 2 * k * step]
        w3r, w3i = roots[0, 3 * k * step], roots[1, 3 * k * step]
        i0 = U(k) * _L
        i1 = U(k + m) * _L
        i2 = U(k + 2 * m) * _L
        i3 = U(k + 3 * m) * _L
        o0 = U(4 * k) * _L
        o1, o2, o3 = o0 + _L, o0 + U(2) * _L, o0 + U(3) * _L
        for r in range(nl):
            a0r, a0i = xr[i0 + r], xi[i0 + r]
            a1r, a1i = xr[i1 + r], xi[i1 + r]
            a2r, a2i = xr[i2 + r], xi[i2 + r]
            a3r, a3i = xr[i3 + r], xi[i3 + r]
            t0r, t0i = a0r + a2r, a0i + a2i
            t1r, t1i = a0r - a2r, a0i - a2i
            t2r, t2i = a1r + a3r, a1i + a3i
            t3r, t3i = a1i - a3i, a3r - a1r  # (a1 - a3) * -i
            yr[o0 + r] = t0r + t2r
            yi[o0 + r] = t0i + t2i
            c1r, c1i = t1r + t3r, t1i + t3i
            c2r, c2i = t0r - t2r, t0i - t2i
            c3r, c3i = t1r - t3r, t1i - t3i
            yr[o1 + r] = c1r * w1r - c1i * w1i
            yi[o1 + r] = c1r * w1i + c1i * w1r
            yr[o2 + r] = c2r * w2r - c2i * w2i
            yi[o2 + r] = c2r * w2i + c2i * w2r
            yr[o3 + r] = c3r * w3r - c3i * w3i
            yi[o3 + r] = c3r * w3i + c3i * w3r


@njit(cache=True, error_model="numpy")
def _radix4(xr, xi, yr, yi, n, s, roots):
    """Radix-4 Stockham stage of stride s, one output leg u per pass.

    One write stream per array and loop: with four, LLVM's hoisted alias checks
    see overlapping ranges and fall back to scalar code.
    """
    m = n // 4
    step = roots.shape[1] // n
    span = U(s) * _L
    for u in range(4):
        for k in range(m):
            wr, wi = roots[0, u * k * step], roots[1, u * k * step]
            i0 = U(k) * span
            i1 = U(k + m) * span
            i2 = U(k + 2 * m) * span
            i3 = U(k + 3 * m) * span
            o = U(4 * k + u) * span
            if u == 0:
                for r in range(span):
                    yr[o + r] = (xr[i0 + r] + xr[i2 + r]) + (xr[i1 + r] + xr[i3 + r])
                    yi[o + r] = (xi[i0 + r] + xi[i2 + r]) + (xi[i1 + r] + xi[i3 + r])
            elif u == 1:
                for r in range(span):
                    cr = (xr[i0 + r] - xr[i2 + r]) + (xi[i1 + r] - xi[i3 + r])
                    ci = (xi[i0 + r] - xi[i2 + r]) + (xr[i3 + r] - xr[i1 + r])
                    yr[o + r] = cr * wr - ci * wi
                    yi[o + r] = cr * wi + ci * wr
            elif u == 2:
                for r in range(span):
                    cr = (xr[i0 + r] + xr[i2 + r]) - (xr[i1 + r] + xr[i3 + r])
                    ci = (xi[i0 + r] + xi[i2 + r]) - (xi[i1 + r] + xi[i3 + r])
                    yr[o + r] = cr * wr - ci * wi
                    yi[o + r] = cr * wi + ci * wr
            else:
                for r in range(span):
                    cr = (xr[i0 + r] - xr[i2 + r]) - (xi[i1 + r] - xi[i3 + r])
                    ci = (xi[i0 + r] - xi[i2 + r]) - (xr[i3 + r] - xr[i1 + r])
                    yr[o + r] = cr * wr - ci * wi
                    yi[o + r] = cr * wi + ci * wr


@njit(cache=True, error_model="numpy")
def _radix2(xr, xi, yr, yi, n, s, roots):
    """Radix-2 Stockham stage of stride s, one output leg per pass."""
    m = n // 2
    step = roots.shape[1] // n
    span = U(s) * _L
    for k in range(m):
        i0 = U(k) * span
        i1 = U(k + m) * span
        o = U(2 * k) * span
        for r in range(span):
            yr[o + r] = xr[i0 + r] + xr[i1 + r]
            yi[o + r] = xi[i0 + r] + xi[i1 + r]
    for k in range(m):
        wr, wi = roots[0, k * step], roots[1, k * step]
        i0 = U(k) * span
        i1 = U(k + m) * span
        o = U(2 * k + 1) * span
        for r in range(span):
            dr = xr[i0 + r] - xr[i1 + r]
            di = xi[i0 + r] - xi[i1 + r]
            yr[o + r] = dr * wr - di * wi
            yi[o + r] = dr * wi + di * wr


@njit(cache=True, error_model="numpy")
def _radix_p(xr, xi, yr, yi, n, s, p, roots):
    """Stockham stage of any radix p: a direct p-point DFT per butterfly, O(p^2)."""
    m = n // p
    size = roots.shape[1]
    step = size // n
    pstep = size // p
    span = U(s) * _L
    for k in range(m):
        for u in range(p):
            o = U(p * k + u) * span
            for r in range(span):
                yr[o + r] = 0.0
                yi[o + r] = 0.0
            for j in range(p):
                cr = roots[0, (j * u % p) * pstep]
                ci = roots[1, (j * u % p) * pstep]
                i = U(k + j * m) * span
                for r in range(span):
                    yr[o + r] += xr[i + r] * cr - xi[i + r] * ci
                    yi[o + r] += xr[i + r] * ci + xi[i + r] * cr
            wr, wi = roots[0, k * u * step], roots[1, k * u * step]
            for r in range(span):
                ar, ai = yr[o + r], yi[o + r]
                yr[o + r] = ar * wr - ai * wi
                yi[o + r] = ar * wi + ai * wr


@njit(cache=True, error_model="numpy")
def _fft(ar, ai, br, bi, radices, roots):
    """Stockham FFT of the lanes in (ar, ai); returns 0 if the result is in a, 1 if in b."""
    n = roots.shape[1]
    s = 1
    where = 0
    for p in radices:
        if where == 0:
            xr, xi, yr, yi = ar, ai, br, bi
        else:
            xr, xi, yr, yi = br, bi, ar, ai
        if p == 4 and s == 1:
            _radix4_first(xr, xi, yr, yi, n, roots)
        elif p == 4:
            _radix4(xr, xi, yr, yi, n, s, roots)
        elif p == 2:
            _radix2(xr, xi, yr, yi, n, s, roots)
        else:
            _radix_p(xr, xi, yr, yi, n, s, p, roots)
        n //= p
        s *= p
        where = 1 - where
    return where


@njit(cache=True, error_model="numpy")
def _power(zr, zi, packed, post, pw):
    """|X[k]|^2, k <= n_fft // 2, from the complex FFT z (unpacked if packed)."""
    m = post.shape[1] - 1
    if not packed:
        for i in range(U(post.shape[1]) * _L):
            pw[i] = zr[i] * zr[i] + zi[i] * zi[i]
        return
    nl = _lanes(zr)
    half = np.float32(0.5)
    for k in range(m + 1):
        i1 = U(k % m) * _L
        i2 = U((m - k) % m) * _L
        o = U(k) * _L
        wr, wi = post[0, k], post[1, k]
        for f in range(nl):
            ar, ai = zr[i1 + f], zi[i1 + f]
            br, bi = zr[i2 + f], zi[i2 + f]
            er = half * (ar + br)
            ei = half * (ai - bi)
            odr = half * (ai + bi)
            odi = half * (br - ar)
            xr = er + (wr * odr - wi * odi)
            xi = ei + (wr * odi + wi * odr)
            pw[o + f] = xr * xr + xi * xi


@njit(cache=True, error_model="numpy")
def _mel(pw, band_lo, band_off, weights, mel):
    """Sparse mel sums of the power lanes."""
    nl = _lanes(pw)
    for j in range(band_lo.shape[0]):
        o = U(j) * _L
        for f in range(nl):
            mel[o + f] = 0.0
        for b in range(band_off[j], band_off[j + 1]):
            w = weights[b]
            i = U(band_lo[j] + b - band_off[j]) * _L
            for f in range(nl):
                mel[o + f] += w * pw[i + f]


# ln on float32 bits: x = 2^e * m, m in [sqrt(1/2), sqrt(2)), ln m = 2 atanh(z) with
# z = (m - 1) / (m + 1), |z| < 0.172, by its series to z^9 (truncation < 1e-9).
# Vectorises (libm's logf does not); within 2 ulp of logf. ln 2 is split in a
# float32 head and a tail so e * ln 2 keeps full precision.
_SQRT2 = np.float32(math.sqrt(2.0))
_LN2_HI = np.float32(math.log(2.0))
_LN2_LO = np.float32(math.log(2.0) - float(np.float32(math.log(2.0))))
_INV_LN10 = np.float32(1.0 / math.log(10.0))
_DB_PER_LN = np.float32(10.0 / math.log(10.0))
_C3, _C5, _C7, _C9 = (np.float32(2.0 / k) for k in (3, 5, 7, 9))


@njit(cache=True, error_model="numpy")
def _ln_inplace(v, mant_bits):
    """v <- ln(v); mant_bits: int32 scratch of v's size.

    Positive normal finite inputs take the vectorised path; zeros, negatives,
    subnormals, inf and NaN (marked by a zero in mant_bits) fall back to np.log.
    """
    bits = v.view(np.int32)
    mant = mant_bits.view(np.float32)
    for i in range(U(v.shape[0])):
        b = bits[i]
        normal = (b > 0x007FFFFF) & (b < 0x7F800000)
        mant_bits[i] = ((b & 0x007FFFFF) | 0x3F800000) if normal else 0
    for i in range(U(v.shape[0])):
        e = np.float32((bits[i] >> 23) - 127)
        m = mant[i]
        big = m > _SQRT2
        m = m * np.float32(0.5) if big else m
        e = e + np.float32(1.0) if big else e
        z = (m - np.float32(1.0)) / (m + np.float32(1.0))
        z2 = z * z
        p = z * (np.float32(2.0) + z2 * (_C3 + z2 * (_C5 + z2 * (_C7 + z2 * _C9))))
        ln = e * _LN2_HI + (e * _LN2_LO + p)
        v[i] = ln if mant_bits[i] != 0 else v[i]
    for i in range(v.shape[0]):
        if mant_bits[i] == 0:
            v[i] = np.log(v[i])


@njit(cache=True, error_model="numpy")
def _compress(mel, mode, gain, floor, scratch):
    """Log compression in place (see LOG_MODES); scratch: int32 of mel's size."""
    if mode == NONE:
        return
    n = U(mel.shape[0])
    if mode == LOG10_1P:
        for i in range(n):
            mel[i] = np.float32(1.0) + gain * mel[i]
    elif mode == LOG:
        for i in range(n):
            mel[i] = mel[i] + floor
    else:
        for i in range(n):
            mel[i] = max(mel[i], floor)
    _ln_inplace(mel, scratch)
    scale = _INV_LN10 if mode == LOG10_1P else _DB_PER_LN if mode == DB else np.float32(1.0)
    for i in range(n):
        mel[i] *= scale


@njit(cache=True, error_model="numpy")
def _chunks(
    x, first, hop, window, radices, roots, post, band_lo, band_off, weights, mode, gain,
    floor, out, c0, c1,
):  # fmt: skip
    """Frames of chunks c0..c1-1 (LANES frames each) into out, with private scratch."""
    n_frames, n_mels = out.shape
    m = roots.shape[1]
    packed = m * 2 == window.shape[0]
    size = (m + 1) * LANES
    ar = np.empty(size, np.float32)
    ai = np.empty(size, np.float32)
    br = np.empty(size, np.float32)
    bi = np.empty(size, np.float32)
    mel = np.empty(n_mels * LANES, np.float32)
    scratch = np.empty(n_mels * LANES, np.int32)
    for c in range(c0, c1):
        t0 = c * LANES
        nv = min(LANES, n_frames - t0)
        _load(x, first + t0 * hop, hop, nv, window, packed, ar, ai)
        if _fft(ar, ai, br, bi, radices, roots) == 0:
            _power(ar, ai, packed, post, br)
            _mel(br, band_lo, band_off, weights, mel)
        else:
            _power(br, bi, packed, post, ar)
            _mel(ar, band_lo, band_off, weights, mel)
        _compress(mel, mode, gain, floor, scratch)
        for f in range(nv):
            for j in range(n_mels):
                out[t0 + f, j] = mel[j * LANES + f]


@njit(cache=True, error_model="numpy", parallel=True)
def log_mel_frames(
    x, first, hop, window, radices, roots, post, band_lo, band_off, weights, mode, gain,
    floor, out, n_workers,
):  # fmt: skip
    """Log-mel of frames `x[first + t * hop : first + t * hop + n_fft]` into out[t].

    x: float32 samples; out: float32 (n_frames, n_mels), written in place.
    window, radices/roots/post (`fft_plan`), band_lo/band_off/weights
    (`sparse_filterbank`) describe the spec; mode is one of LOG_MODES' values,
    gain and floor float32. n_workers threads (at most numba.get_num_threads())
    share the chunks of LANES frames; with 1, the call costs ~1 us more than a
    plain loop, so there is no separate serial entry point (one less compile).
    """
    n_frames = out.shape[0]
    last = first + (n_frames - 1) * hop + window.shape[0]
    if n_frames > 0 and (first < 0 or last > x.shape[0]):
        raise ValueError("frames reach outside x")
    n_chunks = (n_frames + LANES - 1) // LANES
    n_workers = max(1, min(n_workers, n_chunks))
    for w in prange(n_workers):
        c0 = w * n_chunks // n_workers
        c1 = (w + 1) * n_chunks // n_workers
        _chunks(
            x, first, hop, window, radices, roots, post, band_lo, band_off, weights, mode,
            gain, floor, out, c0, c1,
        )  # fmt: skip
