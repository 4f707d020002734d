"""A network round trip for sandboxed nodes: every packet to and from a node's
sshd waits half the round trip before the kernel sends it on.

This machine's kernel has no netem qdisc (CONFIG_NET_SCH_NETEM is off and there
are no modules to load), so the delay is done with what it has: an iptables
rule per direction (``-t raw OUTPUT``, matched on the node's address AND port,
so other users' loopback traffic, even on the same address, is untouched)
sends the packets to an NFQUEUE, and a small process of ours (this module run
as a program) holds each one for the delay and then accepts it. Every packet
is delayed, the TCP handshake and the ACKs included, so connect() takes one
round trip and TCP behaves as over a real link. The rules live in a chain of
our own named after the creating process; the chain is removed on close, at
exit, and (if a process was killed) by the next LinkDelay that finds it.
``--queue-bypass``: without the delay process the packets pass undelayed
rather than being dropped.

The delay process speaks the nfnetlink_queue protocol directly (no C
library needed): bind a queue, copy only the packet metadata, and release
the due packets with one batch verdict (a queue is FIFO and every packet
waits the same time, so "all ids up to N" is exact).
"""

from __future__ import annotations

import atexit
import os
import re
import select
import socket
import struct
import subprocess
import sys
import time
from collections import deque
from pathlib import Path

NETLINK_NETFILTER = 12
NFNL_SUBSYS_QUEUE = 3
MSG_PACKET, MSG_VERDICT_BATCH, MSG_CONFIG = 0, 3, 2
NLM_F_REQUEST, NLM_F_ACK = 1, 4
NLMSG_ERROR = 2
CFG_CMD, CFG_PARAMS, CFG_QUEUE_MAXLEN = 1, 2, 3
CMD_BIND = 1
COPY_META = 1
ATTR_PACKET_HDR, ATTR_VERDICT_HDR = 1, 2
NF_ACCEPT = 1
QUEUE_BASE = 4200  # first queue number tried; a busy one (another process's) is skipped
CHAIN_PREFIX = "CUBE-DELAY-"


class LinkDelayError(RuntimeError):
    """The delay cannot be set up on this machine (said with the reason)."""


# --- the delay process -------------------------------------------------------

def _attr(kind: int, payload: bytes) -> bytes:
    header = struct.pack("=HH", 4 + len(payload), kind)
    return header + payload + b"\0" * (-len(payload) % 4)


def _message(kind: int, queue: int, attrs: bytes, flags: int = NLM_F_REQUEST, seq: int = 0) -> bytes:
    body = struct.pack("=BBH", socket.AF_UNSPEC, 0, socket.htons(queue)) + attrs
    return struct.pack("=IHHII", 16 + len(body), (NFNL_SUBSYS_QUEUE << 8) | kind, flags, seq, 0) + body


def _configure(sock: socket.socket, queue: int, attrs: bytes) -> int:
    """Send one config message and return the kernel's errno (0 = done)."""
    sock.send(_message(MSG_CONFIG, queue, attrs, NLM_F_REQUEST | NLM_F_ACK, seq=queue))
    reply = sock.recv(65536)
    kind = struct.unpack_from("=IH", reply)[1]
    assert kind == NLMSG_ERROR, f"unexpected netlink reply type {kind}"
    return -struct.unpack_from("=i", reply, 16)[0]


def bind_queue(sock: socket.socket, first: int = QUEUE_BASE, tries: int = 100) -> int:
    """Bind the first free queue number at or after ``first``."""
    for queue in range(first, first + tries):
        error = _configure(sock, queue, _attr(CFG_CMD, struct.pack("=BxH", CMD_BIND, socket.htons(socket.AF_INET))))
        if error == 0:
            break
        if error != 16:  # EBUSY: another process has it
            raise LinkDelayError(f"binding NFQUEUE {queue} failed: {os.strerror(error)}")
    else:
        raise LinkDelayError(f"NFQUEUE {first}..{first + tries - 1} are all taken")
    for attrs in (_attr(CFG_PARAMS, struct.pack(">IB", 0, COPY_META)),
                  _attr(CFG_QUEUE_MAXLEN, struct.pack(">I", 65536))):
        error = _configure(sock, queue, attrs)
        if error:
            raise LinkDelayError(f"configuring NFQUEUE {queue} failed: {os.strerror(error)}")
    return queue


def _packet_ids(data: bytes):
    offset = 0
    while offset + 16 <= len(data):
        length, kind = struct.unpack_from("=IH", data, offset)
        if kind & 0xFF == MSG_PACKET and kind >> 8 == NFNL_SUBSYS_QUEUE:
            attr = offset + 20  # nlmsghdr + nfgenmsg
            while attr + 4 <= offset + length:
                attr_length, attr_kind = struct.unpack_from("=HH", data, attr)
                if attr_kind & 0x7FFF == ATTR_PACKET_HDR:
                    yield struct.unpack_from(">I", data, attr + 4)[0]
                    break
                attr += (attr_length + 3) & ~3
        offset += (length + 3) & ~3


