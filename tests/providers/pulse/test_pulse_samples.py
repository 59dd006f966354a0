"""Sample cache through the proxy: names namespaced per app, caps, no replace or remove of
names the app did not upload, ledgers shared across processes, teardown removal."""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from pulse_helpers import GRANT, UnixServer, handshake, held_then_killed, packets_of

from sandbox.errors import ProviderError
from sandbox.providers.pulse.budget import StreamBudget
from sandbox.providers.pulse.cleanup import remove_samples
from sandbox.providers.pulse.filter import PulseFilter
from sandbox.providers.pulse.protocol import (
    INVALID_INDEX,
    SERVER_MAX_FRAME,
    Command,
    ErrorCode,
    Frame,
    FrameDecoder,
    Packet,
    error_packet,
    parse_packet,
)
from sandbox.providers.pulse.proxy import ProxyLimits, PulseProxy
from sandbox.providers.pulse.samples import MemoryLedger, SlotLedger, sample_name
from sandbox.providers.pulse.tagstruct import (
    U32,
    Arbitrary,
    ChannelMap,
    Proplist,
    SampleSpec,
    Str,
    Value,
    prop_str,
)

APP = GRANT.app_id
OWN = f"sandbox.{APP}..bell-window-system"
MiB = 1024 * 1024


def _ready(ledger: MemoryLedger | SlotLedger | None = None, streams: int = 32) -> PulseFilter:
    filt = PulseFilter(GRANT, StreamBudget(streams), ledger=ledger)
    handshake(filt)
    return filt


def _upload_args(
    name: str | None, length: int = 4096, props: Proplist | None = None
) -> tuple[Value, ...]:
    return (
        Str(name),
        SampleSpec(3, 2, 44100),
        ChannelMap((1, 2)),
        U32(length),
        props or Proplist((("media.name", prop_str("x")),)),
    )


def _play_args(name: str | None) -> tuple[Value, ...]:
    return (U32(INVALID_INDEX), Str(None), U32(0x10000), Str(name), Proplist(()))


def _send(
    filt: PulseFilter, command: Command, tag: int, args: tuple[Value, ...]
) -> tuple[list[Packet], bytes]:
    out = filt.from_client(Packet(command, tag, args).encode())
    return packets_of(out.to_server), out.to_client


def _upload(filt: PulseFilter, tag: int, name: str | None, length: int = 4096) -> str:
    """Upload `name` all the way (create, reply, data, finish); the name the server saw."""
    (create,), _ = _send(filt, Command.CREATE_UPLOAD_STREAM, tag, _upload_args(name, length))
    channel = tag
    filt.from_server(Packet(Command.REPLY, create.tag, (U32(channel), U32(length))).encode())
    assert filt.from_client(Frame(channel, 0, 0, bytes(64)).encode()).to_server
    (finish,), _ = _send(filt, Command.FINISH_UPLOAD_STREAM, tag + 1, (U32(channel),))
    filt.from_server(Packet(Command.REPLY, finish.tag, ()).encode())
    name_arg = create.args[0]
    assert isinstance(name_arg, Str) and name_arg.value is not None
    return name_arg.value


# -- namespacing ------------------------------------------------------------------------------


def test_upload_is_renamed_into_the_apps_namespace() -> None:
    filt = _ready()
    assert _upload(filt, 10, "bell-window-system") == OWN
    assert sample_name(APP, "bell-window-system") == OWN


def test_media_name_is_the_namespaced_name_too() -> None:
    """pipewire-pulse names a sample after the stream's media.name, not the name argument."""
    filt = _ready()
    (fwd,), _ = _send(filt, Command.CREATE_UPLOAD_STREAM, 5, _upload_args("bell-window-system"))
    props = fwd.args[4]
    assert isinstance(props, Proplist)
    assert [k for k, _ in props.items].count("media.name") == 1
    assert props.get_str("media.name") == OWN


def test_a_null_name_is_taken_from_event_id_as_the_server_would() -> None:
    filt = _ready()
    props = Proplist((("event.id", prop_str("message-new-email")),))
    (fwd,), _ = _send(filt, Command.CREATE_UPLOAD_STREAM, 5, _upload_args(None, props=props))
    assert fwd.args[0] == Str(f"sandbox.{APP}..message-new-email")


