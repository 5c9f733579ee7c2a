"""Where the CPU of ``vsep separate`` goes: thread CPU time per stage of one run, in this process.

    .venv/bin/python benchmarks/profile_separate.py [vsep separate options] -o OUT FILE

Wraps the stages of :mod:`vsep.separate` (the reader: decode and resampling to the model's rate; the
writer: resampling back, PCM16, writing; the timeline) and the chunk model's calls (onnxruntime), and
prints each one's CPU seconds, summed over the threads that ran it, next to the wall time and the
process's CPU time; "everything else" is start-up, chunking and overlap-add on the main thread.
``benchmarks/bench_separate.py`` times the whole process as a user waits for it; this says where to cut.
"""

from __future__ import annotations

import collections
import sys
import threading
import time


def main(argv: list[str]) -> int:
    from vsep import inference, separate, timeline, writer

    cpu: dict[str, float] = collections.defaultdict(float)
    lock = threading.Lock()

    def count(name: str, seconds: float) -> None:
        with lock:
            cpu[name] += seconds

    def timed(name, fn):
        def wrapper(*args, **kwargs):
            t = time.thread_time()
            try:
                return fn(*args, **kwargs)
            finally:
                count(name, time.thread_time() - t)
        return wrapper

    def timed_iter(name, gen):
        def wrapper(*args, **kwargs):
            it = gen(*args, **kwargs)
            while True:
                t = time.thread_time()
                try:
                    item = next(it)
                except StopIteration:
                    count(name, time.thread_time() - t)
                    return
                count(name, time.thread_time() - t)
                yield item
        return wrapper

    chunked = inference.build_chunked_fn
    separate.read_blocks = timed_iter("reader: decode, resample to the model's rate", separate.read_blocks)
    writer.Writer._write = timed("writer: resample back, PCM16, write", separate.Writer._write)
    timeline.Tracker.update = timed("timeline", timeline.Tracker.update)
    inference.build_chunked_fn = lambda call, *a, **k: chunked(timed("model calls (onnxruntime)", call), *a, **k)
    wall0, cpu0 = time.perf_counter(), time.process_time()
    rc = separate.main(["--no-progress", *argv])
    wall, total = time.perf_counter() - wall0, time.process_time() - cpu0
    print(f"wall {wall:.2f} s, process CPU {total:.2f} s")
    for name, seconds in sorted(cpu.items(), key=lambda kv: -kv[1]):
        print(f"  {name}: {seconds:.2f} s")
    print(f"  everything else (start-up, chunking, overlap-add): {total - sum(cpu.values()):.2f} s")
    return rc


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
