"""A second user's main script against the sandbox (``NRP_SANDBOX=bwrap``), with the real Simulation Server.

Each test uploads an experiment whose ``main_script.py`` is the attack, launches it through a real
REST server and checks what it could do: read the data root's ``nrp-up.env``, another simulation's
directory, the storage root; allocate 5 GiB; leave a ``start_new_session=True`` grandchild behind.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import textwrap
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from hbp_nrp_backend.sandbox import python_paths
from tests.backend.conftest import REPO, Backend, BackendFactory, Storage

pytestmark = pytest.mark.skipif(shutil.which("bwrap") is None, reason="bubblewrap is not installed")

SANDBOXED = {"NRP_SIMSERVER_MODULE": "hbp_nrp_simserver", "NRP_SANDBOX": "bwrap"}
#: The end of a script that runs until stopped without keeping a core busy.
UNTIL_STOPPED = "import time\nwhile True:\n    nrp.run_loop()\n    time.sleep(0.02)\n"


def upload(storage: Storage, folder: Path, name: str, script: str, timeout: int = 3600) -> str:
    """An experiment ``name`` without engines whose main script is ``script``."""
    source = folder / name
    source.mkdir()
    config = {"SimulationName": name, "SimulationTimeout": timeout, "EngineConfigs": []}
    (source / "simulation_config.json").write_text(json.dumps(config))
    (source / "main_script.py").write_text(textwrap.dedent(script))
    storage.client().upload_experiment(storage.alice, name, source)
    return name


def console(backend: Backend, sim_id: int) -> str:
    """The Simulation Server's console log (``simulation_<id>.log``) while it runs."""
    files = backend.rest.get(f"/simulation/{sim_id}/logs", params={"name": f"simulation_{sim_id}.log"}).json()
    return "".join(f["content"] for f in files["files"])


def run_to_end(backend: Backend, experiment: str) -> dict[str, Any]:
    rest = backend.rest
    sim_id = rest.launch(experiment)["simulationID"]
    rest.wait_for(sim_id, lambda s: s["ready"] or s["state"] == "failed", timeout=60)
    rest.set_state(sim_id, "started")
    return rest.wait_for(sim_id, lambda s: s["state"] in ("completed", "failed"), timeout=120)


PROBE = """
import json, os
found = {}
def probe(name, action):
    try:
        result = action()
        found[name] = "allowed: " + repr(result)[:80]
    except OSError as exc:
        found[name] = "denied: " + type(exc).__name__
probe("data_env", lambda: open(%(env)r).read())
probe("data_root", lambda: os.listdir(%(data)r))
probe("storage_root", lambda: os.listdir(%(storage)r))
probe("storage_write", lambda: open(os.path.join(%(storage)r, "evil"), "w").write("x"))
probe("other_simulation", lambda: os.listdir(%(other)r))
probe("other_file", lambda: open(os.path.join(%(other)r, "main_script.py")).read())
probe("tmp", lambda: sorted(os.listdir("/tmp")))
probe("own_dir", lambda: open("mine.txt", "w").write("mine"))
found["uid"] = os.getuid()
print("PROBE " + json.dumps(found), flush=True)
"""


def test_a_script_sees_neither_the_data_root_nor_storage_nor_another_simulation(
    start_backend: BackendFactory, storage: Storage, tmp_path: Path
) -> None:
    backend = start_backend(**SANDBOXED)
    backend.data_dir.mkdir(parents=True, exist_ok=True)
    env_file = backend.data_dir / "nrp-up.env"
    env_file.write_text("NRP_TOKEN=nrpuser-secret\n")
    # another user's simulation, ready (its directory holds its experiment files)
    waiting = upload(storage, tmp_path, "sandbox_victim", UNTIL_STOPPED)
    victim = backend.rest.launch(waiting)["simulationID"]
    backend.rest.wait_for(victim, lambda s: s["ready"], timeout=60)
    other = Path(os.readlink(backend.env["NRP_SIMULATION_DIR"]))  # the newest simulation's directory
    assert (other / "main_script.py").is_file()
    values = {
        "env": str(env_file),
        "data": str(backend.data_dir),
        "storage": str(storage.root),
        "other": str(other),
    }
    attack = upload(storage, tmp_path, "sandbox_probe", PROBE % values + UNTIL_STOPPED)
    rest = backend.rest
    sim_id = rest.launch(attack)["simulationID"]
    rest.wait_for(sim_id, lambda s: s["ready"] or s["state"] == "failed", timeout=60)
    rest.set_state(sim_id, "started")
    rest.wait_for(
        sim_id, lambda s: "PROBE " in console(backend, sim_id) or s["state"] == "failed", timeout=60
    )
    line = next(line for line in console(backend, sim_id).splitlines() if line.startswith("PROBE "))
    found = json.loads(line[len("PROBE ") :])
    for name in ("data_env", "data_root", "storage_root", "storage_write", "other_simulation", "other_file"):
        assert found[name].startswith("denied"), (name, found)
    # a private /tmp that holds only its own directory, and the read-only folders of the Python
    # installation if it lies under /tmp (a checkout there)
    installed = {
        path.parts[2] for path in map(Path, python_paths("hbp_nrp_simserver")) if path.parts[1:2] == ("tmp",)
    }
    assert found["tmp"].startswith("allowed: ["), found
    names = re.findall(r"'([^']*)'", found["tmp"])
    assert any(name.startswith(f"nrp.{sim_id}.") for name in names), found
    assert all(name.startswith(f"nrp.{sim_id}.") or name in installed for name in names), (installed, found)
    assert found["own_dir"].startswith("allowed"), found
    if os.geteuid() == 0:
        assert found["uid"] not in (0, os.getuid()), found
    assert not (storage.root / "evil").exists()
    assert rest.set_state(sim_id, "stopped").json()["state"] == "stopped"
    assert rest.set_state(victim, "stopped").json()["state"] == "stopped"


