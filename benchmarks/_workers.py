"""Timing benchmark variants each in its own process, the processes asked in turn.

A worker is the benchmark script itself run with ``--worker SPEC...``: it builds one variant
(``step`` and ``block`` callables), warms it up, then answers the driver over stdin/stdout: a
line ``n`` runs ``n`` timed steps and replies with their times, ``quit`` replies with the peak
RSS.  Separate processes keep each variant's allocations, caches and live arrays its own, as in
a training job (in one process, thousands of other live arrays slowed JAX's dispatch by half).
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import time
from collections.abc import Callable

REPLY = "@@bench "  # marks the protocol lines on a worker's stdout
Variant = tuple[Callable[[], object], Callable[[], object]]  # (step, block until done)


def serve(variant: Variant) -> None:
    """The worker's side: warm ``variant`` up, then answer the driver until ``quit``."""
    step, block = variant
    step()  # compile, allocate the state
    step()
    block()
    print(REPLY + "null", flush=True)
    for line in sys.stdin:
        if line.strip() == "quit":
            break
        times = []
        for _ in range(int(line)):
            start = time.perf_counter()
            step()
            block()
            times.append(time.perf_counter() - start)
        print(REPLY + json.dumps(times), flush=True)
    # VmHWM, not ru_maxrss: Linux carries ru_maxrss over from the parent across exec
    with open("/proc/self/status") as status:
        peak = next(int(line.split()[1]) / 1024 for line in status if line.startswith("VmHWM"))
    print(REPLY + json.dumps(peak), flush=True)


class Worker:
    """``script --worker *spec`` in its own process, built and warmed up on return."""

    def __init__(self, script: str, *spec: str) -> None:
        self.spec = spec
        self.proc = subprocess.Popen(
            [sys.executable, script, "--worker", *spec],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
        )  # fmt: skip
        self.ask(None)

    def ask(self, line: str | None):
        if line is not None:
            assert self.proc.stdin is not None
            self.proc.stdin.write(line + "\n")
            self.proc.stdin.flush()
        assert self.proc.stdout is not None
        for out in self.proc.stdout:
            if out.startswith(REPLY):
                return json.loads(out[len(REPLY) :])
        raise RuntimeError(f"benchmark worker {self.spec} exited with {self.proc.wait()}")


def time_in_workers(
    script: str, spec: list[str], names: list[str], steps: int, rounds: int = 6
) -> tuple[dict[str, float], dict[str, float]]:
    """Median ms per step and peak RSS (MB) of each variant ``name``, in a worker ``script
    --worker *spec name`` each; the workers are asked in turn, ``rounds`` times ``steps``
    steps (interleaved, so the machine's drift hits all alike)."""
    workers: dict[str, Worker] = {}
    try:
        for name in names:  # one at a time: each compiles alone
            workers[name] = Worker(script, *spec, name)
        samples: dict[str, list[float]] = {name: [] for name in names}
        for _ in range(rounds):
            for name, worker in workers.items():
                time.sleep(0.05)  # the previous worker's threads go idle
                samples[name] += worker.ask(str(steps))
        peaks = {name: worker.ask("quit") for name, worker in workers.items()}
    finally:
        for worker in workers.values():
            worker.proc.kill()
            worker.proc.wait()
    medians = {name: 1e3 * statistics.median(v) for name, v in samples.items()}
    return medians, peaks
