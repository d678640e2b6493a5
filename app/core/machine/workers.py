"""Other machines that lend their memory over llama.cpp's RPC backend (``tailorlm worker``, or
llama.cpp's own ``rpc-server``): parse ``HOST:PORT`` lists and ask each worker, in plain Python,
for its devices and their memory.

Asked here rather than through libggml: the C client aborts the whole process when a worker does
not answer (``RPC_STATUS_ASSERT`` and "Failed to connect" are ``GGML_ABORT`` in ggml-rpc.cpp), and
a worker serves one client at a time (``ggml_backend_rpc_start_server`` accepts, serves until that
client hangs up, then accepts the next), so a probe needs a timeout of its own. The wire format,
from ``ggml/src/ggml-rpc/ggml-rpc.cpp`` of the vendored llama.cpp (protocol 7.0.0):
request ``| cmd u8 | size u64 | payload |``, response ``| size u64 | payload |``, little-endian; the
first command of a connection is HELLO with 24 bytes of transport capabilities (zero: plain TCP).
"""

from __future__ import annotations

import ipaddress
import socket
import struct
import time
from dataclasses import dataclass

from app.core.errors import WorkerError

DEFAULT_PORT = 50052  # llama.cpp's rpc-server default
PROTOCOL_MAJOR = 7  # RPC_PROTO_MAJOR_VERSION of the vendored llama.cpp: a worker must match it
_CMD_GET_DEVICE_MEMORY, _CMD_HELLO, _CMD_DEVICE_COUNT = 11, 14, 15
_CAPS = 24  # RPC_CONN_CAPS_SIZE
MAX_DEVICES = 16  # GGML_RPC_MAX_SERVERS bounds the servers; a stranger's count is bounded too


@dataclass(frozen=True)
class Endpoint:
    host: str
    port: int

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"

    @property
    def loopback(self) -> bool:
        if self.host == "localhost":
            return True
        try:
            return ipaddress.ip_address(self.host).is_loopback
        except ValueError:
            return False


@dataclass(frozen=True)
class WorkerDevice:
    index: int  # the device's number on its worker
    free_bytes: int
    total_bytes: int


@dataclass(frozen=True)
class Worker:
    """One worker as it answered: its protocol version, devices, and the round trip to it."""

    endpoint: Endpoint
    version: str = ""
    devices: tuple[WorkerDevice, ...] = ()
    rtt_s: float = 0.0  # median of a few small round trips
    error: str = ""  # why it cannot be used ("" = usable)

    @property
    def usable(self) -> bool:
        return not self.error and bool(self.devices)

    @property
    def free_bytes(self) -> int:
        return sum(d.free_bytes for d in self.devices)


def parse_endpoints(text: str) -> tuple[Endpoint, ...]:
    """``"HOST:PORT,HOST,[::1]:PORT"`` → endpoints (PORT defaults to 50052); duplicates dropped."""
    out: list[Endpoint] = []
    for raw in (part.strip() for part in (text or "").split(",")):
        if not raw:
            continue
        host, port_text = raw, ""
        if raw.startswith("["):
            host, sep, rest = raw[1:].partition("]")
            if not sep or (rest and not rest.startswith(":")):
                raise WorkerError(f"{raw!r} is not HOST:PORT (an IPv6 address goes in brackets).")
            port_text = rest[1:]
        elif raw.count(":") == 1:
            host, port_text = raw.split(":")
        elif raw.count(":") > 1:
            raise WorkerError(f"{raw!r}: write an IPv6 address in brackets, as [::1]:{DEFAULT_PORT}.")
        if not host or any(c.isspace() for c in host):
            raise WorkerError(f"{raw!r} names no host.")
        try:
            port = int(port_text) if port_text else DEFAULT_PORT
        except ValueError:
            raise WorkerError(f"{raw!r}: the port must be a number.") from None
        if not 0 < port < 65536:
            raise WorkerError(f"{raw!r}: the port must be between 1 and 65535.")
        ep = Endpoint(host, port)
        if ep not in out:
            out.append(ep)
    return tuple(out)


