"""The SSH executor: one authenticated, verified connection per host (paramiko).

``Connection.run(body)`` sends a script on stdin to ``sh -s`` — as root, or
behind ``sudo`` for other users (see ``shell.sudo_command``) — and returns its
exit code and output, within the site's command timeout. All scripts of a
connection go to one such shell (``session.RemoteShell``); for a user with
sudo, the session that finds out how to become root is that shell. Every paramiko or
socket failure becomes a ``HostError`` that names the node, the endpoint and
what to do; secrets never reach a message unmasked (``redaction``).
"""

from __future__ import annotations

import socket
import threading

import paramiko

from cubeinstall.core.redaction import redact
from cubeinstall.remote import shell
from cubeinstall.remote.errors import HostError
from cubeinstall.remote.known_hosts import KnownHosts, UnknownHostKey
from cubeinstall.remote.session import CommandResult, Deadline, RemoteShell, collect
from cubeinstall.remote.target import Endpoint, HostTarget


# AES-GCM first: an AEAD cipher, so paramiko computes and compares no separate MAC in
# Python for every packet (~10% of the installer's CPU per host); OpenSSH offers it since
# 6.2. paramiko's own order follows as the fallback (its default would pick aes128-ctr
# with a non-ETM hmac-sha2-256, no stronger).
PREFERRED_CIPHERS = ("aes128-gcm@openssh.com", "aes256-gcm@openssh.com")


class _Transport(paramiko.Transport):
    # paramiko's reader thread wakes every 0.1 s to see whether the connection was
    # closed; close() ends it at once anyway (it closes the packetizer and the socket).
    # With 128 hosts open that was 1,280 wake-ups a second, each taking the GIL from the
    # threads doing the work.
    _active_check_timeout = 1.0


def _transport(sock, **options) -> paramiko.Transport:
    transport = _Transport(sock, **options)
    security = transport.get_security_options()
    security.ciphers = PREFERRED_CIPHERS + tuple(
        cipher for cipher in security.ciphers if cipher not in PREFERRED_CIPHERS)
    return transport