def test_simulations_run_as_different_uids(
    start_backend: BackendFactory, storage: Storage, tmp_path: Path
) -> None:
    if os.geteuid() != 0:
        pytest.skip("a uid per simulation needs a REST server running as root")
    backend = start_backend(**SANDBOXED)
    # one write (print() writes each argument on its own, and the unbuffered console interleaves
    # the simserver's log lines between them)
    script = "import os, sys\nsys.stdout.write(f'UID {os.getuid()}\\n')\n" + UNTIL_STOPPED
    experiment = upload(storage, tmp_path, "sandbox_uid", script)
    uids = []
    rest = backend.rest
    for _ in range(2):
        sim_id = rest.launch(experiment)["simulationID"]
        sim = rest.wait_for(sim_id, lambda s: s["ready"] or s["state"] == "failed", timeout=60)
        assert sim["state"] == "paused", sim
        assert rest.set_state(sim_id, "started").status_code == 200
        sim = rest.wait_for(
            sim_id, lambda s, i=sim_id: s["state"] != "started" or "UID " in console(backend, i), timeout=60
        )
        assert sim["state"] == "started", sim
        assert "UID " in console(backend, sim_id), console(backend, sim_id)
        uids.append(int(console(backend, sim_id).split("UID ", 1)[1].split()[0]))
        assert rest.set_state(sim_id, "stopped").json()["state"] == "stopped"
    assert 0 not in uids and uids[0] != uids[1], uids


def test_five_gib_fail_the_simulation_naming_the_memory_limit(
    start_backend: BackendFactory, storage: Storage, tmp_path: Path
) -> None:
    backend = start_backend(**SANDBOXED, NRP_SANDBOX_MEMORY_MB="400")
    experiment = upload(
        storage, tmp_path, "sandbox_memory", "hog = bytearray(5 * 1024**3)\nprint('allocated')\n"
    )
    sim = run_to_end(backend, experiment)
    assert sim["state"] == "failed", sim
    assert (
        "memory limit of 400 MiB" in sim["error"]["msg"] and "NRP_SANDBOX_MEMORY_MB" in sim["error"]["msg"]
    ), sim


def test_a_cpu_hog_fails_naming_the_cpu_limit(
    start_backend: BackendFactory, storage: Storage, tmp_path: Path
) -> None:
    backend = start_backend(**SANDBOXED, NRP_SANDBOX_CPU_SECONDS="3")
    experiment = upload(storage, tmp_path, "sandbox_cpu", "while True:\n    pass\n")
    sim = run_to_end(backend, experiment)
    assert sim["state"] == "failed", sim
    assert "CPU time limit of 3 s" in sim["error"]["msg"], sim


def test_the_cpu_limit_counts_all_processes_together(
    start_backend: BackendFactory, storage: Storage, tmp_path: Path
) -> None:
    """Three children burning 2 s each: none crosses 4 s alone, together they do."""
    backend = start_backend(**SANDBOXED, NRP_SANDBOX_CPU_SECONDS="4")
    script = """
    import subprocess, sys, time
    burn = "import time\\nend = time.process_time() + 2\\n"
    burn += "while time.process_time() < end: pass\\ntime.sleep(3600)"
    children = [subprocess.Popen([sys.executable, "-c", burn]) for _ in range(3)]
    while True:
        nrp.run_loop()
        time.sleep(0.05)
    """
    sim = run_to_end(backend, upload(storage, tmp_path, "sandbox_cpu_all", script))
    assert sim["state"] == "failed", sim
    assert "CPU time limit of 4 s (NRP_SANDBOX_CPU_SECONDS): " in sim["error"]["msg"], sim