class _Conn:
    def __init__(self, ep: Endpoint, timeout_s: float) -> None:
        self.sock = socket.create_connection((ep.host, ep.port), timeout=timeout_s)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def call(self, cmd: int, payload: bytes, want: int) -> bytes:
        self.sock.sendall(struct.pack("<BQ", cmd, len(payload)) + payload)
        (size,) = struct.unpack("<Q", self._recv(8))
        if size != want:  # the C client rejects any other size too (send_rpc_cmd)
            raise WorkerError(f"answered {size} bytes where {want} were expected: not a llama.cpp RPC server")
        return self._recv(want)

    def _recv(self, n: int) -> bytes:
        buf = bytearray()
        while len(buf) < n:
            chunk = self.sock.recv(n - len(buf))
            if not chunk:
                raise WorkerError("closed the connection")
            buf += chunk
        return bytes(buf)

    def close(self) -> None:
        self.sock.close()


def probe_worker(ep: Endpoint, *, timeout_s: float = 3.0, rounds: int = 5) -> Worker:
    """Ask one worker for its protocol version, devices and their memory; never raises for a
    worker that is down, busy or foreign: ``Worker.error`` then says which."""
    try:
        conn = _Conn(ep, timeout_s)
    except OSError as e:
        return Worker(ep, error=f"not reachable ({e.strerror or e})")
    try:
        hello = conn.call(_CMD_HELLO, bytes(_CAPS), 4 + _CAPS)
        version = f"{hello[0]}.{hello[1]}.{hello[2]}"
        if hello[0] != PROTOCOL_MAJOR:
            return Worker(
                ep, version, error=f"speaks RPC protocol {version}; this build needs {PROTOCOL_MAJOR}.x"
            )
        (count,) = struct.unpack("<I", conn.call(_CMD_DEVICE_COUNT, b"", 4))
        devices, rtts = [], []
        for i in range(min(count, MAX_DEVICES)):
            t0 = time.perf_counter()
            free, total = struct.unpack("<QQ", conn.call(_CMD_GET_DEVICE_MEMORY, struct.pack("<I", i), 16))
            rtts.append(time.perf_counter() - t0)
            devices.append(WorkerDevice(i, min(free, total) if total else free, total))
        for _ in range(max(0, rounds - len(rtts))):
            t0 = time.perf_counter()
            conn.call(_CMD_GET_DEVICE_MEMORY, struct.pack("<I", 0), 16)
            rtts.append(time.perf_counter() - t0)
    except TimeoutError:
        return Worker(ep, error="did not answer in time: busy serving another client, or not an RPC server")
    except (OSError, WorkerError) as e:
        return Worker(ep, error=str(e) if isinstance(e, WorkerError) else f"connection failed ({e})")
    finally:
        conn.close()
    if not devices:
        return Worker(ep, version, error="has no devices")
    rtts.sort()
    return Worker(ep, version, tuple(devices), rtts[len(rtts) // 2])


def probe_workers(endpoints: tuple[Endpoint, ...], *, timeout_s: float = 3.0) -> tuple[Worker, ...]:
    return tuple(probe_worker(ep, timeout_s=timeout_s) for ep in endpoints)


def worker_lines(workers: tuple[Worker, ...]) -> list[str]:
    """One line per worker device, or per worker that cannot be used and why (``hw``, the panel)."""
    from app.core.units import format_bytes

    lines = []
    for w in workers:
        if not w.usable:
            lines.append(f"{w.endpoint}: {w.error} — left out of plans")
            continue
        for d in w.devices:
            lines.append(f"{w.endpoint} device {d.index}: {format_bytes(d.free_bytes)} free of "
                         f"{format_bytes(d.total_bytes)} (RPC {w.version}, round trip {w.rtt_s * 1000:.2f} ms)")  # fmt: skip
    return lines