@pytest.mark.parametrize("name", [None, "", "a b", "../x", "é", "x" * 120])
def test_bad_or_too_long_names_are_refused_invalid(name: str | None) -> None:
    filt = _ready()
    props = Proplist(())
    fwd, to_client = _send(filt, Command.CREATE_UPLOAD_STREAM, 6, _upload_args(name, props=props))
    assert fwd == [] and to_client == error_packet(6, ErrorCode.INVALID)


def test_app_ids_cannot_collide_in_the_namespace() -> None:
    """`a.b.c` + `d.x` and `a.b.c.d` + `x` are different names (ids never contain '..')."""
    assert sample_name("a.b.c", "d.x") != sample_name("a.b.c.d", "x")


def test_malformed_upload_closes_the_connection() -> None:
    with pytest.raises(ProviderError, match="pulse:"):
        _send(_ready(), Command.CREATE_UPLOAD_STREAM, 7, (Str("x"), U32(4)))


# -- caps -------------------------------------------------------------------------------------


def test_count_cap_refuses_with_toolarge_and_forwards_nothing() -> None:
    ledger = MemoryLedger(max_samples=16, max_bytes=64 * MiB)
    filt = _ready(ledger)
    for i in range(16):
        _upload(filt, 100 + 2 * i, f"s{i}")
    fwd, to_client = _send(filt, Command.CREATE_UPLOAD_STREAM, 99, _upload_args("s16"))
    assert fwd == [] and to_client == error_packet(99, ErrorCode.TOOLARGE)
    assert filt.budget.used == 0, "a refused upload holds no stream"
    # Uploading one of its own names again replaces it: no new name, allowed.
    assert _upload(filt, 200, "s3") == f"sandbox.{APP}..s3"


def test_byte_cap_counts_declared_lengths() -> None:
    filt = _ready(MemoryLedger(max_samples=16, max_bytes=4 * MiB))
    _upload(filt, 10, "big", 3 * MiB)
    fwd, to_client = _send(filt, Command.CREATE_UPLOAD_STREAM, 12, _upload_args("more", MiB + 4))
    assert fwd == [] and to_client == error_packet(12, ErrorCode.TOOLARGE)
    _upload(filt, 14, "fits", MiB)
    fwd, to_client = _send(filt, Command.CREATE_UPLOAD_STREAM, 16, _upload_args("huge", 16 * MiB))
    assert to_client == error_packet(16, ErrorCode.TOOLARGE)


def test_the_cap_is_per_app_over_its_connections() -> None:
    ledger = MemoryLedger(max_samples=2)
    a, b = _ready(ledger), _ready(ledger)
    _upload(a, 10, "one")
    _upload(b, 10, "two")
    _, to_client = _send(b, Command.CREATE_UPLOAD_STREAM, 20, _upload_args("three"))
    assert to_client == error_packet(20, ErrorCode.TOOLARGE)


# -- play and remove --------------------------------------------------------------------------


def test_playing_a_desktop_sample_passes_unchanged() -> None:
    (fwd,), _ = _send(_ready(), Command.PLAY_SAMPLE, 3, _play_args("bell-window-system"))
    assert fwd.command == Command.PLAY_SAMPLE and fwd.args[3] == Str("bell-window-system")


def test_playing_an_uploaded_name_plays_the_apps_own_sample() -> None:
    filt = _ready()
    _upload(filt, 10, "bell-window-system")
    (fwd,), _ = _send(filt, Command.PLAY_SAMPLE, 3, _play_args("bell-window-system"))
    assert fwd.args[3] == Str(OWN)


@pytest.mark.parametrize("name", [OWN, "sandbox.org.other.App..x", "sandbox.x"])
def test_the_namespace_cannot_be_named_directly(name: str) -> None:
    for command, args in (
        (Command.PLAY_SAMPLE, _play_args(name)),
        (Command.REMOVE_SAMPLE, (Str(name),)),
    ):
        fwd, to_client = _send(_ready(), command, 4, args)
        assert fwd == [] and to_client == error_packet(4, ErrorCode.ACCESS), command