class Connection:
    def __init__(self, target: HostTarget, known_hosts: KnownHosts):
        self.target = target
        self.known_hosts = known_hosts
        self.sudo_mode = "root"
        self._clients: list[paramiko.SSHClient] = []
        self._shell: RemoteShell | None = None
        self._shell_lock = threading.Lock()  # one script at a time per shell

    # -- connecting ----------------------------------------------------------------

    def open(self) -> Connection:
        sock = None
        hops = (*self.target.jumps, self.target.endpoint)
        try:
            for index, hop in enumerate(hops):
                client = self._connect(hop, sock)
                self._clients.append(client)
                if index + 1 < len(hops):  # a jump host: tunnel to the next hop through it
                    sock = self._tunnel(client, hop, hops[index + 1])
            self.sudo_mode = self._detect_sudo()
        except BaseException:
            self.close()
            raise
        return self

    def _connect(self, endpoint: Endpoint, sock) -> paramiko.SSHClient:
        label = self._label(endpoint)
        for key_file in endpoint.key_files:
            if not key_file.is_file():
                raise HostError(label, f"key file {key_file} does not exist",
                                hint="fix key_file (node or ssh section) or IdentityFile in the ssh config")
        client = paramiko.SSHClient()
        self.known_hosts.prepare(client, endpoint.hostname, endpoint.port)
        timeout = self.target.connect_timeout
        try:
            sock = sock or self._socket(endpoint)
            client.connect(
                endpoint.hostname, endpoint.port, username=endpoint.user,
                password=endpoint.password.reveal() if endpoint.password else None,
                key_filename=[str(p) for p in endpoint.key_files] or None,
                look_for_keys=not endpoint.key_files, allow_agent=True, sock=sock,
                timeout=timeout, banner_timeout=timeout, auth_timeout=timeout,
                transport_factory=_transport,
            )
        except UnknownHostKey as exc:
            client.close()
            raise self.known_hosts.unknown_error(label, exc) from None
        except paramiko.BadHostKeyException as exc:
            client.close()
            raise self.known_hosts.changed_error(label, exc, endpoint.port) from None
        except paramiko.AuthenticationException as exc:
            client.close()
            tried = ", ".join(filter(None, [
                "key files " + ", ".join(map(str, endpoint.key_files)) if endpoint.key_files else "default keys",
                "the SSH agent", "a password" if endpoint.password else None]))
            raise HostError(label, f"authentication failed ({redact(str(exc))}); tried {tried}",
                            hint="check the user, key_file/password in site.yaml and the "
                                 "host's authorized_keys") from None
        except (TimeoutError, OSError, paramiko.SSHException, EOFError) as exc:
            client.close()
            raise HostError(label, f"cannot connect: {redact(str(exc)) or type(exc).__name__}",
                            hint="is the host up and sshd listening on that port? "
                                 f"(ssh.connect_timeout is {timeout:g}s)") from None
        return client

    def _socket(self, endpoint: Endpoint) -> socket.socket:
        """A TCP connection to the first hop, with Nagle's algorithm off: paramiko sends
        each SSH message with its own write, and one written while the previous is not
        yet acknowledged would wait for the peer's delayed ACK (40 ms on Linux) — on
        every channel open and command, which made a run on one host 3x slower."""
        sock = socket.create_connection((endpoint.hostname, endpoint.port),
                                        timeout=self.target.connect_timeout)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return sock

    def _tunnel(self, client: paramiko.SSHClient, hop: Endpoint, following: Endpoint):
        try:
            return client.get_transport().open_channel(
                "direct-tcpip", (following.hostname, following.port), ("127.0.0.1", 0),
                timeout=self.target.connect_timeout)
        except (paramiko.SSHException, OSError) as exc:
            raise HostError(self._label(following),
                            f"jump host {hop} cannot reach it: {exc}",
                            hint="check ProxyJump in the ssh config and the jump host's "
                                 "AllowTcpForwarding") from None

    def _label(self, endpoint: Endpoint) -> str:
        if endpoint is self.target.endpoint:
            return self.target.label
        return f"{self.target.name} (jump host {endpoint})"

    def _detect_sudo(self) -> str:
        """How to become root: not at all, sudo without, or sudo with a password. For a
        user with sudo on, the session that finds out is kept as the root shell."""
        if self.target.endpoint.user == "root":
            return "root"
        if not self.target.sudo:
            if self._exchange("id -u", b"", self.target.connect_timeout).stdout.strip() == "0":
                return "root"
            raise HostError(self.target.label, f"user {self.target.endpoint.user} is not root "
                            "and sudo is off for this node; every node stage needs root",
                            hint="set sudo: true on the node (or connect as root)")
        mode, refusal = self._root_shell_or_sudo()
        if mode is not None:
            return mode
        if "tty" in refusal:
            raise HostError(self.target.label, f"sudo refuses to run without a terminal: "
                            f"{redact(refusal.strip())}",
                            hint=f"drop 'Defaults requiretty' for {self.target.endpoint.user} in "
                                 "the host's sudoers")
        if self.target.sudo_password is None:
            raise HostError(self.target.label, f"sudo for {self.target.endpoint.user} needs a "
                            f"password: {redact(refusal.strip())}",
                            hint="set sudo_password on the node or under ssh: in site.yaml, "
                                 "or allow NOPASSWD in the host's sudoers")
        # Only the password on stdin: a wrong one is read once and the next read meets EOF,
        # so sudo answers after one PAM failure delay (a second line was a second attempt,
        # two delays, which a loaded host could stretch past the timeout).
        check = self._exchange("sudo -k -S -p '' -- id -u", self._password_line(),
                               self.target.connect_timeout)
        if check.stdout.strip() != "0":
            raise HostError(self.target.label, f"sudo refused the sudo_password for "
                            f"{self.target.endpoint.user}: {redact(check.stderr.strip())}",
                            hint="check sudo_password in site.yaml and the host's sudoers")
        return "password"

    def _root_shell_or_sudo(self) -> tuple[str | None, str]:
        """(mode, "") with the root shell kept, or (None, what sudo said) when it refused
        without a password (``shell.ROOT_SHELL_OR_SUDO``)."""
        mark = f"{shell.SHELL_MARK} ".encode()

        def said(out: bytearray) -> bytes | None:  # the word after the mark, once its line is whole
            at = out.find(mark)
            end = out.find(b"\n", at) if at != -1 else -1
            return bytes(out[at + len(mark):end]) if end != -1 else None

        try:
            channel = self._clients[-1].get_transport().open_session(
                timeout=self.target.connect_timeout)
            channel.exec_command(shell.ROOT_SHELL_OR_SUDO)
            out, err = collect(channel, Deadline(self.target.label, self.target.connect_timeout),
                               lambda out, err: said(out) is not None)
        except (paramiko.SSHException, OSError, EOFError) as exc:
            raise self._lost(exc) from None
        if said(out) in (b"root", b"nopasswd"):
            self._shell = RemoteShell(channel, self.target.label)
            return said(out).decode(), ""
        channel.close()
        return None, (out + err).decode("utf-8", "replace")

    def _password_line(self) -> bytes:
        assert self.target.sudo_password is not None
        return self.target.sudo_password.reveal().encode() + b"\n"

    # -- running ---------------------------------------------------------------------

    def run(self, body: str, timeout: float | None = None) -> CommandResult:
        """Run ``body`` (shell) as root on the host; output decoded as UTF-8."""
        with self._shell_lock:
            if self._shell is None or not self._shell.usable:
                self._shell = self._open_shell()
            try:
                return self._shell.run(shell.wrap(body), timeout or self.target.command_timeout)
            except (paramiko.SSHException, OSError, EOFError) as exc:
                self._drop_shell()
                raise self._lost(exc) from None
            except BaseException:
                self._drop_shell()  # timed out or broken: never reuse it
                raise

    def _open_shell(self) -> RemoteShell:
        try:
            channel = self._clients[-1].get_transport().open_session(
                timeout=self.target.connect_timeout)
            channel.exec_command(shell.sudo_command(self.sudo_mode))
            if self.sudo_mode == "password":
                channel.sendall(self._password_line())
        except (paramiko.SSHException, OSError, EOFError, AttributeError) as exc:
            raise self._lost(exc) from None
        return RemoteShell(channel, self.target.label)

    def _drop_shell(self) -> None:
        if self._shell is not None:
            self._shell.close()
            self._shell = None

    def _lost(self, exc: BaseException) -> HostError:
        return HostError(self.target.label, f"lost the connection: {redact(str(exc))}",
                         hint="check the host and sshd's MaxSessions")

    def _exchange(self, command: str, stdin: bytes, timeout: float) -> CommandResult:
        """One command on a channel of its own (the sudo probes, before the shell)."""
        transport = self._clients[-1].get_transport()
        try:
            channel = transport.open_session(timeout=self.target.connect_timeout)
            try:
                channel.exec_command(command)
                channel.sendall(stdin)
                channel.shutdown_write()
                deadline = Deadline(self.target.label, timeout)
                # All output up to EOF (sshd may send the exit status before the last
                # output), then the exit status, which follows EOF.
                out, err = collect(channel, deadline)
                while not channel.status_event.wait(deadline.remaining()):
                    pass  # remaining() raises once the deadline has passed
                return CommandResult(channel.exit_status, out.decode("utf-8", "replace"),
                                     err.decode("utf-8", "replace"))
            finally:
                channel.close()
        except (paramiko.SSHException, OSError, EOFError) as exc:
            raise self._lost(exc) from None

    def alive(self) -> bool:
        return bool(self._clients) and self._clients[-1].get_transport() is not None and \
            self._clients[-1].get_transport().is_active()

    def close(self) -> None:
        self._drop_shell()
        for client in reversed(self._clients):
            client.close()
        self._clients.clear()
