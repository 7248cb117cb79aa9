"""Compiled inner loop of :class:`subsetsearch.EnsembleStats` (Numba, no PyTorch).

Why Numba: a plain NumPy member update makes ~10 passes over each [n, C]
chunk (min, row sums, clamp, log, product-sum, scale, cast, add, argmax) and
NumPy's float32 log and float16 casts are scalar on AVX2 machines; measured on
2 cores (N=100k, C=100, float32) that was ~8x the time of merely summing the
bytes, against ~3x for this two-pass loop (``benchmarks/acquisition_scaling.py``).

Accumulators are integers (fixed point), so adding members is exact,
associative and commutative: shards and workers merge bit for bit, and a
member whose rows turn out to be invalid is subtracted back exactly.
"""

from __future__ import annotations

import math

import numba
import numpy as np
from llvmlite import ir
from numba import njit, prange, types
from numba.extending import intrinsic, overload

# Numba's own thread pool, not OpenMP's: its OpenMP layer resets the process's OpenMP thread
# count, so after the first parallel kernel torch trained with every core whatever
# train.threads said (measured: torch.get_num_threads() went from 1 to 2), and a run's later
# models differed from the same models trained in a fresh process.
if numba.config.THREADING_LAYER == "default":
    numba.config.THREADING_LAYER = "workqueue"

#: Probabilities are summed as round-toward-zero multiples of 2**-30; the
#: int32 step keeps the float->int conversion vectorised on AVX2 (no packed
#: float->int64 convert there) and p <= 1 never overflows it.
PROBABILITY_SCALE = 2.0**30
#: Member entropies (<= log C) are summed as rounded multiples of 2**-32.
ENTROPY_SCALE = 2.0**32

_FASTMATH = {"reassoc", "contract", "nsz", "arcp"}  # no nnan/ninf: NaN must be seen
_LN2 = np.float32(math.log(2.0))
_SQRT_HALF_BITS = np.int32(0x3F3504F3)  # bit pattern of float32 sqrt(0.5)
_TINY32 = np.float32(np.finfo(np.float32).tiny)
_LN2_64 = math.log(2.0)
_TINY64 = np.finfo(np.float64).tiny
_SQRT_HALF_BITS64 = np.int64(0x3FE6A09E667F3BCD)  # bit pattern of float64 sqrt(0.5)


def _bitcast(source, target, llvm_target):
    """A compiled reinterpretation of a value's bits as another type of the same width."""

    @intrinsic
    def bitcast(typingctx, x):
        def codegen(context, builder, signature, args):
            return builder.bitcast(args[0], llvm_target)

        return target(source), codegen

    return bitcast


_float32_bits = _bitcast(types.float32, types.int32, ir.IntType(32))
_bits_float32 = _bitcast(types.int32, types.float32, ir.FloatType())
_float64_bits = _bitcast(types.float64, types.int64, ir.IntType(64))
_bits_float64 = _bitcast(types.int64, types.float64, ir.DoubleType())


@intrinsic
def _half_bits_to_float32(typingctx, x):
    # float16 arrays arrive as their uint16 view; fpext vectorises to F16C.
    def codegen(context, builder, signature, args):
        return builder.fpext(builder.bitcast(args[0], ir.HalfType()), ir.FloatType())

    return types.float32(types.uint16), codegen


@njit(inline="always", fastmath=_FASTMATH, error_model="numpy")
def _log_float32(x):
    """log(x) for positive normal float32, relative error < 3e-7, vectorisable.

    Measured over [1e-38, 1]: |error| * x < 5e-8, so each p log p term of an
    entropy is off by less than that.

    x = 2**e * m with m in [sqrt(1/2), sqrt(2)); log m = 2 atanh(t),
    t = (m - 1) / (m + 1), |t| < 0.172, series to t**9.
    """
    bits = _float32_bits(x)
    exponent = (bits - _SQRT_HALF_BITS) >> 23
    m = _bits_float32(bits - (exponent << 23))
    t = (m - np.float32(1.0)) / (m + np.float32(1.0))
    t2 = t * t
    series = np.float32(1.0) + t2 * (
        np.float32(1 / 3) + t2 * (np.float32(1 / 5) + t2 * (np.float32(1 / 7) + t2 * np.float32(1 / 9)))
    )
    return np.float32(exponent) * _LN2 + np.float32(2.0) * t * series


