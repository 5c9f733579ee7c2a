"""Dataflow readiness, without submitting anything.

The collect and prepare jobs are built with the DataflowRunner options a real
run uses (project, region, temp location, ``--setup_file``, worker machine
type, ``--max_num_workers``, ``--sdk_container_image``), then:

* their job graphs (``Pipeline.to_runner_api()``) hold the labelled steps;
* ``--dry_run`` makes the DataflowRunner do everything up to the API call:
  the Dataflow job request and the worker environment are built, and the
  package is built from ``setup.py`` into ``workflow.tar.gz`` as for
  staging; that sdist must carry ``vsep``, ``beam_jobs``, ``setup.py`` and
  the requirements files, and pip must install it.

Nothing here reaches the network: ``--dry_run`` skips the bucket checks and
the submission. Beam's GCS access is checked against the emulator: it must
use Application Default Credentials (google-auth-httplib2), not connect
anonymously as it silently does without that package.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

beam = pytest.importorskip("apache_beam")

from apache_beam.portability import common_urns  # noqa: E402
from apache_beam.portability.api import beam_runner_api_pb2  # noqa: E402

from beam_jobs.common import pipeline_options  # noqa: E402
from vsep import lake  # noqa: E402
from vsep.config import CollectConfig, PrepareConfig  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
IMAGE = "europe-west4-docker.pkg.dev/vsep-project/vsep/vsep-dataflow:0123abc"
MACHINE = "n2-highmem-4"
MAX_WORKERS = 16


def dataflow_args(image: bool = True) -> list[str]:
    """The options of a real Dataflow run (README), plus ``--dry_run``."""
    args = [
        "--runner", "DataflowRunner",
        "--project", "vsep-project",  # a valid project id (the runner checks the pattern)
        "--region", "europe-west4",
        "--temp_location", "gs://vsep-bucket/tmp",
        "--setup_file", str(ROOT / "setup.py"),
        "--machine_type", MACHINE,
        "--max_num_workers", str(MAX_WORKERS),
        "--job_name", "vsep-prepare-test",
        "--dry_run", "True",
    ]  # fmt: skip
    return args + (["--sdk_container_image", IMAGE] if image else [])


def entries() -> list[lake.LakeEntry]:
    """A small lake index: the graph does not depend on its size."""

    def entry(speaker: str, kind: str, rid: str) -> lake.LakeEntry:
        return lake.LakeEntry(
            speaker=speaker, kind=kind, recording_id=rid, clip=f"clips/{kind}/{speaker}/{rid}.flac",
            num_samples=64000, sample_rate=16000, source_uri=f"gs://src/{rid}.wav",
        )  # fmt: skip

    return [entry("trump", "speech", "a" * 40), entry("other", "speech", "b" * 40), entry("cafe", "noise", "c" * 40)]


def prepare_pipeline(args: list[str]) -> beam.Pipeline:
    p = beam.Pipeline(options=pipeline_options(args))
    from beam_jobs.prepare import Prepare

    staging = "gs://vsep-bucket/data/_staging/test"
    _ = p | "LakeIndex" >> beam.Create(entries()) | "Prepare" >> Prepare("gs://vsep-bucket/lake", staging, PrepareConfig())
    return p


def collect_pipeline(args: list[str]) -> beam.Pipeline:
    p = beam.Pipeline(options=pipeline_options(args))
    from beam_jobs.collect import Collect

    rows = [lake.ManifestRow(speaker="trump", uri="gs://src/a.wav")]
    _ = p | "Manifest" >> beam.Create(rows) | "Collect" >> Collect("gs://vsep-bucket/lake", CollectConfig())
    return p


def transforms(proto: beam_runner_api_pb2.Pipeline) -> dict[str, beam_runner_api_pb2.PTransform]:
    return {t.unique_name: t for t in proto.components.transforms.values()}


# ---------------------------------------------------------------- job graphs


def test_options_keep_the_dataflow_runner_and_worker_settings():
    from apache_beam.options.pipeline_options import (
        GoogleCloudOptions,
        SetupOptions,
        StandardOptions,
        WorkerOptions,
    )

    options = pipeline_options(dataflow_args())
    assert options.view_as(StandardOptions).runner == "DataflowRunner"  # not replaced by DirectRunner
    workers = options.view_as(WorkerOptions)
    assert (workers.machine_type, workers.max_num_workers, workers.sdk_container_image) == (MACHINE, MAX_WORKERS, IMAGE)
    assert options.view_as(SetupOptions).setup_file == str(ROOT / "setup.py")
    assert options.view_as(SetupOptions).save_main_session is False  # code comes from the package, not __main__
    assert options.view_as(GoogleCloudOptions).temp_location == "gs://vsep-bucket/tmp"


def test_prepare_job_graph_for_dataflow():
    p = prepare_pipeline(dataflow_args())
    assert type(p.runner).__name__ == "DataflowRunner"
    steps = transforms(p.to_runner_api())
    wanted = ["AssignSplit", "InterferencePool", "TargetClips", "PlanWindows", "GroupShards", "WriteShards",
              "OneErrorPerClip", "WriteErrors", "WriteShardIndex"]  # fmt: skip
    missing = [w for w in wanted if f"Prepare/{w}" not in steps]
    assert not missing, f"missing steps {missing} in {sorted(steps)[:40]}"
    gbk = common_urns.primitives.GROUP_BY_KEY.urn
    # only window references cross the shuffle: one worker per shard reads and writes its audio
    assert steps["Prepare/GroupShards"].spec.urn == gbk
    write = steps["Prepare/WriteShards"]
    par_do = next(t for n, t in steps.items() if n.startswith("Prepare/WriteShards") and t.spec.urn == common_urns.primitives.PAR_DO.urn)
    assert write and beam_runner_api_pb2.ParDoPayload.FromString(par_do.spec.payload).side_inputs, \
        "the pool is a side input of WriteShards"


def test_collect_job_graph_for_dataflow():
    steps = transforms(collect_pipeline(dataflow_args()).to_runner_api())
    for w in ("Reshuffle", "DecodeAndStore", "OnePerRecording", "WriteIndex", "WriteErrors"):
        assert f"Collect/{w}" in steps, (w, sorted(steps)[:40])


# ---------------------------------------------------------------- the job request, dry run


@pytest.fixture(scope="module")
def dry_run_prepare():
    """Run the prepare job on the DataflowRunner with ``--dry_run``: returns (runner, options, result).

    The sdist the runner built from setup.py lies in a temporary folder the
    runner made; it is removed at the end.
    """
    pytest.importorskip("google.cloud.dataflow", reason="google-cloud-dataflow-client (requirements.txt) is missing")
    with staging_cleanup() as cleanup:
        p = prepare_pipeline(dataflow_args())
        result = p.run()
        cleanup.append(p.runner.proto_pipeline)
        yield p.runner, p._options, result


@contextmanager
def staging_cleanup() -> Iterator[list[beam_runner_api_pb2.Pipeline]]:
    """Remove what a dry run leaves: the runner's temporary staging folders and the
    ``vsep.egg-info`` that ``setup.py sdist`` writes beside setup.py (if it was not there before)."""
    egg_info = ROOT / "vsep.egg-info"
    had_egg_info = egg_info.exists()
    pipelines: list[beam_runner_api_pb2.Pipeline] = []
    try:
        yield pipelines
    finally:
        for proto in pipelines:
            for path, _ in artifacts(proto).values():
                folder = Path(path).parent
                if folder.parent == Path(tempfile.gettempdir()) and folder.name.startswith("tmp"):
                    shutil.rmtree(folder, ignore_errors=True)
        if not had_egg_info:
            shutil.rmtree(egg_info, ignore_errors=True)


def artifacts(proto: beam_runner_api_pb2.Pipeline) -> dict[str, tuple[str, str]]:
    """staged name -> (local path, container image) of every artifact the workers get."""
    out = {}
    for env in proto.components.environments.values():
        image = beam_runner_api_pb2.DockerPayload.FromString(env.payload).container_image
        for dep in env.dependencies:
            path = beam_runner_api_pb2.ArtifactFilePayload.FromString(dep.type_payload).path
            name = beam_runner_api_pb2.ArtifactStagingToRolePayload.FromString(dep.role_payload).staged_name
            out[name] = (path, image)
    return out


def test_dry_run_builds_the_dataflow_job_request(dry_run_prepare):
    from apache_beam.runners.dataflow.internal import apiclient

    runner, options, result = dry_run_prepare
    assert result.state == "DONE" and result.job.proto.name == "vsep-prepare-test"
    assert result.job.proto.type_.name == "JOB_TYPE_BATCH"
    # the worker environment as the runner would send it (staging URL made up: nothing is staged)
    env = apiclient.Environment(
        packages=[], options=options, environment_version=apiclient._FNAPI_ENVIRONMENT_MAJOR_VERSION,
        proto_pipeline_staged_url="gs://vsep-bucket/tmp/pipeline.pb", proto_pipeline=runner.proto_pipeline,
    ).proto  # fmt: skip
    pool = env.worker_pools[0]
    assert pool.machine_type == MACHINE
    assert pool.autoscaling_settings.max_num_workers == MAX_WORKERS
    assert pool.worker_harness_container_image == IMAGE
    assert [c.container_image for c in pool.sdk_harness_container_images] == [IMAGE]
    assert env.temp_storage_prefix.endswith("vsep-bucket/tmp")


def test_dry_run_stages_an_installable_sdist_with_the_code(dry_run_prepare, tmp_path):
    runner, _, _ = dry_run_prepare
    staged = artifacts(runner.proto_pipeline)
    assert "workflow.tar.gz" in staged, sorted(staged)  # what --setup_file ships to every worker
    sdist, image = staged["workflow.tar.gz"]
    assert image == IMAGE
    with tarfile.open(sdist) as tar:
        names = {n.split("/", 1)[1] for n in tar.getnames() if "/" in n}
        tar.extractall(tmp_path / "src", filter="data")
    for package in ("vsep", "beam_jobs"):
        modules = {p.name for p in (ROOT / package).glob("*.py")}
        shipped = {n.split("/", 1)[1] for n in names if n.startswith(f"{package}/") and n.endswith(".py")}
        assert modules <= shipped, f"{package}: not shipped {sorted(modules - shipped)}"
    assert {"setup.py", "requirements.txt", "requirements-dev.txt"} <= names  # setup.py reads the requirements
    # what a worker does with it (offline here: the dependencies are already installed)
    src = next((tmp_path / "src").iterdir())
    target = tmp_path / "site"
    proc = subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation", "--no-index",
         "--target", str(target), str(src)],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert (target / "vsep" / "mixing.py").exists() and (target / "beam_jobs" / "prepare.py").exists()
    meta = next(target.glob("vsep-*.dist-info"))
    assert "vsep = vsep.cli:main" in (meta / "entry_points.txt").read_text()
    requires = (meta / "METADATA").read_text()
    assert "Requires-Dist: apache-beam==" in requires and "Requires-Dist: google-cloud-dataflow-client" in requires


def test_dry_run_without_a_container_uses_the_default_beam_image(tmp_path):
    """With --setup_file alone the workers run Beam's own image and install the sdist at start-up."""
    pytest.importorskip("google.cloud.dataflow")
    from apache_beam.runners.dataflow.internal import apiclient

    with staging_cleanup() as cleanup:
        p = collect_pipeline(dataflow_args(image=False))
        p.run()
        cleanup.append(p.runner.proto_pipeline)
        staged = artifacts(p.runner.proto_pipeline)
    assert "workflow.tar.gz" in staged
    images = {image for _, image in staged.values()}
    assert images == {apiclient.get_container_image_from_options(p._options)}
    assert all(i.endswith(f"/beam_python3.11_sdk:{beam.version.__version__}") for i in images), images


# ---------------------------------------------------------------- credentials


def test_beam_gcs_uses_application_default_credentials(gcs):
    """Beam's gs:// client authenticates (as on Dataflow and Vertex AI) instead of going anonymous.

    A fresh process (Beam caches credentials per process) writes and reads an
    object through ``vsep.storage``; the emulator fixture's service-account
    key sends token requests to its local token server, which must see one.
    """
    from apache_beam.internal.gcp import auth

    assert auth._GOOGLE_AUTH_AVAILABLE, "google-auth-httplib2 is missing: Beam would connect to GCS anonymously"
    uri = gcs.uri("dataflow-test", "auth.txt")
    code = (
        "from vsep import storage; "
        f"storage.write_text({uri!r}, 'hello'); assert storage.read_text({uri!r}) == 'hello'"
    )
    before = gcs.token_server.requests
    proc = subprocess.run([sys.executable, "-W", "ignore", "-c", code], env=dict(os.environ),
                          capture_output=True, text=True, timeout=120)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert gcs.token_server.requests > before, "no token requested: the GCS client connected anonymously"
