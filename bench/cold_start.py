"""Cold start: each function's import, against a bare boto3 import and DynamoDB client, side by side in one run.

For every function of template.yaml, a fresh interpreter imports the function's module (as Lambda does on a cold
start, with the template's environment and the function's name set, so Powertools behaves as on Lambda) and makes
the DynamoDB client its first request would make. The baseline is a fresh interpreter that imports boto3 and makes a
DynamoDB client, nothing else. Interpreter start-up is outside both timings. The targets are interleaved round by
round so the machine's drift falls on all of them alike; each figure is the median of its rounds.

    make bench-cold            (BENCH_COLD_ROUNDS=15 by default)

Target (issue 10): every function <= 1.6x the baseline. The floors (Powertools and pydantic alone, per kind of
trigger) are measured in the same rounds.
"""

import os
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Any

from infra.local.lambdas import Function, functions
from infra.local.resources import load_template

ROOT = Path(__file__).resolve().parents[1]
LAYER = ROOT / "layers" / "loyalty"
ROUNDS = int(os.environ.get("BENCH_COLD_ROUNDS", "15"))
TARGET = 1.6

BASELINE = """
import time
start = time.perf_counter()
import boto3
boto3.client("dynamodb")
print(time.perf_counter() - start)
"""

FUNCTION = """
import time
start = time.perf_counter()
import {module}
{module}.{attribute}
from loyalty import runtime
runtime.services().db.client
print(time.perf_counter() - start)
"""

# What Powertools alone costs each kind of function before any code of ours: its Logger, Tracer and Metrics, with
# the API's event handler (validation on, as the project requires) or the SQS batch processor, and pydantic. A
# function cannot import faster than its floor; "ours" below is what a function adds above it.
FLOOR = """
import time
start = time.perf_counter()
import boto3
boto3.client("dynamodb")
import pydantic
from aws_lambda_powertools import Logger, Metrics, Tracer
Logger(); Tracer(); Metrics()
{extra}
print(time.perf_counter() - start)
"""
FLOORS = {
    "floor: Powertools for an API": (
        "from aws_lambda_powertools.event_handler import APIGatewayRestResolver\n"
        "APIGatewayRestResolver(enable_validation=True)"
    ),
    "floor: Powertools for SQS": (
        "from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType\nBatchProcessor(EventType.SQS)"
    ),
    "floor: Powertools for a schedule": "",
}


def floor_of(function: Function) -> str:
    """Which floor a function stands on: its trigger's."""
    if function.logical_id in ("ApiFunction", "WebhooksFunction"):
        return "floor: Powertools for an API"
    if function.queue or function.stream:
        return "floor: Powertools for SQS"
    return "floor: Powertools for a schedule"


def environment(function_id: str, extra: dict[str, Any], code_dir: Path | None) -> dict[str, str]:
    env = {
        "PATH": os.environ.get("PATH", ""),
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_REGION": "us-east-1",
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_LAMBDA_FUNCTION_NAME": function_id,
        # As on Lambda: the X-Ray SDK then samples locally instead of making an X-Ray client at import.
        "LAMBDA_TASK_ROOT": str(code_dir or ROOT),
    }
    if code_dir is not None:
        env["PYTHONPATH"] = f"{LAYER}{os.pathsep}{code_dir}"
        # The template's environment; references (!Ref, !GetAtt) become placeholders.
        variables = load_template()["Globals"]["Function"]["Environment"]["Variables"] | extra
        env |= {name: placeholder(name, value) for name, value in variables.items()}
    return env


def placeholder(name: str, value: Any) -> str:
    if name == "DUE_SHARDS":
        return "8"
    return str(value) if isinstance(value, str | int) else "x"


def seconds(code: str, env: dict[str, str]) -> float:
    # Our own interpreter on our own snippet: nothing untrusted reaches the command line.
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=False)  # noqa: S603
    if done.returncode != 0:
        raise SystemExit(f"failed:\n{done.stderr}")
    return float(done.stdout.strip().splitlines()[-1])


def main() -> None:
    targets: dict[str, tuple[str, dict[str, str]]] = {"boto3 + DynamoDB client": (BASELINE, environment("", {}, None))}
    for name, extra in FLOORS.items():
        targets[name] = (FLOOR.format(extra=extra), environment("Floor", {"POWERTOOLS_SERVICE_NAME": "floor"}, ROOT))
    template_functions = functions()
    floors = {function_id: floor_of(function) for function_id, function in template_functions.items()}
    for function_id, function in template_functions.items():
        code = FUNCTION.format(module=function.module, attribute=function.attribute)
        targets[function_id] = (code, environment(function_id, function.environment, function.code_dir))
    for code, env in targets.values():  # compile every module once, as a deployed package ships .pyc files
        seconds(code, env)
    times: dict[str, list[float]] = {name: [] for name in targets}
    for _ in range(ROUNDS):
        for name, (code, env) in targets.items():
            times[name].append(seconds(code, env))
    base = statistics.median(times["boto3 + DynamoDB client"])
    print(f"cold import, median of {ROUNDS} interleaved rounds ({os.cpu_count()} cores)")
    print(f"{'':34} {'ms':>7} {'x baseline':>11} {'ours (x)':>9}")
    medians = {name: statistics.median(samples) for name, samples in times.items()}
    worst = 0.0
    for name, median in medians.items():
        ratio = median / base
        ours = f"{(median - medians[floors[name]]) / base:9.2f}" if name in floors else ""
        if name in floors:
            worst = max(worst, ratio)
        print(f"{name:34} {median * 1000:7.0f} {ratio:11.2f} {ours}")
    verdict = "met" if worst <= TARGET else "NOT met"
    print(f"worst function: {worst:.2f}x the baseline (target <= {TARGET}x: {verdict})")
    print("ours (x): the function's import less its floor's, in baselines")


if __name__ == "__main__":
    main()
