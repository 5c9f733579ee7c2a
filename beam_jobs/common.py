"""What every vsep Beam job shares: options, runner choice and counter reports."""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import sys
from collections.abc import Iterator, Sequence

NAMESPACE = "vsep"
log = logging.getLogger("vsep")


def pipeline_options(beam_args: Sequence[str]):
    """Beam options from the arguments vsep did not consume.

    The local runner is named explicitly (``DirectRunner``) unless ``--runner``
    is given: Beam's default may try to download a runner binary.
    """
    from apache_beam.options.pipeline_options import PipelineOptions, SetupOptions

    args = list(beam_args)
    if not any(a == "--runner" or a.startswith("--runner=") for a in args):
        args.append("--runner=DirectRunner")
    if not any(a.startswith("--default_sdk_harness_log_level") for a in args):
        import os

        # worker processes: warnings only, errors only under the quiet terminal (vsep without --verbose)
        args.append("--default_sdk_harness_log_level=" + ("ERROR" if os.environ.get("VSEP_QUIET") else "WARNING"))
    options = PipelineOptions(args)
    # Workers (local processes or Dataflow VMs) unpickle DoFns that refer to
    # module-level names; save_main_session is not needed because the code
    # lives in installed packages (vsep, beam_jobs) shipped by setup.py.
    options.view_as(SetupOptions).save_main_session = False
    return options


@contextlib.contextmanager
def quiet_workers() -> Iterator[None]:
    """Drop Beam worker processes' start-up chatter from this process's stderr (fd 2).

    Local worker processes inherit fd 2 and log a few harmless lines each on
    start (:data:`vsep.cli.NOISE`); under the quiet terminal (``vsep`` without
    ``--verbose``) fd 2 goes through a pipe for the pipeline's run and every
    other line is passed on unchanged.
    """
    if not os.environ.get("VSEP_QUIET"):
        yield
        return
    import threading

    from vsep.cli import NOISE

    sys.stderr.flush()
    saved = os.dup(2)
    read_fd, write_fd = os.pipe()
    os.dup2(write_fd, 2)
    os.close(write_fd)

    def pump() -> None:
        with os.fdopen(read_fd, "rb") as lines, os.fdopen(os.dup(saved), "wb", buffering=0) as out:
            for line in lines:
                if not any(n.encode() in line for n in NOISE):
                    out.write(line)

    thread = threading.Thread(target=pump, daemon=True)
    thread.start()
    try:
        yield
    finally:
        sys.stderr.flush()
        os.dup2(saved, 2)  # closes the pipe's last writer held by this process
        os.close(saved)
        thread.join(timeout=5)


def counter(name: str):
    from apache_beam.metrics import Metrics

    return Metrics.counter(NAMESPACE, name)


def counters(result) -> dict[str, int]:
    """Committed (or attempted) values of the job's vsep counters, by name."""
    from apache_beam.metrics.metric import MetricsFilter

    out: dict[str, int] = {}
    query = result.metrics().query(MetricsFilter().with_namespace(NAMESPACE))
    for c in query["counters"]:
        value = c.committed if c.committed is not None else c.attempted
        out[c.key.metric.name] = out.get(c.key.metric.name, 0) + int(value or 0)
    return dict(sorted(out.items()))


def print_counters(job: str, values: dict[str, int], stream=None) -> None:
    """One line per counter, e.g. ``prepare  windows_written  1234``."""
    stream = stream or sys.stdout
    width = max((len(k) for k in values), default=0)
    for k, v in values.items():
        print(f"{job}  {k:<{width}}  {v}", file=stream)


def setup_logging(verbose: bool = False) -> None:
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    logging.getLogger("vsep").setLevel(logging.INFO)


def add_common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--verbose", action="store_true", help="log Beam's progress too")


def write_sorted_lines(lines, prefix: str, label: str):
    """Write a small PCollection of text lines, sorted, as one ``<prefix>.jsonl`` file.

    Sorting makes re-runs byte-identical; the file exists (empty) when there are no lines.
    """
    import apache_beam as beam

    return (
        lines
        | f"Gather{label}" >> beam.combiners.ToList()
        | f"Sort{label}" >> beam.FlatMap(sorted)
        | f"Write{label}"
        >> beam.io.WriteToText(prefix, file_name_suffix=".jsonl", shard_name_template="", num_shards=1)
    )


def run_main(job: str, run, argv) -> int:
    """A job's ``main``: run it; an expected failure is one line on stderr and exit 2."""
    from vsep.storage import StorageError

    try:
        run(argv)
    except (ValueError, FileNotFoundError, StorageError) as e:
        print(f"vsep {job}: error: {str(e).splitlines()[0] if str(e) else type(e).__name__}", file=sys.stderr)
        return 2
    return 0
