"""A run's timed inferences, kept compactly and summarised on the board.

A 4 µs model times over a million inferences in a 5-second run. Their (start, latency) pairs go into numpy chunks
(16 bytes each, never a Python int), and the run's document carries a summary of bounded size whatever the count:
the exact count and latency statistics, a log-bucketed histogram, and an evenly spaced subsample for the timeline.
The watcher still gets every sample (binary, after the document: `write_raw`), for the sampler's on/off windows, the
counters and the energy per inference, which it computes exactly.
"""

import numpy as np

PER_DOUBLING = 256  # histogram buckets per doubling of latency: [2**(b/256), 2**((b+1)/256)) ns
# A latency read back from its bucket (the geometric middle) is within this factor of the true one: 0.14%
HISTOGRAM_ERROR = 2 ** (0.5 / PER_DOUBLING) - 1
SUBSAMPLE = 2000  # at most this many (start, latency) pairs in a document, the first and the last among them
CHUNK = 1 << 16  # samples per chunk: 1 MiB for both arrays, allocated as the run needs it


class Recorder:
    """(start, latency) of each timed inference in int64 chunks. A chunk's pages become resident as they are
    written, so the harness grows by 16 bytes an inference (resident_bytes), and nothing is copied while timed."""

    def __init__(self, chunk=CHUNK):
        self.chunk, self.full, self.n = chunk, [], 0
        self._new()

    def _new(self):
        self.starts, self.latencies, self.i = np.empty(self.chunk, np.int64), np.empty(self.chunk, np.int64), 0

    def add(self, start_ns, latency_ns):
        if self.i == self.chunk:
            self.full.append((self.starts, self.latencies))
            self._new()
        self.starts[self.i], self.latencies[self.i] = start_ns, latency_ns
        self.i += 1
        self.n += 1

    def resident_bytes(self, page=4096):
        """What the samples hold in memory: the pages written so far (an untouched page takes none)."""
        return (len(self.full) * -(-self.chunk * 8 // page) + -(-self.i * 8 // page)) * page * 2

    def arrays(self):
        """(starts, latencies): every sample in order, as two int64 arrays."""
        parts = [*self.full, (self.starts[:self.i], self.latencies[:self.i])]
        return np.concatenate([s for s, _ in parts]), np.concatenate([lat for _, lat in parts])


def buckets(latencies_ns):
    """The histogram bucket of each latency (1 ns at least: a clock may read 0 for a very short call)."""
    return np.floor(np.log2(np.maximum(np.asarray(latencies_ns, dtype=np.float64), 1.0)) * PER_DOUBLING).astype(
        np.int64)


def histogram(latencies_ns):
    """{"per_doubling", "first", "counts"}: the count of each bucket from the first occupied to the last."""
    b = buckets(latencies_ns)
    first = int(b.min())
    return {"per_doubling": PER_DOUBLING, "first": first, "counts": np.bincount(b - first).tolist()}


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