@pytest.mark.parametrize("name", ["bell-window-system", "never-uploaded"])
def test_names_the_app_did_not_upload_are_never_removed(name: str) -> None:
    fwd, to_client = _send(_ready(), Command.REMOVE_SAMPLE, 8, (Str(name),))
    assert fwd == [] and to_client == error_packet(8, ErrorCode.ACCESS)


def test_removing_an_own_sample_frees_its_place() -> None:
    ledger = MemoryLedger(max_samples=1)
    filt = _ready(ledger)
    _upload(filt, 10, "bell-window-system")
    (fwd,), _ = _send(filt, Command.REMOVE_SAMPLE, 20, (Str("bell-window-system"),))
    assert fwd.args == (Str(OWN),)
    assert ledger.claims == {}
    _upload(filt, 30, "other")
    # After the app's own is gone, the name means the desktop's again: play yes, remove no.
    _send(filt, Command.REMOVE_SAMPLE, 40, (Str("other"),))
    fwd2, to_client = _send(filt, Command.REMOVE_SAMPLE, 41, (Str("bell-window-system"),))
    assert fwd2 == [] and to_client == error_packet(41, ErrorCode.ACCESS)


# -- the shared ledger ------------------------------------------------------------------------


def test_slot_ledger_caps_the_app_over_processes(tmp_path: Path) -> None:
    one = SlotLedger(tmp_path, max_samples=3, max_bytes=10)
    two = SlotLedger(tmp_path, max_samples=3, max_bytes=10)
    assert one.claim("a", 4) and two.claim("b", 4)
    assert not two.claim("c", 3), "4 + 4 + 3 bytes > 10"
    assert two.claim("c", 2)
    assert not one.claim("d", 0), "three names are held"
    assert one.known("b") and two.known("a") and not one.known("d")
    assert one.claim("a", 3), "its own name again: replaced, not added"
    one.release("a")
    assert two.claim("d", 1)


def test_teardown_collects_own_names_but_not_those_a_running_instance_holds(tmp_path: Path) -> None:
    one = SlotLedger(tmp_path, max_samples=4, max_bytes=100)
    two = SlotLedger(tmp_path, max_samples=4, max_bytes=100)
    assert one.claim("mine", 1) and one.claim("shared", 1) and two.claim("shared", 1)
    assert set(one.collect()) == {"mine"}
    one.finish(True)
    assert not two.known("mine") and two.known("shared")
    assert two.collect() == ("shared",)
    two.finish(True)
    assert not SlotLedger(tmp_path, 4, 100).known("shared")


def test_failed_removal_leaves_the_names_for_the_next_proxy(tmp_path: Path) -> None:
    one = SlotLedger(tmp_path, max_samples=2, max_bytes=100)
    assert one.claim("x", 1)
    assert one.collect() == ("x",)
    one.finish(False)
    later = SlotLedger(tmp_path, max_samples=2, max_bytes=100)
    assert later.collect() == ("x",)
    later.finish(True)
    assert SlotLedger(tmp_path, 2, 100).collect() == ()


def test_a_killed_instances_samples_still_count_and_are_collected(tmp_path: Path) -> None:
    setup = (
        "from sandbox.providers.pulse.samples import SlotLedger\n"
        "l = SlotLedger(d, 2, 100)\n"
        "assert l.claim('left', 60)"
    )
    with held_then_killed(setup, tmp_path):
        running = SlotLedger(tmp_path, 2, 100)
        assert running.collect() == (), "a live instance's names are not removed"
        running.finish(True)
    mine = SlotLedger(tmp_path, 2, 100)
    assert not mine.claim("new", 50), "the dead instance's 60 bytes still count"
    assert mine.known("left")
    assert mine.collect() == ("left",)
    mine.finish(True)
    assert mine.claim("new", 50)


# -- removal at teardown, over a socket -------------------------------------------------------


class _FakeServer(UnixServer):
    """Answers every command with REPLY (AUTH: a version; SET_CLIENT_NAME: a client index;
    CREATE_UPLOAD_STREAM: a channel) and records what it got."""

    def __init__(self, path: Path) -> None:
        self.got: list[Packet] = []
        super().__init__(path)

    def handle(self, conn: socket.socket) -> None:
        threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        dec = FrameDecoder(SERVER_MAX_FRAME, SERVER_MAX_FRAME)
        with contextlib.suppress(OSError):
            while data := conn.recv(65536):
                for f in dec.feed(data):
                    if f.is_control:
                        pkt = parse_packet(f)
                        self.got.append(pkt)
                        conn.sendall(Packet(Command.REPLY, pkt.tag, _answer(pkt)).encode())

    def removed(self) -> list[str | None]:
        names = [p.args[0] for p in self.got if p.command == Command.REMOVE_SAMPLE]
        return [n.value if isinstance(n, Str) else None for n in names]


