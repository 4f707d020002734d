#!/usr/bin/env python3
"""Relay TCP ports of the host's loopback into a network namespace's loopback.

    nsrelay.py --netns /proc/PID/ns/net 127.0.0.1:6443 127.0.0.1:5000 ...

The real node (realnode.py) runs in a network namespace of its own, where
127.0.0.1 is the node's loopback, not the host's.  Its kubelet must reach the
API server and its containerd the test registries, which listen on the host's
127.0.0.1 only.  This process binds each listed address inside the node's
namespace, then returns to the host's namespace (a socket keeps the namespace
it was made in) and forwards every connection to the same address on the
host.  So the node sees the cluster's and the registries' usual addresses
(and their certificates' 127.0.0.1 SAN) and nothing else of the host.

Standard library only; run as a child process by realnode.py.
"""

from __future__ import annotations

import argparse
import ctypes
import os
import socket
import sys
import threading

CLONE_NEWNET = 0x40000000


def setns(fd: int) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.setns(fd, CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"setns: {os.strerror(err)}")


def _pump(src: socket.socket, dst: socket.socket) -> None:
    try:
        while data := src.recv(65536):
            dst.sendall(data)
    except OSError:
        pass
    finally:
        for sock, how in ((dst, socket.SHUT_WR), (src, socket.SHUT_RD)):
            try:
                sock.shutdown(how)
            except OSError:
                pass


def _serve_one(client: socket.socket, target: tuple[str, int]) -> None:
    try:
        upstream = socket.create_connection(target, timeout=10)
    except OSError as exc:
        print(f"nsrelay: cannot connect to {target[0]}:{target[1]}: {exc}", flush=True)
        client.close()
        return
    upstream.settimeout(None)
    back = threading.Thread(target=_pump, args=(upstream, client), daemon=True)
    back.start()
    _pump(client, upstream)
    back.join()
    client.close()
    upstream.close()


def _accept_loop(listener: socket.socket, target: tuple[str, int]) -> None:
    while True:
        client, _ = listener.accept()
        threading.Thread(target=_serve_one, args=(client, target), daemon=True).start()


def _address(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    return host, int(port)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--netns", required=True, help="e.g. /proc/PID/ns/net")
    parser.add_argument("addresses", nargs="+", help="HOST:PORT, the same on both sides")
    args = parser.parse_args(argv)
    addresses = [_address(a) for a in args.addresses]
    home = os.open("/proc/self/ns/net", os.O_RDONLY)
    node = os.open(args.netns, os.O_RDONLY)
    setns(node)
    listeners = []
    for address in addresses:
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(address)
        listener.listen(128)
        listeners.append(listener)
    setns(home)
    os.close(node)
    os.close(home)
    threads = [threading.Thread(target=_accept_loop, args=(lst, addr), daemon=True)
               for lst, addr in zip(listeners, addresses)]
    for thread in threads:
        thread.start()
    print("nsrelay: relaying " + " ".join(args.addresses), flush=True)
    for thread in threads:
        thread.join()
    return 0


if __name__ == "__main__":
    sys.exit(main())
