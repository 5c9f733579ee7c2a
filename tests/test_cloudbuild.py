"""cloudbuild.yaml, the Dockerfiles and the Vertex AI job specs in cloud/ hang together.

Nothing here talks to Google Cloud or Docker: the files are parsed and every
reference in them is checked against the repository, e.g. a Dockerfile or
spec a step names exists, every ``$_X`` / ``${_X}`` is declared, each image a
step runs or names is one the build makes and pushes, and every ``vsep``
command line (in steps and specs) names a real subcommand with options it
accepts.
"""

from __future__ import annotations

import contextlib
import importlib.util
import io
import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from vsep.cli import COMMANDS

ROOT = Path(__file__).resolve().parents[1]
CLOUDBUILD = ROOT / "cloudbuild.yaml"
SPECS = sorted((ROOT / "cloud").glob("vertex-*.yaml"))
# Cloud Build's own substitutions (https://cloud.google.com/build/docs/configuring-builds/substitute-variable-values)
BUILTINS = {
    "PROJECT_ID", "BUILD_ID", "PROJECT_NUMBER", "LOCATION", "TRIGGER_NAME", "COMMIT_SHA", "REVISION_ID",
    "SHORT_SHA", "REPO_NAME", "REPO_FULL_NAME", "BRANCH_NAME", "TAG_NAME", "REF_NAME",
    "TRIGGER_BUILD_CONFIG_PATH", "SERVICE_ACCOUNT_EMAIL", "SERVICE_ACCOUNT",
}  # fmt: skip
SAMPLE_BUILTINS = {"PROJECT_ID": "my-project", "BUILD_ID": "b-123", "COMMIT_SHA": "0123456789abcdef"}
# options the command lines use that the commands do not have yet, with why
VAR = re.compile(r"\$(?:\{([A-Za-z_][A-Za-z0-9_]*)\}|([A-Za-z_][A-Za-z0-9_]*))")
PLACEHOLDER = re.compile(r"__([A-Z][A-Z_]*)__")


@pytest.fixture(scope="module")
def build() -> dict:
    doc = yaml.safe_load(CLOUDBUILD.read_text())
    assert isinstance(doc, dict) and doc.get("steps"), "cloudbuild.yaml has no steps"
    return doc


def strings(node) -> list[str]:
    """Every string in a parsed YAML document (comments are not in it)."""
    if isinstance(node, str):
        return [node]
    if isinstance(node, dict):
        return [s for k, v in node.items() for s in strings(k) + strings(v)]
    if isinstance(node, list):
        return [s for v in node for s in strings(v)]
    return []


def used_variables(text: str) -> set[str]:
    """Substitutions ``$X`` / ``${X}`` in ``text`` (``$$`` is an escaped dollar for the shell)."""
    return {a or b for a, b in VAR.findall(text.replace("$$", ""))}


def expand(text: str, build: dict) -> str:
    """``text`` as Cloud Build would run it with the default substitutions."""
    values = {**SAMPLE_BUILTINS, **{k: str(v) for k, v in build["substitutions"].items()}}
    parts = text.split("$$")
    parts = [VAR.sub(lambda m: values.get(m.group(1) or m.group(2), m.group(0)), p) for p in parts]
    return "$".join(parts)


def step(build: dict, step_id: str) -> dict:
    return next(s for s in build["steps"] if s.get("id") == step_id)


def script_commands(build: dict, s: dict) -> list[list[str]]:
    """The shell command lines of a step (bash -c scripts split by line, continuations joined)."""
    args = [expand(a, build) for a in s.get("args", [])]
    if s.get("entrypoint") != "bash":
        return [args]
    script = args[-1].replace("\\\n", " ")
    commands = []
    for line in script.splitlines():
        for part in re.split(r";|&&|\|\||\bthen\b|\bdo\b|\)\s", line):
            with contextlib.suppress(ValueError):
                if words := shlex.split(part, comments=True):
                    commands.append(words)
    return commands


def rendered_spec(path: Path, build: dict) -> dict:
    """A Vertex AI job spec with its placeholders filled the way the ``vertex`` step's sed does."""
    text = path.read_text()
    for placeholder, value in sed_replacements(build).items():
        text = text.replace(placeholder, value)
    return yaml.safe_load(text)


def sed_replacements(build: dict) -> dict[str, str]:
    script = expand(step(build, "vertex")["args"][-1], build)
    return dict(re.findall(r's\|(__[A-Z_]+__)\|([^|]*)\|g', script))


def after(build: dict, step_id: str) -> set[str]:
    """The steps that finish before ``step_id`` starts (Cloud Build: no ``waitFor`` = all earlier steps)."""
    ids = [s["id"] for s in build["steps"]]
    direct = {}
    for i, s in enumerate(build["steps"]):
        wait = s.get("waitFor")
        direct[s["id"]] = set(ids[:i]) if wait is None else {w for w in wait if w != "-"}
    seen: set[str] = set()
    todo = list(direct[step_id])
    while todo:
        d = todo.pop()
        if d not in seen:
            seen.add(d)
            todo.extend(direct[d])
    return seen