@njit(inline="always", fastmath=_FASTMATH, error_model="numpy")
def _log_float64(x):
    """log(x) for positive normal float64, |error| < 1e-15, vectorisable (libm's log is not).

    The same reduction as ``_log_float32``; |t| < 0.172 makes the series to
    t**21 exact to double precision (0.0295**10 / 21 < 1e-16).
    """
    bits = _float64_bits(x)
    exponent = (bits - _SQRT_HALF_BITS64) >> 52
    m = _bits_float64(bits - (exponent << 52))
    t = (m - 1.0) / (m + 1.0)
    t2 = t * t
    series = 1.0 + t2 * (
        1 / 3
        + t2
        * (
            1 / 5
            + t2
            * (
                1 / 7
                + t2 * (1 / 9 + t2 * (1 / 11 + t2 * (1 / 13 + t2 * (1 / 15 + t2 * (1 / 17 + t2 * (1 / 19 + t2 / 21))))))
            )
        )
    )
    return np.float64(exponent) * _LN2_64 + 2.0 * t * series


def _load(x):  # pragma: no cover - replaced by the overload inside compiled code
    raise NotImplementedError


@overload(_load, inline="always")
def _load_overload(x):
    if x == types.uint16:
        return lambda x: _half_bits_to_float32(x)
    return lambda x: x


def _like(x, value):  # pragma: no cover - replaced by the overload inside compiled code
    raise NotImplementedError


@overload(_like, inline="always")
def _like_overload(x, value):
    """``value`` in the precision of ``x`` (a loaded probability: float32 or float64)."""
    if x == types.float64:
        return lambda x, value: np.float64(value)
    return lambda x, value: np.float32(value)


def _vote_key(raw, c, num_classes):  # pragma: no cover - replaced by the overload inside compiled code
    raise NotImplementedError


@overload(_vote_key, inline="always")
def _vote_key_overload(raw, c, num_classes):
    if raw == types.float64:
        return lambda raw, c, num_classes: _float64_bits(raw)
    # 16/32-bit values: bits that order non-negative floats as their values do,
    # above the reversed class index, so the largest key is the largest value's
    # lowest class (ties -> lowest class)
    if raw == types.uint16:  # float16 bits
        return lambda raw, c, num_classes: (np.int64(raw) << 32) | (num_classes - 1 - c)
    return lambda raw, c, num_classes: (np.int64(_float32_bits(raw)) << 32) | (num_classes - 1 - c)


def _vote(top, row, num_classes):  # pragma: no cover - replaced by the overload inside compiled code
    raise NotImplementedError


@overload(_vote, inline="always")
def _vote_overload(top, row, num_classes):
    if row.dtype == types.float64:  # 64-bit keys leave no room for the index: find the first maximum

        def first_maximum(top, row, num_classes):
            for c in range(num_classes):
                if _float64_bits(row[c]) == top:
                    return c
            return 0

        return first_maximum
    return lambda top, row, num_classes: num_classes - 1 - (top & 0xFFFFFFFF)


def _log(x):  # pragma: no cover - replaced by the overload inside compiled code
    raise NotImplementedError


@overload(_log, inline="always")
def _log_overload(x):
    if x == types.float32:
        return lambda x: _log_float32(x)
    return lambda x: _log_float64(x)


@njit(inline="always", fastmath=_FASTMATH, error_model="numpy")
def _step(x):
    """A probability in rounded steps of 2**-30 (exact: the product by 2**30 is)."""
    return np.int64(np.int32(x * np.float32(PROBABILITY_SCALE) + np.float32(0.5)))


