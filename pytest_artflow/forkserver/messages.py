"""Messages between the fork engine's processes: pickled dicts on a stream
socket, each after its length, with file descriptors alongside (SCM_RIGHTS)."""

from __future__ import annotations

import pickle
import socket
import struct
from collections.abc import Iterable
from typing import Any

_HEADER = struct.Struct("!Q")


def send(sock: socket.socket, message: dict[str, Any], fds: Iterable[int] = ()) -> None:
    """Send one message; ``fds`` travel with it (SCM_RIGHTS)."""
    payload = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
    header = _HEADER.pack(len(payload))
    fds = list(fds)
    if fds:
        sent = socket.send_fds(sock, [header], fds)
        if sent != len(header):  # pragma: no cover - 8 bytes on a local socket
            sock.sendall(header[sent:])
    else:
        sock.sendall(header)
    sock.sendall(payload)


def recv(sock: socket.socket) -> tuple[dict[str, Any] | None, list[int]]:
    """The next message and its file descriptors; ``(None, [])`` at end of stream."""
    header, fds, _flags, _addr = socket.recv_fds(sock, _HEADER.size, 8)
    if not header:
        return None, fds
    header += _recv_exact(sock, _HEADER.size - len(header))
    (size,) = _HEADER.unpack(header)
    return pickle.loads(_recv_exact(sock, size)), fds


def _recv_exact(sock: socket.socket, size: int) -> bytes:
    chunks = []
    while size:
        chunk = sock.recv(min(size, 1 << 20))
        if not chunk:
            raise EOFError("the peer closed the connection mid-message")
        chunks.append(chunk)
        size -= len(chunk)
    return b"".join(chunks)