def test_a_log_flood_fails_naming_the_log_limit(
    start_backend: BackendFactory, storage: Storage, tmp_path: Path
) -> None:
    backend = start_backend(**SANDBOXED, NRP_SANDBOX_LOG_MB="2")
    script = "line = 'x' * 1000\nwhile True:\n    print(line)\n"
    sim = run_to_end(backend, upload(storage, tmp_path, "sandbox_log", script))
    assert sim["state"] == "failed", sim
    assert "log size limit of 2 MiB" in sim["error"]["msg"], sim


def test_a_file_beyond_the_file_size_limit_fails_naming_it(
    start_backend: BackendFactory, storage: Storage, tmp_path: Path
) -> None:
    backend = start_backend(**SANDBOXED, NRP_SANDBOX_FILE_MB="1")
    script = """
    import time
    try:
        with open("big.bin", "wb") as f:
            f.write(b"x" * (2 * 1024 * 1024))
    except OSError as exc:
        print("FSIZE", exc.errno, flush=True)  # EFBIG: the kernel refused the write
    while True:
        nrp.run_loop()
        time.sleep(0.02)
    """
    sim = run_to_end(backend, upload(storage, tmp_path, "sandbox_fsize", script))
    assert sim["state"] == "failed", sim
    assert "file size limit of 1 MiB (NRP_SANDBOX_FILE_MB): big.bin" in sim["error"]["msg"], sim


def test_a_thread_bomb_fails_naming_the_process_limit(
    start_backend: BackendFactory, storage: Storage, tmp_path: Path
) -> None:
    backend = start_backend(**SANDBOXED, NRP_SANDBOX_PROCESSES="64")
    script = """
    import threading, time
    while True:
        try:
            threading.Thread(target=time.sleep, args=(3600,), daemon=True).start()
        except RuntimeError:
            time.sleep(0.01)
    """
    sim = run_to_end(backend, upload(storage, tmp_path, "sandbox_threads", script))
    assert sim["state"] == "failed", sim
    assert "process limit of 64 (NRP_SANDBOX_PROCESSES)" in sim["error"]["msg"], sim


def alive_with(marker: str) -> list[int]:
    """PIDs (host view) of processes whose command line holds ``marker``."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                if marker in Path(f"/proc/{entry}/cmdline").read_text():
                    state = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[-1].split()[0]
                    if state != "Z":
                        found.append(int(entry))
            except OSError:
                continue
    return found


def test_a_grandchild_in_its_own_session_is_gone_after_stop(
    start_backend: BackendFactory, storage: Storage, tmp_path: Path
) -> None:
    marker = f"nrp-escapee-{uuid.uuid4().hex}"
    script = f"""
    import subprocess, sys, time
    sleeper = [sys.executable, "-c", "import time; time.sleep(3600)", "{marker}"]
    subprocess.Popen(sleeper, start_new_session=True)
    print("SPAWNED", flush=True)
    while True:
        nrp.run_loop()
        time.sleep(0.02)
    """
    backend = start_backend(**SANDBOXED)
    rest = backend.rest
    sim_id = rest.launch(upload(storage, tmp_path, "sandbox_escape", script))["simulationID"]
    rest.wait_for(sim_id, lambda s: s["ready"], timeout=60)
    rest.set_state(sim_id, "started")
    rest.wait_for(sim_id, lambda s: "SPAWNED" in console(backend, sim_id), timeout=60)
    assert alive_with(marker), "the grandchild never started"
    assert rest.set_state(sim_id, "stopped").json()["state"] == "stopped"
    gone(marker)


def test_a_grandchild_in_its_own_session_is_gone_after_a_crash(
    start_backend: BackendFactory, storage: Storage, tmp_path: Path
) -> None:
    marker = f"nrp-escapee-{uuid.uuid4().hex}"
    script = f"""
    import os, subprocess, sys, time
    sleeper = [sys.executable, "-c", "import time; time.sleep(3600)", "{marker}"]
    subprocess.Popen(sleeper, start_new_session=True)
    print("SPAWNED", flush=True)
    time.sleep(0.5)
    os._exit(9)  # the Simulation Server dies with its script
    """
    backend = start_backend(**SANDBOXED)
    sim = run_to_end(backend, upload(storage, tmp_path, "sandbox_crash", script))
    assert sim["state"] == "failed" and sim["error"]["exit_code"] == 9, sim
    gone(marker)


def gone(marker: str) -> None:
    """Wait until no process with ``marker`` is left (SIGKILLed with the namespace, reaped just after)."""
    deadline = time.monotonic() + 10
    while alive_with(marker):
        assert time.monotonic() < deadline, f"a grandchild outlived its simulation: {alive_with(marker)}"
        time.sleep(0.05)  # sleep-ok: poll interval while waiting for the process to go


def test_engines_run_in_the_sandbox(start_backend: BackendFactory, storage: Storage) -> None:
    """tf_exchange (two Python engine processes) and the MuJoCo pendulum complete sandboxed."""
    client = storage.client()
    present = {e["name"] for e in client.list_experiments(storage.alice, None)}
    for name in ("tf_exchange", "mujoco_pendulum"):
        if name not in present:
            client.upload_experiment(storage.alice, name, REPO / "experiments" / name)
    backend = start_backend(**SANDBOXED)
    for name in ("tf_exchange", "mujoco_pendulum"):
        sim = run_to_end(backend, name)
        assert sim["state"] == "completed" and sim["error"] is None, sim


#: Run as nobody: builds the sandbox command as a REST server of that uid would, and runs INSIDE in it.
UNPRIVILEGED = """
import json, subprocess, sys
from pathlib import Path
sys.path.insert(0, sys.argv[1])
from hbp_nrp_backend.sandbox import load_sandbox_config, sandbox_uid, wrap_command

