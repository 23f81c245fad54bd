"""The Ray executor against the local one, on the real system, in the same run.

A Ray cluster on this machine (``ray.cluster_utils``: a head that runs no simulation and one worker
node with ``nrp_sim`` slots) and, one after the other, two REST servers on the same broker and
storage: ``NRP_EXECUTOR=local`` and ``NRP_EXECUTOR=ray``. Each runs the real Simulation Server
on the bundled ``tf_exchange`` experiment. Printed: medians of POST-to-ready and of the stop of a
running simulation on each executor (the local figures are the baseline); the REST server's memory
(its own process, and with Ray the bridge process beside it); and what each running simulation
costs on its node beyond its Simulation Server: the memory (PSS) of its Ray actor's worker process.

Runs per scenario: ``NRP_BENCH_RUNS`` (default 7).
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import tempfile
from pathlib import Path

from benchmarks.bench_backend import post_to_ready, running_system, runs_wanted, stop_running
from benchmarks.bench_scale import descendants, memory

#: Simulations running at once when the per-simulation overhead is measured.
CONCURRENT = 3


def actor_pids() -> list[int]:
    """Processes of this machine that are Ray actors of the simulations (``ray::SimulationActor``)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        if cmdline.startswith(b"ray::SimulationActor"):
            found.append(int(entry.name))
    return found


def bridge_pids(rest_pid: int) -> list[int]:
    return [pid for pid in descendants(rest_pid) if b"ray_bridge" in _cmdline(pid)]


def _cmdline(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b""


def measure(work: Path, runs: int, extra_env: dict[str, str]) -> dict[str, object]:
    with running_system(work, extra_env) as system:
        rest_pid = system.backend.proc.pid
        warm = system.launch_ready("tf_exchange")
        system.set_state(warm, "stopped")
        idle_rest = memory([rest_pid])[0]
        idle_bridge = memory(bridge_pids(rest_pid))[0]
        ready, _stops = post_to_ready(system, runs)
        stops = stop_running(system, runs, pause_first=False)
        running = [system.launch_running() for _ in range(CONCURRENT)]
        actors = actor_pids()
        actor_rss, actor_pss = memory(actors)
        busy_rest = memory([rest_pid])[0]
        for sim_id in running:
            system.set_state(sim_id, "stopped")
    return {
        "ready": ready,
        "stop": stops,
        "rest_idle_mib": idle_rest,
        "rest_busy_mib": busy_rest,
        "bridge_mib": idle_bridge,
        "actors": len(actors),
        "actor_rss_mib": actor_rss / max(1, len(actors)),
        "actor_pss_mib": actor_pss / max(1, len(actors)),
    }


def main() -> None:
    import ray
    from ray.cluster_utils import Cluster

    runs = runs_wanted()
    load = os.getloadavg()
    print(f"{runs} runs per scenario; load {load[0]:.2f} on {os.cpu_count()} CPUs; Ray {ray.__version__}")
    cluster = Cluster(initialize_head=True, connect=False, head_node_args={"num_cpus": 1})
    work = Path(tempfile.mkdtemp(prefix="nrp-bench-ray-"))
    try:
        cluster.add_node(num_cpus=4, resources={"nrp_sim": 8})
        cluster.wait_for_nodes()
        local = measure(work / "local", runs, {"NRP_EXECUTOR": "local"})
        on_ray = measure(
            work / "ray",
            runs,
            {
                "NRP_EXECUTOR": "ray",
                "RAY_ADDRESS": cluster.address,
                "NRP_RAY_RESOURCES": json.dumps({"nrp_sim": 1}),
                "NRP_RAY_MEMORY_MB": "256",
            },
        )
    finally:
        cluster.shutdown()
        shutil.rmtree(work, ignore_errors=True)

    def ms(values: object) -> float:
        assert isinstance(values, list)
        return statistics.median(values) * 1000

    print(f"  {'(medians)':<44} {'local':>10} {'ray':>10} {'ray/local':>10}")
    for key, label in (("ready", "POST to ready (ms)"), ("stop", "stop of a running simulation (ms)")):
        ratio = ms(on_ray[key]) / ms(local[key])
        print(f"  {label:<44} {ms(local[key]):10.1f} {ms(on_ray[key]):10.1f} {ratio:9.2f}x")
    for key, label in (
        ("rest_idle_mib", "REST server RSS, idle (MiB)"),
        ("rest_busy_mib", f"REST server RSS, {CONCURRENT} running (MiB)"),
    ):
        print(f"  {label:<44} {local[key]:10.1f} {on_ray[key]:10.1f}")
    print(f"  {'Ray bridge process RSS (MiB)':<44} {'-':>10} {on_ray['bridge_mib']:10.1f}")
    print(
        f"  {'per simulation: its Ray actor, RSS / PSS (MiB)':<44} {'-':>10} "
        f"{on_ray['actor_rss_mib']:5.1f} / {on_ray['actor_pss_mib']:.1f}  ({on_ray['actors']} actors)"
    )


if __name__ == "__main__":
    main()
