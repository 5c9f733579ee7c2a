"""Run a command with keras-tuner's distributed-tuning variables taken from Vertex AI.

    python cloud/vertex_tuner_env.py vsep tune --data gs://B/data --results gs://B/tune/ID

Vertex AI gives every replica of a multi-pool custom job ``CLUSTER_SPEC``:
JSON with each pool's ``host:port`` list and this replica's pool and index,
e.g. ``{"cluster": {"workerpool0": ["cmle-...-workerpool0-0:2222"],
"workerpool1": [...]}, "task": {"type": "workerpool1", "index": 0}}``.
keras-tuner wants the chief (``workerpool0``) to run the oracle, a gRPC
server every worker reaches, and each worker to have its own id:

    KERASTUNER_TUNER_ID     chief | tuner<index>
    KERASTUNER_ORACLE_IP    the chief's host name
    KERASTUNER_ORACLE_PORT  the chief's port from CLUSTER_SPEC (reserved for the job)

Variables already set are kept. Without ``CLUSTER_SPEC`` (a one-replica job,
a laptop) the command runs unchanged. The command replaces this process.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Mapping, Sequence

CHIEF_POOL = "workerpool0"


def tuner_env(cluster_spec: str) -> dict[str, str]:
    """The ``KERASTUNER_*`` variables for the replica that ``cluster_spec`` (CLUSTER_SPEC's JSON) describes."""
    spec = json.loads(cluster_spec)
    cluster, task = spec.get("cluster") or {}, spec.get("task") or {}
    chiefs = cluster.get(CHIEF_POOL) or []
    if not chiefs:
        raise ValueError(f"CLUSTER_SPEC has no {CHIEF_POOL} (the chief that runs the oracle)")
    host, _, port = str(chiefs[0]).rpartition(":")
    if not host or not port.isdigit():
        raise ValueError(f"CLUSTER_SPEC: {CHIEF_POOL} address {chiefs[0]!r} is not host:port")
    pool, index = str(task.get("type", "")), int(task.get("index", 0))
    tuner_id = "chief" if pool == CHIEF_POOL else f"tuner{index}"
    return {"KERASTUNER_TUNER_ID": tuner_id, "KERASTUNER_ORACLE_IP": host, "KERASTUNER_ORACLE_PORT": port}


def environment(environ: Mapping[str, str]) -> dict[str, str]:
    """``environ`` plus the keras-tuner variables it lacks (none without ``CLUSTER_SPEC``)."""
    env = dict(environ)
    if env.get("CLUSTER_SPEC"):
        for name, value in tuner_env(env["CLUSTER_SPEC"]).items():
            env.setdefault(name, value)
    return env


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if not args:
        print("usage: vertex_tuner_env.py COMMAND [ARGS...]", file=sys.stderr)
        return 2
    env = environment(os.environ)
    print(" ".join(f"{k}={env[k]}" for k in sorted(env) if k.startswith("KERASTUNER_")) or "no CLUSTER_SPEC", flush=True)
    os.execvpe(args[0], args, env)
    return 0  # not reached


if __name__ == "__main__":
    sys.exit(main())