def app_image(build: dict) -> str:
    return expand("${_REGION}-docker.pkg.dev/$PROJECT_ID/${_REPOSITORY}/vsep:$COMMIT_SHA", build)


def vsep_invocations(build: dict) -> list[tuple[str, list[str]]]:
    """(where, [subcommand, args...]) of every vsep command line in the build and the job specs."""
    found = []
    for s in build["steps"]:
        for words in script_commands(build, s):
            if words and words[0] == "vsep":
                found.append((f"step {s['id']}", words[1:]))
    for path in SPECS:
        for pool in rendered_spec(path, build)["workerPoolSpecs"]:
            c = pool["containerSpec"]
            argv = [str(a) for a in c.get("command", []) + c.get("args", [])]
            if not c.get("command"):  # the image's entry point is vsep
                found.append((path.name, argv))
            elif "vsep" in argv:
                found.append((path.name, argv[argv.index("vsep") + 1 :]))
    return found


# ---------------------------------------------------------------- substitutions


def test_every_substitution_is_declared_or_builtin_and_every_declared_one_is_used(build):
    declared = set(build.get("substitutions") or {})
    assert all(re.fullmatch(r"_[A-Z0-9_]+", k) for k in declared), declared
    used = set().union(*(used_variables(s) for s in strings({k: v for k, v in build.items() if k != "substitutions"})))
    user = {u for u in used if u.startswith("_")}
    assert user <= declared, f"used but not declared: {sorted(user - declared)}"
    assert used - user <= BUILTINS, f"not Cloud Build substitutions: {sorted(used - user - BUILTINS)}"
    assert declared <= user, f"declared but unused (Cloud Build rejects the build): {sorted(declared - user)}"
    assert {"_REGION", "_BUCKET", "_REPOSITORY"} <= declared
    assert all(isinstance(v, str) for v in build["substitutions"].values()), "substitution values must be strings"


def test_steps_have_unique_ids_and_wait_only_for_earlier_steps(build):
    ids = [s.get("id") for s in build["steps"]]
    assert all(ids) and len(ids) == len(set(ids)), ids
    for i, s in enumerate(build["steps"]):
        for w in s.get("waitFor", []):
            assert w == "-" or w in ids[:i], (s["id"], w)


# ---------------------------------------------------------------- files and images


def test_files_the_steps_name_exist(build):
    named = set()
    for s in build["steps"]:
        for words in script_commands(build, s):
            for w in words:
                w = w.split("=", 1)[-1]
                if re.fullmatch(r"(cloud/[\w./-]+|Dockerfile[\w.]*|requirements[\w-]*\.txt|tests|\.)", w):
                    named.add(w)
    assert {"Dockerfile", "Dockerfile.dataflow", "requirements-dev.txt", "tests"} <= named, named
    missing = sorted(n for n in named if not (ROOT / n).exists())
    assert not missing, missing
    # every job kind the _VERTEX_JOB comment offers has its spec
    offered = re.search(r"_VERTEX_JOB:.*#\s*(.+)", CLOUDBUILD.read_text()).group(1).split("(")[0]
    for kind in (k.strip() for k in offered.split("|")):
        assert (ROOT / "cloud" / f"vertex-{kind}.yaml").exists(), kind


@pytest.mark.parametrize("dockerfile", ["Dockerfile", "Dockerfile.dataflow"])
def test_dockerfiles_copy_what_exists_and_is_not_ignored(dockerfile):
    text = (ROOT / dockerfile).read_text()
    ignored = {ln.strip() for ln in (ROOT / ".dockerignore").read_text().splitlines() if ln.strip()[:1] not in "#"}
    sources = []
    for line in text.splitlines():
        words = line.split()
        if words[:1] == ["COPY"] and not any(w.startswith("--from") for w in words):
            sources += words[1:-1]
    assert "requirements.txt" in sources and "setup.py" in sources and "vsep" in sources and "beam_jobs" in sources
    for src in sources:
        assert (ROOT / src).exists(), f"{dockerfile}: COPY {src}: no such file"
        assert src not in ignored, f"{dockerfile}: COPY {src}, but .dockerignore drops it"
    assert "MANIFEST.in" in sources  # setup.py must find the requirements files in an sdist too


