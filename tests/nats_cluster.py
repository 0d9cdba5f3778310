"""A 3-node NATS JetStream cluster of the tests' own (own ports, own store dirs).

Never the machine's own nats-server: each node gets a config file, a store
directory under the test's temporary directory and its own ports; on
loopback, or each node inside a network namespace the test made.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

NATS_SERVER = "nats-server"
READY_TIMEOUT_S = 20.0


@dataclass
class NatsNode:
    name: str
    host: str
    port: int
    cluster_port: int
    store_dir: Path
    config: Path
    log_path: Path
    prefix: list[str] = field(default_factory=list)  # e.g. ip netns exec NS
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"nats://{self.host}:{self.port}"

    def start(self) -> None:
        self.process = subprocess.Popen(
            [*self.prefix, NATS_SERVER, "-c", str(self.config)],
            stdout=self.log_path.open("ab"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def kill(self) -> None:
        """kill -9: no clean shutdown, no flush."""
        if self.process is not None and self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGKILL)
            self.process.wait()

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.kill()


class NatsCluster:
    def __init__(
        self,
        directory: Path,
        hosts: list[str],
        ports: list[tuple[int, int]],
        prefixes: list[list[str]] | None = None,
    ) -> None:
        self.nodes: list[NatsNode] = []
        routes = [f"nats-route://{h}:{cp}" for h, (_, cp) in zip(hosts, ports, strict=True)]
        for index, (host, (port, cluster_port)) in enumerate(zip(hosts, ports, strict=True)):
            name = f"n{index + 1}"
            store = directory / name
            store.mkdir(parents=True, exist_ok=True)
            config = directory / f"{name}.conf"
            peers = ", ".join(r for r in routes if not r.endswith(f"{host}:{cluster_port}"))
            config.write_text(
                f"server_name: {name}\n"
                f"listen: {host}:{port}\n"
                "jetstream {\n"
                f"  store_dir: {store}\n"
                "  max_memory_store: 64MB\n"
                "  max_file_store: 2GB\n"
                "}\n"
                "cluster {\n"
                "  name: eventbunker-test\n"
                f"  listen: {host}:{cluster_port}\n"
                f"  routes: [{peers}]\n"
                "}\n"
            )
            self.nodes.append(
                NatsNode(
                    name,
                    host,
                    port,
                    cluster_port,
                    store,
                    config,
                    directory / f"{name}.log",
                    (prefixes or [[]] * len(hosts))[index],
                )
            )

    @property
    def urls(self) -> str:
        return ",".join(node.url for node in self.nodes)

    def start(self) -> None:
        for node in self.nodes:
            node.start()

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()

    def logs(self) -> str:
        return "\n".join(
            f"--- {n.name}\n{n.log_path.read_text(errors='replace')[-4000:]}" for n in self.nodes
        )


def free_ports(count: int) -> list[int]:
    sockets = [socket.socket() for _ in range(count)]
    try:
        for sock in sockets:
            sock.bind(("127.0.0.1", 0))
        return [int(sock.getsockname()[1]) for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def loopback_cluster(directory: Path) -> NatsCluster:
    ports = free_ports(6)
    return NatsCluster(directory, ["127.0.0.1"] * 3, [(ports[i], ports[i + 3]) for i in range(3)])


async def wait_for_jetstream(urls: str, timeout_s: float = READY_TIMEOUT_S) -> None:
    """Until the cluster has a JetStream meta leader (a stream can be made)."""
    import asyncio

    import nats
    import nats.errors

    deadline = time.monotonic() + timeout_s
    last: BaseException | None = None
    while time.monotonic() < deadline:
        try:
            nc = await nats.connect(
                servers=urls.split(","), connect_timeout=1, allow_reconnect=False
            )
            try:
                await nc.jetstream().account_info()
                return
            finally:
                await nc.close()
        except (nats.errors.Error, OSError, TimeoutError) as exc:
            last = exc
            await asyncio.sleep(0.2)
    raise RuntimeError(f"JetStream not ready: {last!r}")