@njit(inline="always", fastmath=_FASTMATH, error_model="numpy")
def _checked_row(row, tolerance, squares):
    """(ok, total, top, square) of one member's row: ok when every value is in [0, 1 + tolerance]
    (NaN fails) and the values sum to 1 within ``tolerance``; total, their sum in rounded steps of
    2**-30 (an integer sum: the same whatever order the vector code adds the terms in); top, the
    largest ``_vote_key`` (the row's vote, ties to the lowest class, through ``_vote``); square,
    with ``squares`` (a compile-time constant), the exact sum of the squares of those rounded
    steps (<= total**2 < 2**61), else 0."""
    num_classes = row.shape[0]
    limit = np.float32(1.0) + np.float32(tolerance)
    total = np.int64(0)  # unbiased (rounded, not truncated) terms: the divisor of the row
    square = np.int64(0)
    invalid = 0
    top = _vote_key(row[0], 0, num_classes)
    for c in range(num_classes):
        x = _load(row[c])
        valid = x >= 0 and x <= limit  # NaN fails both
        invalid += 0 if valid else 1
        step = _step(x if valid else _like(x, 0.0))
        total += step
        if squares:
            square += step * step
        top = max(top, _vote_key(row[c], c, num_classes))
    ok = invalid == 0 and abs(total - PROBABILITY_SCALE) <= tolerance * PROBABILITY_SCALE
    return ok, total, top, square


@njit(parallel=True, fastmath=_FASTMATH, error_model="numpy", cache=True)
def accumulate(probs, rows, scale, tolerance, sum_fixed, entropy_fixed, votes, counts, bad):
    """Add (scale > 0) or subtract (scale < 0) one member's rows.

    probs : (n, C) float32, float64, or uint16 holding float16 bits.
    rows : (n,) int64, distinct target rows.
    scale : float32, +PROBABILITY_SCALE to add, -PROBABILITY_SCALE to subtract.
    A row whose values are NaN/inf, negative, or do not sum to 1 within
    ``tolerance`` is left untouched and flagged in ``bad``; the others are
    divided by their sum before they are added.

    Each pass over a row is a loop LLVM vectorises: no float min/max
    reductions (they need no-NaN semantics) and no argmax scan (a scalar
    loop; it cost 0.4 ns an element, a third of the total): the vote comes
    from an integer maximum over ``_vote_key``.

    Every sum over a row's classes is a sum of integers (each term rounded to fixed point first),
    so its value does not depend on the order the terms are added in. A float sum would: LLVM
    reassociates it for the vector width it picks, which differs between CPUs and, for the same
    CPU, between a fresh compile and numba's cached one (seen: the float32 statistics of the
    same members differed in their last bits between the two). With integer sums the statistics
    of given predictions are the same bits on every machine (tests/test_kernels.py), and the
    rounded (not truncated) row total keeps the normalisation unbiased
    (benchmarks/results/kernel_change.json: entropies within 3e-7 nats of float64 for float32
    members).
    """
    n, num_classes = probs.shape
    sign = 1 if scale > 0 else -1
    half = np.float32(0.5) if scale > 0 else np.float32(-0.5)
    for i in prange(n):
        row = rows[i]
        ok, total, top, _ = _checked_row(probs[i], tolerance, False)
        if not ok:
            bad[i] = True
            continue
        bad[i] = False
        # renormalise: stored probabilities sum to 1 only to their precision
        # (float16: ~1e-3), and H <= log C holds only for a distribution
        inverse = _like(_load(probs[i, 0]), PROBABILITY_SCALE / total)
        entropy = np.int64(0)  # the member's entropy, in steps of 2**-32
        for c in range(num_classes):
            x = _load(probs[i, c]) * inverse
            # max(x, tiny): 0 * log(tiny) = 0 gives 0 log 0 = 0 without a branch; each term
            # -x log x <= 1/e fits an int32 in steps of 2**-32 (rounded: add 0.5, truncate)
            entropy += np.int64(np.int32(x * _log(max(x, _TINY32)) * np.float32(-ENTROPY_SCALE) + np.float32(0.5)))
        for c in range(num_classes):
            # round half away from zero, so subtracting undoes adding exactly
            sum_fixed[row, c] += np.int64(np.int32(_load(probs[i, c]) * inverse * scale + half))
        vote = _vote(top, probs[i], num_classes)
        entropy_fixed[row] += sign * max(entropy, np.int64(0))
        votes[row, vote] += sign
        counts[row] += sign