def _answer(pkt: Packet) -> tuple[Value, ...]:
    if pkt.command == Command.AUTH:
        return (U32(35),)
    if pkt.command == Command.SET_CLIENT_NAME:
        return (U32(1),)
    if pkt.command == Command.CREATE_UPLOAD_STREAM:
        return (U32(pkt.tag + 1), U32(64))
    return ()


@pytest.fixture
def server(tmp_path: Path) -> Iterator[_FakeServer]:
    s = _FakeServer(tmp_path / "server")
    yield s
    s.close()


def test_remove_samples_speaks_auth_name_then_removes(server: _FakeServer) -> None:
    assert remove_samples(server.path, ("sandbox.a.b.c..x", "sandbox.a.b.c..y"), "a.b.c")
    assert [p.command for p in server.got] == [
        Command.AUTH,
        Command.SET_CLIENT_NAME,
        Command.REMOVE_SAMPLE,
        Command.REMOVE_SAMPLE,
    ]
    assert server.removed() == ["sandbox.a.b.c..x", "sandbox.a.b.c..y"]


def test_remove_samples_reports_an_unreachable_server(tmp_path: Path) -> None:
    assert not remove_samples(tmp_path / "nothing", ("x",), "a.b.c")
    assert remove_samples(tmp_path / "nothing", (), "a.b.c"), "nothing to remove: done"


def _client_upload(sock: socket.socket, name: str) -> None:
    """A client's handshake and one complete upload through the proxy."""
    dec = FrameDecoder(SERVER_MAX_FRAME, SERVER_MAX_FRAME)

    def ask(pkt: Packet) -> Packet:
        sock.sendall(pkt.encode())
        while True:
            for f in dec.feed(sock.recv(65536)):
                return parse_packet(f)

    ask(Packet(Command.AUTH, 0, (U32(35), Arbitrary(bytes(256)))))
    ask(Packet(Command.SET_CLIENT_NAME, 1, (Proplist((("application.name", prop_str("x")),)),)))
    reply = ask(Packet(Command.CREATE_UPLOAD_STREAM, 2, _upload_args(name, 64)))
    assert reply.command == Command.REPLY, reply
    channel = reply.args[0]
    assert isinstance(channel, U32)
    sock.sendall(Frame(channel.value, 0, 0, bytes(64)).encode())
    assert ask(Packet(Command.FINISH_UPLOAD_STREAM, 3, (channel,))).command == Command.REPLY


def test_proxy_stop_removes_what_its_app_uploaded(tmp_path: Path, server: _FakeServer) -> None:
    proxy = PulseProxy(
        tmp_path / "proxy", server.path, GRANT, limits=ProxyLimits(), shared_dir=tmp_path / "app"
    )
    proxy.start()
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(5)
            sock.connect(str(proxy.socket_path))
            _client_upload(sock, "bell-window-system")
        assert server.removed() == []
    finally:
        proxy.stop()
    assert server.removed() == [OWN]
    assert not SlotLedger(tmp_path / "app" / "samples").known(OWN)


def test_proxy_start_removes_what_a_killed_instance_left(
    tmp_path: Path, server: _FakeServer
) -> None:
    """A SIGKILLed launcher leaves its slot record and no lock: the next proxy cleans up."""
    slots = tmp_path / "app" / "samples"
    slots.mkdir(parents=True)
    (slots / "0.slot").write_text(f"4096 {OWN}\n")
    proxy = PulseProxy(tmp_path / "proxy", server.path, GRANT, shared_dir=tmp_path / "app")
    proxy.start()
    try:
        assert server.removed() == [OWN]
        assert (slots / "0.slot").read_text() == ""
    finally:
        proxy.stop()
    assert server.removed() == [OWN], "nothing more to remove at stop"
