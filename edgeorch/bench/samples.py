"""A run's timed inferences, kept compactly and summarised on the board.

A 4 µs model times over a million inferences in a 5-second run. Their (start, latency) pairs go into numpy chunks
(16 bytes each, never a Python int), and the run's document carries a summary of bounded size whatever the count:
the exact count and latency statistics, a log-bucketed histogram, and an evenly spaced subsample for the timeline.
The watcher still gets every sample (binary, after the document: `write_raw`), for the sampler's on/off windows, the
counters and the energy per inference, which it computes exactly.
"""

import mmap
import time

import numpy as np

PER_DOUBLING = 256  # histogram buckets per doubling of latency: [2**(b/256), 2**((b+1)/256)) ns
# A latency read back from its bucket (the geometric middle) is within this factor of the true one: 0.14%
HISTOGRAM_ERROR = 2 ** (0.5 / PER_DOUBLING) - 1
SUBSAMPLE = 1000  # at most this many (start, latency) pairs in a document, the first and the last among them
CHUNK = 1 << 16  # samples per chunk: 1 MiB for both arrays, allocated as the run needs it


class Recorder:
    """(start, latency) of each timed inference in int64 chunks of fresh anonymous memory (mmap, not the heap, whose
    freed pages may be resident already): their pages become resident as they are written, so the harness grows by
    16 bytes an inference (resident_bytes), and nothing is copied while timed."""

    def __init__(self, chunk=CHUNK):
        self.chunk, self.full, self.n = chunk, [], 0
        self.starts, self.latencies = self._new()

    def _new(self):
        return tuple(np.frombuffer(mmap.mmap(-1, self.chunk * 8), np.int64) for _ in range(2))

    def time(self, infer, iterations, until_ns):
        """Time infer() until `iterations` are timed and perf_counter_ns() has reached `until_ns`. Each start is on
        the monotonic clock (the watcher's: which sampling window it ran in); the loop does no more than store two
        numbers between inferences (a method call or a list append would cost a 4 µs model several percent of its
        throughput)."""
        perf_counter_ns, monotonic_ns = time.perf_counter_ns, time.monotonic_ns
        starts, latencies, chunk = self.starts, self.latencies, self.chunk
        i = n = 0
        while n < iterations or perf_counter_ns() < until_ns:
            if i == chunk:
                self.full.append((starts, latencies))
                starts, latencies = self.starts, self.latencies = self._new()
                i = 0
            start = monotonic_ns()
            t = perf_counter_ns()
            infer()
            latencies[i] = perf_counter_ns() - t
            starts[i] = start
            i += 1
            n += 1
        self.n = n

    def resident_bytes(self, page=mmap.PAGESIZE):
        """What the samples hold in memory: the pages written so far (an untouched page takes none; a Raspberry Pi
        5's kernel has 16 KiB pages)."""
        last = self.n - len(self.full) * self.chunk
        return (len(self.full) * -(-self.chunk * 8 // page) + -(-last * 8 // page)) * page * 2

    def arrays(self):
        """(starts, latencies): every sample in order, as two int64 arrays."""
        last = self.n - len(self.full) * self.chunk
        parts = [*self.full, (self.starts[:last], self.latencies[:last])]
        return np.concatenate([s for s, _ in parts]), np.concatenate([lat for _, lat in parts])


def buckets(latencies_ns):
    """The histogram bucket of each latency (1 ns at least: a clock may read 0 for a very short call)."""
    return np.floor(np.log2(np.maximum(np.asarray(latencies_ns, dtype=np.float64), 1.0)) * PER_DOUBLING).astype(
        np.int64)


def histogram(latencies_ns):
    """{"per_doubling", "first", "counts"}: the count of each bucket from the first occupied to the last."""
    b = buckets(latencies_ns)
    first = int(b.min())
    # bincount takes the platform's index type only: int32 on a 32-bit Pi
    return {"per_doubling": PER_DOUBLING, "first": first, "counts": np.bincount((b - first).astype(np.intp)).tolist()}


def bucket_values(hist):
    """(each bucket's latency in ns, read as its geometric middle, and its count), empty buckets left out."""
    counts = np.asarray(hist["counts"], dtype=np.int64)
    b = hist["first"] + np.arange(len(counts))
    keep = counts > 0
    return 2.0 ** ((b[keep] + 0.5) / hist["per_doubling"]), counts[keep]


def summarize(starts_ns, latencies_ns, subsample=SUBSAMPLE):
    """The run's timing summary from every sample: JSON-ready, of bounded size whatever their number."""
    lat = np.asarray(latencies_ns, dtype=np.int64)
    starts = np.asarray(starts_ns, dtype=np.int64)
    ms = lat.astype(np.float64)
    p50, p90, p99 = np.percentile(ms, [50, 90, 99])
    keep = np.unique(np.linspace(0, len(lat) - 1, min(len(lat), subsample)).round().astype(np.int64))
    return {
        "count": int(len(lat)),
        "latency_ns": {"mean": float(ms.mean()), "std": float(ms.std(ddof=1)) if len(ms) > 1 else 0.0,
                       "min": int(lat.min()), "max": int(lat.max()), "p50": float(p50), "p90": float(p90),
                       "p99": float(p99)},
        "histogram": histogram(lat),
        # the subsample: the index of each kept inference, its start (the watcher's clock) and its latency
        "subsample": {"index": keep.tolist(), "starts_ns": starts[keep].tolist(), "latencies_ns": lat[keep].tolist()},
    }


def write_raw(out, starts_ns, latencies_ns):
    """Every sample for the watcher, after the document's line: the starts, then the latencies, int64 little-endian."""
    for a in (starts_ns, latencies_ns):
        out.write(np.ascontiguousarray(a, dtype="<i8").tobytes())

