"""The load script against the real app: many clients at once, every returned file whole."""

import os
import socket

from app.tools import loadtest


def test_eight_clients_at_once_get_every_file_whole(server, capsys):
    """8 clients call /segment, /branches, /attribution, /compare and /sweep at once on the same
    scene, so they fetch the same files while the server sends them again: each download must
    be as long as declared and decode (a file rewritten in place came back truncated)."""
    code = loadtest.main([server, "--clients", "8", "--rounds", "1", "--scenes", "1"])
    out = capsys.readouterr().out
    assert code == 0, out
    assert "errors: 0" in out and "server RSS (pid" in out
    rows = {line.split()[0]: line.split()[1:3] for line in out.splitlines()[2:8]}
    assert rows == {e: ["8", "0"] for e in (loadtest.SCENE, *loadtest.ENDPOINTS)}


def test_server_pid_is_the_process_listening_on_a_local_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        assert loadtest.server_pid(f"http://127.0.0.1:{port}/") == os.getpid()
        assert loadtest.server_pid(f"http://example.org:{port}/") is None