def test_images_pin_python_and_beam_as_the_project_does():
    import apache_beam

    beam_pin = re.search(r"^apache-beam==(\S+)", (ROOT / "requirements.txt").read_text(), re.M).group(1)
    assert beam_pin == apache_beam.__version__
    dataflow = (ROOT / "Dockerfile.dataflow").read_text()
    assert f"ARG BEAM_VERSION={beam_pin}" in dataflow  # workers and launcher must run the same Beam
    assert "ARG BEAM_IMAGE=apache/beam_python3.11_sdk:${BEAM_VERSION}" in dataflow
    assert "FROM ${BEAM_IMAGE} AS beam" in dataflow and "FROM ${BASE_IMAGE} AS worker" in dataflow
    assert "COPY --from=beam /opt/apache/beam /opt/apache/beam" in dataflow
    assert 'ENTRYPOINT ["/opt/apache/beam/boot"]' in dataflow
    app = (ROOT / "Dockerfile").read_text()
    assert "FROM ${BASE_IMAGE}" in app and 'ENTRYPOINT ["vsep"]' in app and "ffmpeg" in app
    for text in (app, dataflow):  # the public base by default; tools/images.sh passes a local one
        assert "ARG BASE_IMAGE=python:3.11-slim" in text
    assert f"python{sys.version_info.major}.{sys.version_info.minor}" in "python3.11", "tests run on another Python"


def test_cloud_build_passes_the_dockerfiles_own_defaults(build):
    """cloudbuild.yaml builds with the same Dockerfiles and base-image arguments as their defaults."""
    defaults = {}
    for name in ("Dockerfile", "Dockerfile.dataflow"):
        for m in re.finditer(r"^ARG (BASE_IMAGE|BEAM_IMAGE)=(\S+)", (ROOT / name).read_text(), re.M):
            defaults[(name, m.group(1))] = m.group(2)
    given = {}
    for s in build["steps"]:
        args = [expand(a, build) for a in s.get("args", [])]
        if s["name"].endswith("cloud-builders/docker") and args[:1] == ["build"]:
            dockerfile = next(a.split("=", 1)[1] for a in args if a.startswith("--file="))
            for a in args:
                if a.startswith("--build-arg=") and a.split("=")[1] in ("BASE_IMAGE", "BEAM_IMAGE"):
                    key, value = a.split("=", 1)[1].split("=", 1)
                    given[(dockerfile, key)] = value
    beam = re.search(r"^ARG BEAM_VERSION=(\S+)", (ROOT / "Dockerfile.dataflow").read_text(), re.M).group(1)
    expected = {k: v.replace("${BEAM_VERSION}", beam) for k, v in defaults.items()}
    assert given == expected


def test_images_are_built_pushed_and_used_consistently(build):
    built = {}
    for s in build["steps"]:
        args = [expand(a, build) for a in s.get("args", [])]
        if s["name"].endswith("cloud-builders/docker") and args[:1] == ["build"]:
            dockerfile = next(a.split("=", 1)[1] for a in args if a.startswith("--file="))
            built[next(a.split("=", 1)[1] for a in args if a.startswith("--tag="))] = dockerfile
    pushed = {expand(s["args"][1], build) for s in build["steps"] if s.get("args", [None])[0] == "push"}
    listed = {expand(i, build) for i in build.get("images", [])}
    assert set(built) == pushed == listed, (built, pushed, listed)
    assert all(tag.endswith(":0123456789abcdef") for tag in built), "images are tagged with $COMMIT_SHA"
    assert built[app_image(build)] == "Dockerfile"
    dataflow_image = next(t for t, f in built.items() if f == "Dockerfile.dataflow")
    pushed_by = {expand(s["args"][1], build): s["id"] for s in build["steps"] if s.get("args", [None])[0] == "push"}
    for s in build["steps"]:
        name = expand(s["name"], build)
        if "docker.pkg.dev" in name:  # a step that runs one of our images runs after it was pushed
            assert name in built, name
            assert pushed_by[name] in after(build, s["id"]), s["id"]
    prepare = [w for c in script_commands(build, step(build, "prepare")) for w in c]
    assert prepare[prepare.index("--sdk_container_image") + 1] == dataflow_image
    assert prepare[prepare.index("--runner") + 1] == "DataflowRunner"
    assert sed_replacements(build)["__IMAGE__"] == app_image(build)


# ---------------------------------------------------------------- Vertex AI job specs


@pytest.mark.parametrize("spec", SPECS, ids=[p.name for p in SPECS])
def test_vertex_specs_are_complete_custom_job_specs(spec, build):
    placeholders = {f"__{p}__" for p in PLACEHOLDER.findall(spec.read_text())}
    assert placeholders <= set(sed_replacements(build)), f"not filled by cloudbuild.yaml: {placeholders}"
    doc = rendered_spec(spec, build)
    pools = doc["workerPoolSpecs"]
    assert pools and all(isinstance(p["replicaCount"], int) and p["replicaCount"] >= 1 for p in pools)
    for pool in pools:
        assert pool["machineSpec"]["machineType"]
        assert pool["containerSpec"]["imageUri"] == app_image(build)
        if "acceleratorCount" in pool["machineSpec"]:
            assert isinstance(pool["machineSpec"]["acceleratorCount"], int)
        for word in pool["containerSpec"].get("command", []):
            if word.startswith("/opt/vsep/"):  # the app image's WORKDIR holds cloud/ (COPY cloud ./cloud)
                assert (ROOT / word.removeprefix("/opt/vsep/")).exists(), word
    if "multiworker" in spec.name:
        assert len(pools) == 2 and all("multi_worker" in p["containerSpec"]["args"] for p in pools)


