"""Records real client/server PulseAudio traffic as test fixtures; a tool, not a test."""

# Usage: python tests/providers/pulse/capture.py UPSTREAM_SOCK OUT_FILE -- CLIENT ARGS...
# Runs CLIENT with PULSE_SERVER pointing at a recording relay. The fixture format is a sequence
# of records: one direction byte (b"C" client->server, b"S" server->client), a big-endian u32
# length, then the bytes as read from the socket.

from __future__ import annotations

import os
import select
import socket
import struct
import subprocess
import sys
import tempfile
import threading


def main() -> int:
    upstream, out_path = sys.argv[1], sys.argv[2]
    command = sys.argv[sys.argv.index("--") + 1 :]
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "relay")
        listener = socket.socket(socket.AF_UNIX)
        listener.bind(path)
        listener.listen(1)
        records: list[bytes] = []

        def relay() -> None:
            client, _ = listener.accept()
            server = socket.socket(socket.AF_UNIX)
            server.connect(upstream)
            ends = {client: (server, b"C"), server: (client, b"S")}
            while True:
                ready, _, _ = select.select(list(ends), [], [])
                for s in ready:
                    data = s.recv(65536)
                    if not data:
                        return
                    other, mark = ends[s]
                    records.append(mark + struct.pack("!I", len(data)) + data)
                    other.sendall(data)

        t = threading.Thread(target=relay, daemon=True)
        t.start()
        env = dict(os.environ, PULSE_SERVER=f"unix:{path}")
        conf = os.path.join(tmp, "client.conf")
        with open(conf, "w") as f:
            f.write("autospawn = no\nenable-shm = no\nenable-memfd = no\n")
        env["PULSE_CLIENTCONFIG"] = conf
        rc = subprocess.run(command, env=env, timeout=30, check=False).returncode
        t.join(5)
        with open(out_path, "wb") as f:
            f.write(b"".join(records))
    return rc


if __name__ == "__main__":
    sys.exit(main())
