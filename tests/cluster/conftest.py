"""A real 3-node Redis Cluster, started once per session, and ``redis_url`` pointing at it.

Every test collected under ``tests/cluster`` gets the cluster as its Redis (the root ``redis_url``
fixture is overridden here), so ``make_settings``, ``redis_cleanup`` and everything built on them run
on the cluster: the same state-layer tests as on the single Redis, once more.

The nodes are ``redis-server --cluster-enabled yes`` on free ports in a temporary folder, without
persistence, joined with ``redis-cli --cluster create``; the fixture waits until every node says
``cluster_state:ok`` and stops them at the end, whatever happened.
"""

from __future__ import annotations

import contextlib
import shutil
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.core.conftest import data_dir, model_settings, start_runtime
from tests.tune.conftest import finetune_server, run_cli, training_dir, tune_env

# the core and tune fixtures, for the core and tune tests that run here once more
__all__ = ["data_dir", "finetune_server", "model_settings", "run_cli", "start_runtime", "training_dir", "tune_env"]

NODES = 3
STARTUP_SECONDS = 30.0  # an upper bound for a broken machine; a healthy start takes about a second


def _free_port_pair() -> int:
    """A port P with P and its cluster bus port P+10000 both free."""
    for _ in range(200):
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = int(probe.getsockname()[1])
        if port + 10000 > 65535:
            continue
        with socket.socket() as bus:
            try:
                bus.bind(("127.0.0.1", port + 10000))
            except OSError:
                continue
        return port
    raise RuntimeError("no free port pair for a Redis Cluster node")


def _cli(port: int, *args: str) -> str:
    done = subprocess.run(
        ["redis-cli", "-h", "127.0.0.1", "-p", str(port), *args],
        capture_output=True, text=True, timeout=STARTUP_SECONDS, check=False,
    )
    return done.stdout + done.stderr


def _wait(what: str, ready: Callable[[], bool]) -> None:
    """Poll ``ready()`` (a subprocess probe) until it is true; the probes are the waiting, no fixed sleeps."""
    deadline = time.monotonic() + STARTUP_SECONDS
    while not ready():
        if time.monotonic() > deadline:
            raise RuntimeError(f"Redis Cluster: {what} did not happen within {STARTUP_SECONDS:.0f}s")
        time.sleep(0.05)


@pytest.fixture(scope="session")
def redis_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """``redis+cluster://127.0.0.1:P`` of a fresh 3-node cluster (no replicas), stopped at the end."""
    if shutil.which("redis-server") is None or shutil.which("redis-cli") is None:
        pytest.fail("the cluster tests need redis-server and redis-cli on PATH")
    folder: Path = tmp_path_factory.mktemp("redis-cluster")
    processes: list[subprocess.Popen[bytes]] = []
    ports: list[int] = []
    try:
        for _ in range(NODES):
            port = _free_port_pair()
            node_dir = folder / str(port)
            node_dir.mkdir()
            processes.append(subprocess.Popen(
                ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--dir", str(node_dir),
                 "--cluster-enabled", "yes", "--cluster-config-file", str(node_dir / "nodes.conf"),
                 "--save", "", "--appendonly", "no"],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            ))
            ports.append(port)
        for port in ports:
            _wait(f"node {port} answering", lambda port=port: "PONG" in _cli(port, "ping"))
        created = subprocess.run(
            ["redis-cli", "--cluster", "create", *(f"127.0.0.1:{p}" for p in ports),
             "--cluster-replicas", "0", "--cluster-yes"],
            capture_output=True, text=True, timeout=STARTUP_SECONDS, check=False,
        )
        if created.returncode != 0:
            raise RuntimeError(f"redis-cli --cluster create failed: {created.stdout}{created.stderr}")
        for port in ports:
            _wait(f"node {port} cluster_state:ok",
                  lambda port=port: "cluster_state:ok" in _cli(port, "cluster", "info"))
        yield f"redis+cluster://127.0.0.1:{ports[0]}"
    finally:
        _stop(processes)


@pytest.fixture(scope="session")
def redis_sentinel(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """``redis+sentinel://127.0.0.1:S/bothbot-test``: one Sentinel watching one master, stopped at the end."""
    folder: Path = tmp_path_factory.mktemp("redis-sentinel")
    master_port, sentinel_port = _free_port_pair(), _free_port_pair()
    config = folder / "sentinel.conf"  # Sentinel rewrites its config file, so it must be its own
    config.write_text(
        f"port {sentinel_port}\nbind 127.0.0.1\ndir {folder}\n"
        f"sentinel monitor bothbot-test 127.0.0.1 {master_port} 1\n",
        encoding="utf-8",
    )
    processes = [
        subprocess.Popen(
            ["redis-server", "--port", str(master_port), "--bind", "127.0.0.1", "--dir", str(folder),
             "--save", "", "--appendonly", "no"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        ),
        subprocess.Popen(["redis-server", str(config), "--sentinel"], stdout=subprocess.DEVNULL,
                         stderr=subprocess.DEVNULL),
    ]
    try:
        _wait("the Sentinel naming the master",
              lambda: str(master_port) in _cli(sentinel_port, "sentinel", "get-master-addr-by-name", "bothbot-test"))
        yield f"redis+sentinel://127.0.0.1:{sentinel_port}/bothbot-test"
    finally:
        _stop(processes)


def _stop(processes: list[subprocess.Popen[bytes]]) -> None:
    for process in processes:
        process.terminate()
    for process in processes:
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(timeout=5)


@pytest.fixture
def redis_url(redis_cluster: str) -> str:
    """Here the state layer runs on the cluster."""
    return redis_cluster