# ---------------------------------------------------------------- vsep command lines


def _help(command: str) -> str:
    out = io.StringIO()
    with contextlib.redirect_stdout(out), pytest.raises(SystemExit):
        importlib.import_module(COMMANDS[command][0]).main(["--help"])
    return out.getvalue()


def _beam_options() -> set[str]:
    from apache_beam.options.pipeline_options import PipelineOptions

    return {f"--{name}" for name in PipelineOptions([]).get_all_options()} | {"--machine_type"}


def test_vsep_command_lines_name_real_subcommands_and_options(build):
    invocations = vsep_invocations(build)
    subcommands = {argv[0] for _, argv in invocations}
    assert {"prepare", "export", "train", "tune"} <= subcommands, subcommands
    unknown_commands = [(where, argv[0]) for where, argv in invocations if argv[0] not in COMMANDS]
    assert not unknown_commands, unknown_commands
    for where, argv in invocations:
        known = set(re.findall(r"--[a-z][a-z0-9_-]*", _help(argv[0])))
        if COMMANDS[argv[0]][0].startswith("beam_jobs."):
            known |= _beam_options()  # any Beam option passes through
        for flag in (a.split("=", 1)[0] for a in argv[1:] if a.startswith("--")):
            assert flag in known, f"{where}: vsep {argv[0]} has no option {flag}"


def test_python_modules_the_build_runs_exist(build):
    modules = [words[words.index("-m") + 1] for s in build["steps"] for words in script_commands(build, s)
               if words[:1] in (["python"], ["python3"]) and "-m" in words]  # fmt: skip
    assert "pytest" in modules
    for name in modules + [module for module, _ in COMMANDS.values()]:
        assert importlib.util.find_spec(name) is not None, name


# ---------------------------------------------------------------- keras-tuner variables on Vertex AI


def _tuner_env_module():
    spec = importlib.util.spec_from_file_location("vertex_tuner_env", ROOT / "cloud" / "vertex_tuner_env.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


CLUSTER = {"workerpool0": ["cmle-training-workerpool0-ab12-0:2222"],
           "workerpool1": ["cmle-training-workerpool1-ab12-0:2222", "cmle-training-workerpool1-ab12-1:2222"]}  # fmt: skip


def test_tuner_env_from_cluster_spec():
    m = _tuner_env_module()
    chief = m.tuner_env(json.dumps({"cluster": CLUSTER, "task": {"type": "workerpool0", "index": 0}}))
    assert chief == {"KERASTUNER_TUNER_ID": "chief", "KERASTUNER_ORACLE_IP": "cmle-training-workerpool0-ab12-0",
                     "KERASTUNER_ORACLE_PORT": "2222"}  # fmt: skip
    worker = m.tuner_env(json.dumps({"cluster": CLUSTER, "task": {"type": "workerpool1", "index": 1}}))
    assert worker["KERASTUNER_TUNER_ID"] == "tuner1" and worker["KERASTUNER_ORACLE_IP"] == chief["KERASTUNER_ORACLE_IP"]
    assert m.environment({"PATH": "/bin"}) == {"PATH": "/bin"}  # one replica: nothing added
    kept = m.environment({"CLUSTER_SPEC": json.dumps({"cluster": CLUSTER, "task": {"type": "workerpool1"}}),
                          "KERASTUNER_ORACLE_PORT": "8000"})  # fmt: skip
    assert kept["KERASTUNER_ORACLE_PORT"] == "8000" and kept["KERASTUNER_TUNER_ID"] == "tuner0"
    with pytest.raises(ValueError, match="workerpool0"):
        m.tuner_env(json.dumps({"cluster": {"workerpool1": ["h:1"]}, "task": {}}))


def test_tuner_env_runs_the_command_with_the_variables():
    env = {**os.environ, "CLUSTER_SPEC": json.dumps({"cluster": CLUSTER, "task": {"type": "workerpool1", "index": 1}})}
    show = "import os; print(os.environ['KERASTUNER_TUNER_ID'], os.environ['KERASTUNER_ORACLE_IP'])"
    proc = subprocess.run(
        [sys.executable, str(ROOT / "cloud" / "vertex_tuner_env.py"), sys.executable, "-c", show],
        env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines()[-1] == "tuner1 cmle-training-workerpool0-ab12-0"
