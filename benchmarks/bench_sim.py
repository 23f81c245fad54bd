"""Real-time factor and framework cost of the Braitenberg experiment (NEST brain + MuJoCo body).

For each brain size (``BRAITENBERG_NEURONS`` neurons per population) the experiment runs ``STEPS``
loop steps of 20 ms twice, on a fresh copy:

- in-process: every engine ``InProcess``, so the loop thread does all the work serially. The time
  spent inside the simulators (``nest.Simulate`` through the NEST engine's ``run_loop``, MuJoCo's
  ``SimulatorManager.run_step``) is measured around those calls; everything else per step is the
  framework: the loop, the transceiver functions, datapack conversion, the engine scripts' sensor
  code and the datatransfer recording;
- engine processes (the default launch): wall time per step and real-time factor; the framework
  cost is estimated as wall time minus the simulator time measured in-process (the engines of one
  batch run concurrently, so this may be lower than the in-process figure, and on a loaded machine
  process scheduling adds to it).

The two kinds of run alternate ``REPEATS`` times and medians are reported, so that a change in the
machine's load biases both alike.

Reported: real-time factor (simulated s per wall s), simulator ms per step, framework us per step
and its share of each step (wall time, and CPU time of the loop's process, which a loaded machine
inflates less), with NEST's device reads and writes (``GetStatus``/``SetStatus`` on the
registered devices) counted as simulator time and, for comparison, as framework time. Target: with
a NEST step >= 2 ms, the framework share stays < 10%.
Run with ``python -m benchmarks sim``.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import statistics
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

EXPERIMENT = Path(__file__).resolve().parent.parent / "experiments" / "braitenberg_vehicle"
UPSTREAM = Path(__file__).resolve().parents[2] / "shared" / "upstream" / "nrp-core"  # nrp-core's examples
OSIM_STEPS = 100
EYE_ANGLE = 1.0471975511965976  # 60 degrees, as in vehicle.py
STEPS = 200
STEP_S = 0.02
REPEATS = 5  # the kinds of run alternate; medians (measure) or the best (measure_overhead) are reported
BRAIN_SIZES = (100, 400)
IN_PROCESS = [f'EngineConfigs.{index}.EngineLaunchCommand={{"LaunchType":"InProcess"}}' for index in range(3)]


class _SimulatorClock:
    """Accumulates the wall and CPU time in-process engines spend inside the simulators' own calls.

    Categories: ``nest`` (``nest.Simulate`` through the NEST engine's ``run_loop``), ``mujoco``
    (``SimulatorManager.run_step``) and ``devices`` (NEST device reads and writes:
    ``NodeCollection.get`` and ``set``, what ``nest.GetStatus``/``SetStatus`` do).
    """

    CATEGORIES = ("nest", "mujoco", "devices")

    def __init__(self) -> None:
        self.wall = dict.fromkeys(self.CATEGORIES, 0.0)
        self.cpu = dict.fromkeys(self.CATEGORIES, 0.0)
        self._depth = 0  # NodeCollection.set calls get: time the outermost call only

    def reset(self) -> None:
        for totals in (self.wall, self.cpu):
            for category in totals:
                totals[category] = 0.0

    def _timed(self, function, category):  # type: ignore[no-untyped-def]
        clock = self

        def timed(*args, **kwargs):  # type: ignore[no-untyped-def]
            clock._depth += 1
            wall, cpu = time.perf_counter(), time.process_time()
            try:
                return function(*args, **kwargs)
            finally:
                clock._depth -= 1
                if clock._depth == 0:
                    clock.wall[category] += time.perf_counter() - wall
                    clock.cpu[category] += time.process_time() - cpu

        return timed

    @contextlib.contextmanager
    def installed(self) -> Iterator[None]:
        import nest
        from nest import nestkernel_api

        from nrp_core.engines.nest_json.server import NestEngineServer
        from nrp_core.engines.py_sim.SimManager import SimulatorManager

        patches = [
            (NestEngineServer, "run_loop", "nest"),
            (SimulatorManager, "run_step", "mujoco"),
            (nest.NodeCollection, "get", "devices"),
            (nest.NodeCollection, "set", "devices"),
            (nestkernel_api, "llapi_get_nc_status", "devices"),  # what the engine calls
            (nestkernel_api, "llapi_set_nc_status", "devices"),
        ]
        originals = [getattr(owner, name) for owner, name, _ in patches]
        for (owner, name, category), original in zip(patches, originals, strict=True):
            setattr(owner, name, self._timed(original, category))
        try:
            yield
        finally:
            for (owner, name, _), original in zip(patches, originals, strict=True):
                setattr(owner, name, original)


class _NoSimulate:
    """``nest`` with a ``Simulate`` that does nothing: what remains of a step is all but NEST's work."""

    def __init__(self, nest: Any) -> None:
        self._nest = nest

    def __getattr__(self, name: str) -> Any:
        return getattr(self._nest, name)

    def Simulate(self, _time_ms: float) -> None:  # noqa: N802 - NEST's name
        pass


@contextlib.contextmanager
def _without_simulate() -> Iterator[None]:
    """In-process NEST engines created meanwhile skip ``nest.Simulate``."""
    from nrp_core.engines.nest_json.server import NestEngineServer

    original = NestEngineServer.__init__

    def init(self: NestEngineServer) -> None:
        original(self)
        self.nest = _NoSimulate(self.nest)

    NestEngineServer.__init__ = init  # type: ignore[method-assign]
    try:
        yield
    finally:
        NestEngineServer.__init__ = original  # type: ignore[method-assign]


def _run(neurons: int, overrides: list[str], clock: _SimulatorClock | None) -> tuple[float, float]:
    """Wall and CPU seconds (this process) per step of ``STEPS`` steps, after a warm-up step."""
    from nrp_core import NrpCore

    os.environ["BRAITENBERG_NEURONS"] = str(neurons)
    with tempfile.TemporaryDirectory(prefix="nrp-bench-sim-") as folder:
        experiment = Path(folder) / "braitenberg_vehicle"
        shutil.copytree(EXPERIMENT, experiment, ignore=shutil.ignore_patterns("__pycache__", "data"))
        options = [f"SimulationTimeout={STEPS * STEP_S + 1}", *overrides]
        args = " ".join(f"-o {override}" for override in options)
        client = NrpCore("localhost:5345", experiment_folder=str(experiment), args=args)
        try:
            client.initialize()
            client.run_loop(1)
            if clock is not None:
                clock.reset()
            wall, cpu = time.perf_counter(), time.process_time()
            client.run_loop(STEPS)
            wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        finally:
            client.shutdown()
    return wall / STEPS, cpu / STEPS


def measure(neurons: int) -> dict[str, float]:
    """The figures for one brain size (medians over ``REPEATS`` alternating runs)."""
    runs: dict[str, list[float]] = {}

    def keep(**values: float) -> None:
        for key, value in values.items():
            runs.setdefault(key, []).append(value)

    for _ in range(REPEATS):
        clock = _SimulatorClock()
        with clock.installed(), open(os.devnull, "w") as sink, contextlib.redirect_stdout(sink):
            wall, cpu = _run(neurons, IN_PROCESS, clock)
        stepping_wall = clock.wall["nest"] + clock.wall["mujoco"]
        stepping_cpu = clock.cpu["nest"] + clock.cpu["mujoco"]
        keep(
            wall=wall,
            nest=clock.wall["nest"] / STEPS,
            stepping=stepping_wall / STEPS,
            devices=clock.wall["devices"] / STEPS,
            framework_wall=wall - (stepping_wall + clock.wall["devices"]) / STEPS,
            framework_cpu=cpu - (stepping_cpu + clock.cpu["devices"]) / STEPS,
            cpu=cpu,
            process_wall=_run(neurons, [], None)[0],
        )
    figures = {key: statistics.median(values) for key, values in runs.items()}
    simulators = figures["stepping"] + figures["devices"]
    figures["framework_share"] = figures["framework_wall"] / figures["wall"]
    figures["framework_cpu_share"] = figures["framework_cpu"] / figures["cpu"]
    figures["share_with_devices"] = (figures["framework_wall"] + figures["devices"]) / figures["wall"]
    figures["process_framework"] = figures["process_wall"] - simulators
    figures["process_share"] = figures["process_framework"] / figures["process_wall"]
    return figures


def _brain_devices(neurons: int) -> dict[str, Any]:
    """Build the Braitenberg brain with plain NEST (the brain script, its devices by name)."""
    import nest

    from nrp_core.engines import nest_json

    os.environ["BRAITENBERG_NEURONS"] = str(neurons)
    nest_json._devices.clear()
    source = (EXPERIMENT / "brain.py").read_text()
    exec(compile(source, str(EXPERIMENT / "brain.py"), "exec"), {"__name__": "__brain__"})
    nest.SetKernelStatus({"rng_seed": 1234})
    if hasattr(nest, "VerbosityLevel"):
        nest.verbosity = nest.VerbosityLevel.ERROR
    return dict(nest_json.GetDevMap())


def _alone(neurons: int, with_body: bool, simulate: bool = True) -> tuple[float, float]:
    """Wall and CPU seconds per step of the experiment's work in a plain loop, on the simulators' APIs.

    NEST alone: per step, set the eyes' rates, ``nest.Simulate(20)``, read both spike recorders
    (whole status, as a datapack carries) and empty them, through NEST's low-level status calls.
    With the body, also what the vehicle script and the functions do: MuJoCo's controls, its four
    5 ms steps, the eyes computed from the body and light positions, and the record line written and
    flushed. No framework at all.
    """
    import math
    import warnings

    import mujoco
    import nest
    from nest import nestkernel_api

    warnings.filterwarnings("ignore")
    # NEST's fastest way to the devices, what NodeCollection.get/set end in (the engine uses it too)
    get_status, set_status = nestkernel_api.llapi_get_nc_status, nestkernel_api.llapi_set_nc_status
    devices = _brain_devices(neurons)
    eyes, left, right = devices["eyes"], devices["left_motor_spikes"], devices["right_motor_spikes"]
    model = mujoco.MjModel.from_xml_path(str(EXPERIMENT / "model" / "vehicle.xml"))
    data = mujoco.MjData(model)
    mujoco.mj_forward(model, data)
    substeps = round(STEP_S / model.opt.timestep)
    robot, light = model.body("robot").id, model.site("light").id
    wheels, seen = [0.0, 0.0], [0.96, 0.44]
    with tempfile.TemporaryFile("w") as record:

        def step(index: int) -> None:
            nonlocal wheels, seen
            set_status(eyes._datum, [{"rate": 12000.0 * seen[0]}, {"rate": 12000.0 * seen[1]}])
            if simulate:
                nest.Simulate(STEP_S * 1e3)
            counts = [get_status(left._datum)["n_events"][0], get_status(right._datum)["n_events"][0]]
            set_status(left._datum, [{"n_events": 0}])
            set_status(right._datum, [{"n_events": 0}])
            if not with_body:
                return
            wheels = [0.04 * count / (20 * STEP_S) for count in counts]
            data.ctrl[:] = wheels
            for _ in range(substeps):
                mujoco.mj_step(model, data)
            x, y = data.xpos[robot][0], data.xpos[robot][1]
            w, qx, qy, qz = data.xquat[robot]
            heading = math.atan2(2.0 * (w * qz + qx * qy), 1.0 - 2.0 * (qy * qy + qz * qz))
            bearing = math.atan2(data.site_xpos[light][1] - y, data.site_xpos[light][0] - x)
            seen = [0.5 * (1.0 + math.cos(bearing - heading - a)) for a in (EYE_ANGLE, -EYE_ANGLE)]
            line = {"t": index * STEP_S, "x": float(x), "y": float(y), "eyes": seen, "wheels": wheels}
            record.write(json.dumps({"time_ns": index, "data": line}, separators=(",", ":")) + "\n")
            record.flush()

        step(0)
        wall, cpu = time.perf_counter(), time.process_time()
        for index in range(1, STEPS + 1):
            step(index)
        return (time.perf_counter() - wall) / STEPS, (time.process_time() - cpu) / STEPS


def _process_framework(figures: dict[str, float]) -> str:
    if figures["process_framework"] <= 0:
        return "not measurable: faster than the serial simulator time (the engines overlapped)"
    return f"~{figures['process_framework'] * 1e6:.0f} us/step = {figures['process_share']:.1%} of the step"


def measure_overhead(neurons: int) -> dict[str, float]:
    """NEST alone, NEST + MuJoCo alone and the full loop (in-process and engine processes), alternating.

    The framework's share is what the full loop costs beyond the same work done by a plain loop. As
    NEST's step varies by more than the framework costs on a loaded machine, the framework's cost is
    measured on both loops with ``nest.Simulate`` skipped (``alone_bare``, ``loop_bare``: every other
    call the same) and set against the real in-process step. Each
    figure is the best of ``REPEATS`` runs: on a shared machine the load only ever adds time. For the
    in-process runs (all work in this process) CPU time is reported too, which the load inflates less.
    """
    runs: dict[str, list[float]] = {}
    for _ in range(REPEATS):
        with open(os.devnull, "w") as sink, contextlib.redirect_stdout(sink):
            for key, (wall, cpu) in (
                ("nest", _alone(neurons, with_body=False)),
                ("alone", _alone(neurons, with_body=True)),
                ("loop", _run(neurons, IN_PROCESS, None)),
            ):
                runs.setdefault(key, []).append(wall)
                runs.setdefault(f"{key}_cpu", []).append(cpu)
            runs.setdefault("processes", []).append(_run(neurons, [], None)[0])
            # the same without NEST's own work: short, so the machine's load hardly blurs the difference
            runs.setdefault("alone_bare", []).append(_alone(neurons, with_body=True, simulate=False)[0])
            with _without_simulate():
                runs.setdefault("loop_bare", []).append(_run(neurons, IN_PROCESS, None)[0])
    return {key: min(values) for key, values in runs.items()}


def opensim_arm() -> tuple[float, float] | None:
    """ms per 10 ms step of nrp-core's arm26 model: py_sim ``SimulatorManager`` and OpenSim directly."""
    import importlib.util

    arm = UPSTREAM / "examples" / "pysim_examples" / "opensim_control" / "arm26" / "arm26_ground_offset.osim"
    if importlib.util.find_spec("opensim") is None or not arm.is_file():
        return None
    import opensim as osim

    from nrp_core.engines.py_sim import SimulatorManager

    action = [0.0, 0.0, 0.0, 0.2, 0.2, 0.2]
    config = {"EngineName": "arm", "Simulator": "Opensim", "WorldFileName": str(arm), "EngineTimestep": 0.01}
    sim = SimulatorManager(config)
    backend: Any = sim.sim_interface
    model, constants = backend.model, backend._excitations
    elbow = model.getCoordinateSet().get("r_elbow_flex")
    managed, direct = [], []
    for _ in range(REPEATS):  # alternating, best of each: the same trajectory from the initial state
        sim.reset()
        wall = time.perf_counter()
        for _ in range(OSIM_STEPS):
            sim.run_step(action, 10_000_000)
            sim.get_model_property("r_elbow_flex", "Joint")
        managed.append((time.perf_counter() - wall) / OSIM_STEPS)
        state = model.initializeState()
        integrator = osim.Manager(model)
        integrator.setIntegratorAccuracy(5e-5)
        integrator.initialize(state)
        wall = time.perf_counter()
        for index in range(1, OSIM_STEPS + 1):
            for constant, value in zip(constants, action, strict=True):
                constant.setValue(value)
            state = integrator.integrate(index * 0.01)
            model.realizeDynamics(state)  # as the engine does after each step
            elbow.getValue(state)
        direct.append((time.perf_counter() - wall) / OSIM_STEPS)
    return min(managed), min(direct)


def nest_server_against_nest_json(neurons: int) -> dict[str, float]:
    """Wall time per step of the experiment with its brain on ``nest_json`` and on ``nest_server``."""
    runs: dict[str, list[float]] = {}
    server = ['EngineConfigs.1.EngineType="nest_server"']
    for _ in range(REPEATS):
        with open(os.devnull, "w") as sink, contextlib.redirect_stdout(sink):
            runs.setdefault("nest_json", []).append(_run(neurons, [], None)[0])
            runs.setdefault("nest_server", []).append(_run(neurons, server, None)[0])
    return {key: statistics.median(values) for key, values in runs.items()}


def main() -> None:
    os.environ.setdefault("PYNEST_QUIET", "1")
    print(
        f"Braitenberg vehicle, {STEPS} steps of {STEP_S * 1e3:.0f} ms (MuJoCo body, NEST brain, recorder); "
        f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f} at start"
    )
    for neurons in BRAIN_SIZES:
        o = measure_overhead(neurons)
        framework = o["loop_bare"] - o["alone_bare"]
        print(
            f"  {neurons:4d} neurons/population: framework {framework * 1e6:.0f} us/step = "
            f"{framework / o['loop']:.1%} of the in-process step "
            f"(plain loop {o['alone_bare'] * 1e6:.0f} us/step, "
            f"full loop {o['loop_bare'] * 1e6:.0f} us/step, both without NEST's Simulate)"
        )
        loop_framework, process_framework = o["loop"] - o["alone"], o["processes"] - o["alone"]
        cpu_framework = o["loop_cpu"] - o["alone_cpu"]
        print(
            f"  {neurons:4d} neurons/population, same run (best of {REPEATS}): NEST alone "
            f"{o['nest'] * 1e3:.2f} ms/step, NEST + MuJoCo alone {o['alone'] * 1e3:.2f} ms/step\n"
            f"    full loop, in-process engines: {o['loop'] * 1e3:.2f} ms/step, "
            f"RTF {STEP_S / o['loop']:.2f}; "
            f"framework {loop_framework * 1e6:.0f} us/step = {loop_framework / o['loop']:.1%} of the step "
            f"(CPU time: NEST alone {o['nest_cpu'] * 1e3:.2f}, "
            f"NEST + MuJoCo alone {o['alone_cpu'] * 1e3:.2f}, "
            f"loop {o['loop_cpu'] * 1e3:.2f} ms/step, framework {cpu_framework * 1e6:.0f} us/step = "
            f"{cpu_framework / o['loop_cpu']:.1%})\n"
            f"    full loop, engine processes:   {o['processes'] * 1e3:.2f} ms/step, "
            f"RTF {STEP_S / o['processes']:.2f}; framework {process_framework * 1e6:.0f} us/step = "
            f"{process_framework / o['processes']:.1%} of the step"
        )
        f = measure(neurons)
        print(
            f"    inside the in-process loop: NEST {f['nest'] * 1e3:.2f} ms/step, NEST + MuJoCo "
            f"{f['stepping'] * 1e3:.2f} ms/step, NEST device get/set {f['devices'] * 1e6:.0f} us/step; "
            f"everything else {f['framework_wall'] * 1e6:.0f} us/step = {f['framework_share']:.1%}; "
            f"engine processes: framework {_process_framework(f)}"
        )
    figures = nest_server_against_nest_json(BRAIN_SIZES[0])
    print(
        f"  brain engine ({BRAIN_SIZES[0]} neurons/population, engine processes): nest_json "
        f"{figures['nest_json'] * 1e3:.2f} ms/step, nest_server {figures['nest_server'] * 1e3:.2f} ms/step "
        f"(+{(figures['nest_server'] - figures['nest_json']) * 1e6:.0f} us/step)"
    )
    arm = opensim_arm()
    if arm is None:
        print("  OpenSim arm: skipped (opensim or nrp-core's examples not available)")
    else:
        print(
            f"  OpenSim arm26, {OSIM_STEPS} steps of 10 ms: py_sim {arm[0] * 1e3:.2f} ms/step, "
            f"OpenSim directly {arm[1] * 1e3:.2f} ms/step"
        )


if __name__ == "__main__":
    main()