config = load_sandbox_config({"NRP_SANDBOX": "bwrap"})
sim_dir, secret, inside = Path(sys.argv[2]), Path(sys.argv[3]), sys.argv[4]
probe = [sys.executable, "-c", inside, str(secret)]
command = wrap_command(probe, config, sim_dir, "hbp_nrp_simserver", [secret.parent], None)
result = subprocess.run(command, capture_output=True, text=True, timeout=60)
report = {"uid": sandbox_uid(config, 3), "rc": result.returncode}
print(json.dumps({**report, "out": result.stdout, "err": result.stderr}))
"""
#: The probe inside the sandbox: can it read the secret, which uid, how many processes it sees.
INSIDE = """
import json, os, sys
try:
    open(sys.argv[1]).read()
    seen = "read"
except OSError as exc:
    seen = type(exc).__name__
pids = sum(entry.isdigit() for entry in os.listdir("/proc"))
print(json.dumps({"secret": seen, "uid": os.getuid(), "pids": pids}))
"""


@pytest.mark.skipif(
    os.geteuid() != 0 or not Path("/usr/bin/python3").exists(), reason="needs root to act as nobody"
)
def test_an_unprivileged_server_still_hides_the_data_root_and_other_processes() -> None:
    """A REST server that is not root: bwrap in a user namespace, the server's own uid (here nobody)."""
    import pwd
    import tempfile

    nobody = pwd.getpwnam("nobody")
    outside = Path(tempfile.mkdtemp(prefix="nrp-unprivileged-"))
    try:
        outside.chmod(0o755)
        data = outside / "data"
        data.mkdir(mode=0o755)
        secret = data / "nrp-up.env"
        secret.write_text("NRP_TOKEN=secret\n")
        secret.chmod(0o644)  # readable by nobody outside the sandbox
        sim_dir = outside / "sim"
        sim_dir.mkdir()
        os.chown(sim_dir, nobody.pw_uid, nobody.pw_gid)
        src = Path(__file__).resolve().parents[2] / "src"
        command = ["setpriv", f"--reuid={nobody.pw_uid}", f"--regid={nobody.pw_gid}", "--clear-groups"]
        command += ["/usr/bin/python3", "-c", UNPRIVILEGED, str(src), str(sim_dir), str(secret), INSIDE]
        result = subprocess.run(command, capture_output=True, text=True, timeout=120, cwd=outside)
        assert result.returncode == 0, result.stderr
        report = json.loads(result.stdout)
        assert report["uid"] is None and report["rc"] == 0, report  # no uid of its own
        inside = json.loads(report["out"])
        assert inside["secret"] == "FileNotFoundError" and inside["uid"] == nobody.pw_uid, inside
        assert inside["pids"] <= 3, inside  # bwrap's init, (bwrap), the probe: no other process
        readable = subprocess.run(
            ["setpriv", f"--reuid={nobody.pw_uid}", "--clear-groups", "cat", str(secret)], capture_output=True
        )
        assert readable.returncode == 0  # the file was readable: the sandbox hid it
    finally:
        shutil.rmtree(outside, ignore_errors=True)