def serve(one_way_seconds: float) -> None:
    """Bind a queue, print its number, then delay every packet until killed."""
    sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_NETFILTER)
    sock.setsockopt(socket.SOL_SOCKET, 33, 16 << 20)  # SO_RCVBUFFORCE: never lose a packet notice
    sock.bind((0, 0))
    queue = bind_queue(sock)
    print(queue, flush=True)
    waiting: deque[tuple[float, int]] = deque()
    while True:
        timeout = max(0.0, waiting[0][0] - time.monotonic()) if waiting else None
        if select.select([sock], [], [], timeout)[0]:
            due = time.monotonic() + one_way_seconds
            waiting.extend((due, packet) for packet in _packet_ids(sock.recv(1 << 20)))
        now, last = time.monotonic(), None
        while waiting and waiting[0][0] <= now:
            last = waiting.popleft()[1]
        if last is not None:
            sock.send(_message(MSG_VERDICT_BATCH, queue,
                               _attr(ATTR_VERDICT_HDR, struct.pack(">II", NF_ACCEPT, last))))


# --- the rules and the process, from the test side ----------------------------

def _iptables(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    result = subprocess.run(["iptables", "-w", "-t", "raw", *args], capture_output=True, text=True,
                            check=False)
    if check and result.returncode:
        raise LinkDelayError(f"iptables -t raw {' '.join(args)}: {result.stderr.strip()}")
    return result


def _remove_chain(chain: str) -> None:
    while _iptables("-D", "OUTPUT", "-o", "lo", "-p", "tcp", "-j", chain, check=False).returncode == 0:
        pass
    _iptables("-F", chain, check=False)
    _iptables("-X", chain, check=False)


def remove_stale_chains() -> None:
    """Chains left by a process that was killed before it could remove them."""
    listing = _iptables("-S", check=False).stdout
    for chain, pid in re.findall(rf"^-N ({CHAIN_PREFIX}(\d+)-\d+)$", listing, re.MULTILINE):
        if not Path(f"/proc/{pid}").exists():
            _remove_chain(chain)


class LinkDelay:
    """A round trip of ``rtt_ms`` for every (address, port) added; close() undoes it all."""

    _count = 0

    def __init__(self, rtt_ms: float, log: Path):
        if os.geteuid() != 0 or not Path("/usr/sbin/iptables").exists():
            raise LinkDelayError("a link delay needs root and iptables (apt-get install iptables)")
        # Imported here: the delay process runs this file as a program, without the tests package.
        from tests.cluster.processes import _die_with_parent

        remove_stale_chains()
        LinkDelay._count += 1
        self.rtt_ms = rtt_ms
        self.links: set[tuple[str, int]] = set()
        self.chain = f"{CHAIN_PREFIX}{os.getpid()}-{LinkDelay._count}"
        with open(log, "wb") as errors:
            self.process = subprocess.Popen(
                [sys.executable, __file__, str(rtt_ms / 2000)], stdout=subprocess.PIPE,
                stderr=errors, stdin=subprocess.DEVNULL, start_new_session=True,
                preexec_fn=_die_with_parent(os.getpid()))  # noqa: PLW1509 - as tests/cluster/processes.py
        atexit.register(self.close)
        try:
            line = self.process.stdout.readline().strip()
            if not line.isdigit():
                raise LinkDelayError(f"the delay process did not start: {log.read_text()[-2000:]}")
            self.queue = int(line)
            _iptables("-N", self.chain)
            _iptables("-I", "OUTPUT", "-o", "lo", "-p", "tcp", "-j", self.chain)
        except BaseException:
            self.close()
            raise

    def add(self, address: str, port: int) -> None:
        if (address, port) in self.links:  # a restarted node keeps its address and port
            return
        self.links.add((address, port))
        target = ["-j", "NFQUEUE", "--queue-num", str(self.queue), "--queue-bypass"]
        _iptables("-A", self.chain, "-d", address, "-p", "tcp", "--dport", str(port), *target)
        _iptables("-A", self.chain, "-s", address, "-p", "tcp", "--sport", str(port), *target)

    def cpu_seconds(self) -> float:
        """CPU the delay process used so far (it runs on this machine's cores)."""
        fields = Path(f"/proc/{self.process.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def close(self) -> None:
        _remove_chain(self.chain)  # first: packets then pass undelayed instead of queueing
        if self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=5)
        atexit.unregister(self.close)


def connect_seconds(address: str, port: int) -> float:
    """One TCP connect (SYN, SYN-ACK): a measured round trip."""
    started = time.monotonic()
    with socket.create_connection((address, port), timeout=10):
        return time.monotonic() - started


if __name__ == "__main__":
    serve(float(sys.argv[1]))
