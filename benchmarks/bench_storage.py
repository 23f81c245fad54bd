"""Storage server benchmark: clone of a 200-file experiment and a 50 MB upload/download.

The clone is measured both ways: ``clone_experiment`` (one tar request, what the REST server does
before a launch) and the per-file protocol (a listing per folder and a GET per file, the fallback
for servers without the archive route).

Starts a real storage server process on a free port. Baselines in the same run: a local
``shutil.copytree`` of the same tree, and raw keep-alive GETs of the same files (no listing, no
writes), so the ratios say what the clone protocol and the server cost on this machine.
"""

from __future__ import annotations

import os
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from urllib.parse import quote

import requests
from tests.helpers.processes import start_server

from hbp_nrp_backend.storage_client import StorageClient
from hbp_nrp_storage.users import UserStore

FILES = 200
FILE_SIZE = 10 * 1024
BIG = 50 * 1024 * 1024
RUNS = 7


def build_tree(folder: Path) -> list[str]:
    """200 files of 10 KB in a nested tree (4 top folders x 5 sub-folders x 10 files)."""
    names = []
    for i in range(FILES):
        rel = Path(f"dir{i % 4}") / f"sub{(i // 4) % 5}" / f"file{i}.bin"
        (folder / rel).parent.mkdir(parents=True, exist_ok=True)
        (folder / rel).write_bytes(os.urandom(FILE_SIZE))
        names.append(rel.as_posix())
    return names


def median_seconds(action: Callable[[int], object], runs: int = RUNS) -> float:
    times = []
    for run in range(runs):
        start = time.perf_counter()
        action(run)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    work = Path(tempfile.mkdtemp(prefix="nrp-bench-storage-"))
    try:
        root = work / "root"
        token = UserStore(root).add_user("bench")
        server = start_server(
            [
                sys.executable,
                "-c",
                "from nrp_cli.main import cli; cli()",
                "storage",
                "--root",
                str(root),
                "--port",
                "0",
            ]
        )
        try:
            run(server.url, token, work)
        finally:
            server.stop()
    finally:
        shutil.rmtree(work, ignore_errors=True)


def run(url: str, token: str, work: Path) -> None:
    source = work / "source"
    names = build_tree(source)
    client = StorageClient(url, timeout=60)
    client.upload_experiment(token, "bench", source)

    def clone(parallel: int) -> Callable[[int], object]:
        """The per-file protocol (one listing per folder, one GET per file), as with the NRP proxy."""
        return lambda n: client.clone_all_experiment_files(
            token, "bench", work / f"clone{parallel}_{n}", parallel=parallel
        )

    def clone_archive(n: int) -> object:
        """What the REST server does before a launch: one archive request."""
        return client.clone_experiment(token, "bench", work / f"archive_{n}")

    clone(4)(-1)  # warm-up
    clone_archive(-1)
    # the archive clone and copytree alternate, so a load change on a shared machine hits both alike
    archive_times, copytree_times = [], []
    for n in range(RUNS):
        start = time.perf_counter()
        clone_archive(n)
        archive_times.append(time.perf_counter() - start)
        start = time.perf_counter()
        shutil.copytree(source, work / f"copytree{n}")
        copytree_times.append(time.perf_counter() - start)
    archive = statistics.median(archive_times)
    copytree = statistics.median(copytree_times)
    ratio = statistics.median(a / c for a, c in zip(archive_times, copytree_times, strict=True))
    clone_parallel = median_seconds(clone(4))
    clone_serial = median_seconds(clone(1))
    session = requests.Session()
    session.headers["Authorization"] = f"Bearer {token}"

    def raw_gets(_: int) -> None:
        for name in names:
            folder, _, base = name.rpartition("/")
            response = session.get(f"{url}/storage/{quote('bench/' + folder, safe='')}/{base}?byname=true")
            response.raise_for_status()

    raw = median_seconds(raw_gets)
    print(f"clone of {FILES} files x {FILE_SIZE // 1024} KB, nested (median of {RUNS}):")
    print(
        f"  clone_experiment (one archive request) {archive * 1000:8.1f} ms  "
        f"(archive/copytree = {ratio:.1f}, median of paired runs; target <= 3)"
    )
    print(f"  per file, 4 parallel downloads        {clone_parallel * 1000:8.1f} ms")
    print(f"  per file, sequential                  {clone_serial * 1000:8.1f} ms")
    print(
        f"  baseline: raw keep-alive GETs          {raw * 1000:8.1f} ms  "
        f"(clone/raw = {clone_parallel / raw:.2f})"
    )
    print(
        f"  baseline: local shutil.copytree        {copytree * 1000:8.1f} ms  "
        f"(per-file clone/copytree = {clone_parallel / copytree:.1f})"
    )

    blob = os.urandom(BIG)
    client.create_experiment(token, "big")
    upload = median_seconds(lambda n: client.create_or_update(token, "big", "blob.bin", blob), runs=3)
    download = median_seconds(
        lambda n: client.download_file(token, "big", "blob.bin", work / "blob.bin"), runs=3
    )
    assert (work / "blob.bin").read_bytes() == blob

    def local_copy(_: int) -> None:
        target = work / "local.bin"
        with target.open("wb") as out:
            out.write(blob)
            out.flush()
            os.fsync(out.fileno())

    local = median_seconds(local_copy, runs=3)
    mb = BIG / (1024 * 1024)
    print(f"{mb:.0f} MB file (median of 3):")
    print(
        f"  upload    {upload * 1000:8.1f} ms  {mb / upload:7.1f} MB/s  "
        f"(upload/local write + fsync = {upload / local:.1f})"
    )
    print(f"  download  {download * 1000:8.1f} ms  {mb / download:7.1f} MB/s")
    print(f"  baseline: local write + fsync  {local * 1000:8.1f} ms")
    client.close()


if __name__ == "__main__":
    main()