#: Terms of H[p̄] are summed as rounded multiples of 2**-40 (1e-12 nats a term): each -p log p <= 1/e,
#: so an int64 holds the sum of up to 2**24 classes.
_MEAN_ENTROPY_SCALE = 2.0**40


@njit(parallel=True, fastmath=_FASTMATH, error_model="numpy", cache=True)
def entropy_of_mean(sum_fixed, counts, out):
    """out[i] = H[p̄_i] from fixed-point sums (n, C) and member counts (n,); NaN where counts is 0.

    The terms are summed as integers (see ``accumulate``), so the result is the same bits
    whatever order the vector code adds them in."""
    n, num_classes = sum_fixed.shape
    for i in prange(n):
        if counts[i] == 0:
            out[i] = np.nan
            continue
        scale = 1.0 / (counts[i] * PROBABILITY_SCALE)
        total = np.int64(0)
        for c in range(num_classes):
            p = sum_fixed[i, c] * scale
            total += np.int64(p * _log_float64(max(p, _TINY64)) * -_MEAN_ENTROPY_SCALE + 0.5)
        out[i] = total / _MEAN_ENTROPY_SCALE


# ------------------------------------------------------------------ training dynamics
#: Squares of the label's probability are summed over members in rounded steps of 2**-40.
TRUE_SQUARE_SCALE = 2.0**40


@njit(parallel=True, fastmath=_FASTMATH, error_model="numpy", cache=True)
def member_terms(probs, labels, tolerance, true_fixed, distance_fixed, correct, bad):
    """Per row of one member: the label's probability, the distance to the label, right or not.

    probs : (n, C) float32, float64, or uint16 holding float16 bits; labels : (n,) int64.
    true_fixed : (n,) int64 out, p[y] of the row divided by its sum, in rounded steps of 2**-30.
    distance_fixed : (n,) int64 out, ||p - onehot(y)||_2 in rounded steps of 2**-30 (EL2N).
    correct : (n,) bool out, the row's argmax (ties to the lowest class) is y.
    bad : (n,) bool out, the row is not a probability vector (same rule as ``accumulate``).

    One pass over the row: with q the row's values in rounded steps of 2**-30 (``_checked_row``),
    T = sum q and S = sum q**2 (exact integers),

        ||q / T - onehot(y)||**2 = (S - q_y**2 + (T - q_y)**2) / T**2,

    an exact integer over T**2, so the terms' order does not matter and the result is the same
    bits on every CPU. Each q_c is within 1/2 of x_c 2**30 and T within C/2 of (sum x) 2**30, so
    q / T is within (C + sqrt C) 2**-31 (Euclidean) of the row divided by its exact sum, and so is
    the distance (triangle inequality), before its own rounding step of 2**-31.
    """
    n, num_classes = probs.shape
    for i in prange(n):
        ok, total, top, square = _checked_row(probs[i], tolerance, True)
        if not ok:
            bad[i] = True
            continue
        bad[i] = False
        label = labels[i]
        true = np.float64(_load(probs[i, label])) * (PROBABILITY_SCALE / total)
        true_fixed[i] = np.int64(true * PROBABILITY_SCALE + 0.5)
        step = _step(_load(probs[i, label]))
        rest = total - step
        numerator = square - step * step + rest * rest
        distance_fixed[i] = np.int64(math.sqrt(np.float64(numerator)) / total * PROBABILITY_SCALE + 0.5)
        correct[i] = _vote(top, probs[i], num_classes) == label


@njit(cache=True)
def _window_std(values, start, count, last):
    """Population std of values[start:start+count] followed by ``last``; a fixed order of additions."""
    length = count + 1
    total = last
    for j in range(count):
        total += values[start + j]
    mean = total / length
    square = (last - mean) * (last - mean)
    for j in range(count):
        square += (values[start + j] - mean) * (values[start + j] - mean)
    return math.sqrt(square / length)


@njit(parallel=True, cache=True)
def add_member(
    rows, true_fixed, distance_fixed, correct, positions, ordered,
    counts, distance_sum, true_sum, true_square_sum,
    first_position, last_position, forgets, first_correct, last_correct, ever_correct,
    head, recent, window_fixed, windows,
):  # fmt: skip
    """Fold one member's ``member_terms`` into the accumulator's per-row arrays, in one pass.

    rows : (n,) int64, distinct (so the rows are split between threads without races).
    true_fixed, distance_fixed, correct : (n,) the member's terms; positions : (n,) int64.
    counts, distance_sum, true_sum, true_square_sum : (N,) int64 sums (squares of the label's
    probability in rounded steps of 2**-40, rounded half to even).
    With ``ordered``, also: first/last position and correctness, forgetting events, whether ever
    right, and Dyn-Unc's windows: head, recent (N, J - 1) float64, the row's first and last
    ``J - 1`` values, oldest first; window_fixed, the sum of every full window's std in rounded
    steps of 2**-30; windows, their number. Without it those arrays are not touched.
    No fastmath: the square is rounded as NumPy rounds ``true * true * 2**40``.
    """
    span = recent.shape[1]  # J - 1
    for i in prange(rows.size):
        row = rows[i]
        true = true_fixed[i] / PROBABILITY_SCALE  # exact: a multiple of 2**-30
        distance_sum[row] += distance_fixed[i]
        true_sum[row] += true_fixed[i]
        true_square_sum[row] += np.int64(np.rint(true * true * TRUE_SQUARE_SCALE))
        if ordered:
            count = counts[row]  # members before this one
            if count < span:
                head[row, count] = true
                recent[row, count] = true
            else:
                std = _window_std(recent[row], 0, span, true)
                window_fixed[row] += np.int64(std * PROBABILITY_SCALE + 0.5)
                windows[row] += 1
                for j in range(span - 1):
                    recent[row, j] = recent[row, j + 1]
                if span > 0:
                    recent[row, span - 1] = true
            right = correct[i]
            if first_position[row] < 0:
                first_correct[row] = right
                first_position[row] = positions[i]
            elif last_correct[row] and not right:
                forgets[row] += 1
            last_correct[row] = right
            last_position[row] = positions[i]
            ever_correct[row] = ever_correct[row] or right
        counts[row] += 1


@njit(cache=True)
def join_windows(rows, first_head, first_recent, first_held, second_head, second_recent, second_held, out):
    """Where a stream of members is joined to the one after it: per row, the windows that span the
    join, and the joined stream's first and last ``J - 1`` values.

    out : (n, 3 + 2 (J - 1)) float64 per row: [std sum in steps of 2**-30, windows, unused,
    head..., recent...] (the std sum is an exact integer below 2**53).
    """
    span = first_head.shape[1]
    joined = np.empty(4 * span + 2)
    for i in range(rows.size):
        a, b = rows[i], i
        count_a, count_b = first_held[a], second_held[b]
        tail_a = min(count_a, span)
        head_b = min(count_b, span)
        # the last values of the first stream, then the first values of the second
        for j in range(tail_a):
            joined[j] = first_recent[a, j]
        for j in range(head_b):
            joined[tail_a + j] = second_head[b, j]
        total = np.int64(0)
        count = 0
        length = tail_a + head_b
        for start in range(tail_a):  # windows of J values that begin in the first stream ...
            end = start + span  # ... and end (inclusive) in the second
            if end < tail_a or end >= length:
                continue
            std = _window_std(joined, start, span, joined[end])
            total += np.int64(std * PROBABILITY_SCALE + 0.5)
            count += 1
        out[i, 0] = total
        out[i, 1] = count
        # first J - 1 of the joined stream
        filled = 0
        for j in range(min(count_a, span)):
            out[i, 3 + filled] = first_head[a, j]
            filled += 1
        for j in range(min(count_b, span - filled)):
            out[i, 3 + filled] = second_head[b, j]
            filled += 1
        # last J - 1 of the joined stream: the second's own when it holds J - 1, else topped up
        if count_b >= span:
            for j in range(span):
                out[i, 3 + span + j] = second_recent[b, j]
        else:
            keep = min(count_a, span - count_b)  # of the first stream's last values
            for j in range(keep):
                out[i, 3 + span + j] = first_recent[a, tail_a - keep + j]
            for j in range(count_b):
                out[i, 3 + span + keep + j] = second_recent[b, j]
