"""Filter tests: captured sessions pass, refusals carry the client's tag, identity is rewritten,
record rules hold, and fuzzed sessions never forward anything unparsed or disallowed."""

from __future__ import annotations

import random

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pulse_helpers import GRANT, RECORD_GRANT, frames, handshake, packets_of, records, replay

from sandbox.errors import ProviderError
from sandbox.providers.pulse.budget import StreamBudget
from sandbox.providers.pulse.filter import PulseFilter, refused_commands
from sandbox.providers.pulse.protocol import (
    AUTH_FLAG_MEMFD,
    AUTH_FLAG_SHM,
    INVALID_INDEX,
    Command,
    ErrorCode,
    Frame,
    FrameDecoder,
    Packet,
    StreamKind,
    error_packet,
    parse_packet,
)
from sandbox.providers.pulse.rules import AudioGrant, sanitize_proplist
from sandbox.providers.pulse.tagstruct import (
    U32,
    Arbitrary,
    Bool,
    ChannelMap,
    Proplist,
    SampleSpec,
    Str,
    Value,
    prop_str,
)

EVIL = Proplist(
    (
        ("application.name", prop_str("Firefox")),
        ("application.process.id", prop_str("1")),
        ("application.process.binary", prop_str("firefox")),
        ("pipewire.access", prop_str("unrestricted")),
        ("media.class", prop_str("Audio/Source")),
        ("media.role", prop_str("phone")),
        ("module-stream-restore.id", prop_str("sink-input-by-application-name:Firefox")),
        ("filter.want", prop_str("echo-cancel")),
        ("node.target", prop_str("42")),
        ("media.name", prop_str("Level 1")),
        ("window.x11.display", prop_str(":0")),
    )
)


def _props(p: Proplist) -> dict[str, str | None]:
    return {k: p.get_str(k) for k, _ in p.items}


def _ready(grant: AudioGrant = GRANT, budget: StreamBudget | None = None) -> PulseFilter:
    filt = PulseFilter(grant, budget)
    handshake(filt)
    return filt


def test_paplay_session_passes_with_identity_rewritten() -> None:
    filt = PulseFilter(GRANT)
    client_outs, _ = replay(filt, "paplay")
    sent = [p for o in client_outs for p in packets_of(o.to_server)]
    captured = [parse_packet(f).command for f in frames("paplay", "C") if f.is_control]
    assert [p.command for p in sent] == captured
    assert not any(o.to_client for o in client_outs), "nothing refused"
    audio_in = b"".join(f.encode() for f in frames("paplay", "C") if not f.is_control)
    audio_out = b"".join(
        f.encode()
        for o in client_outs
        for f in FrameDecoder(1 << 24, 1 << 24).feed(o.to_server)
        if not f.is_control
    )
    assert audio_out == audio_in and audio_in
    name = next(p for p in sent if p.command == Command.SET_CLIENT_NAME)
    stream = next(p for p in sent if p.command == Command.CREATE_PLAYBACK_STREAM)
    for pkt in (name, stream):
        props = _props(next(v for v in pkt.args if isinstance(v, Proplist)))
        assert props["application.id"] == "com.example.Game"
        assert props["application.name"] == "Example Game"
        assert props["application.process.id"] == "4242"
        assert not any(
            k.startswith("application.process.") and k != "application.process.id" for k in props
        )
    assert filt.state.streams == {}, "the deleted stream is forgotten"
    assert filt.budget.used == 0


def test_auth_clears_shm_and_replaces_cookie() -> None:
    filt = PulseFilter(GRANT, upstream_cookie=b"\x07" * 256)
    word = 35 | AUTH_FLAG_SHM | AUTH_FLAG_MEMFD
    out = filt.from_client(Packet(Command.AUTH, 0, (U32(word), Arbitrary(b"\x01" * 256))).encode())
    (fwd,) = packets_of(out.to_server)
    assert fwd.args == (U32(35), Arbitrary(b"\x07" * 256))
    back = filt.from_server(Packet(Command.REPLY, fwd.tag, (U32(word),)).encode())
    (rep,) = packets_of(back.to_client)
    assert rep == Packet(Command.REPLY, 0, (U32(35),))


def test_old_protocol_versions_are_refused() -> None:
    filt = PulseFilter(GRANT)
    out = filt.from_client(Packet(Command.AUTH, 9, (U32(12), Arbitrary(bytes(256)))).encode())
    assert out.to_server == b"" and out.to_client == error_packet(9, ErrorCode.VERSION)


@pytest.mark.parametrize("first", [Command.SET_CLIENT_NAME, Command.CREATE_PLAYBACK_STREAM, 200])
def test_commands_before_auth_close_the_connection(first: int) -> None:
    with pytest.raises(ProviderError, match="phase"):
        PulseFilter(GRANT).from_client(Packet(first, 0, ()).encode())


@pytest.mark.parametrize("grant", [GRANT, RECORD_GRANT], ids=["playback", "record"])
def test_every_refused_command_gets_access_error_with_its_tag(grant: AudioGrant) -> None:
    refused = refused_commands(grant)
    assert {
        Command.LOAD_MODULE,
        Command.UNLOAD_MODULE,
        Command.SET_DEFAULT_SINK,
        Command.SET_SINK_VOLUME,
        Command.SET_SOURCE_MUTE,
        Command.SUSPEND_SINK,
        Command.SET_CARD_PROFILE,
        Command.SET_SINK_PORT,
        Command.EXTENSION,
        Command.KILL_CLIENT,
        Command.MOVE_SINK_INPUT,
        Command.MOVE_SOURCE_OUTPUT,
        Command.ENABLE_SRBCHANNEL,
        Command.REGISTER_MEMFD_SHMID,
        Command.EXIT,
        Command.SEND_OBJECT_MESSAGE,
        Command.REQUEST,
        Command.REPLY,
    } <= refused
    # The full list, named one by one: refused whatever the grant and the arguments.
    assert {
        Command.SET_DEFAULT_SINK,
        Command.SET_DEFAULT_SOURCE,
        Command.SET_SINK_VOLUME,
        Command.SET_SOURCE_VOLUME,
        Command.SET_SINK_MUTE,
        Command.SET_SOURCE_MUTE,
        Command.SUSPEND_SINK,
        Command.SUSPEND_SOURCE,
        Command.SET_SINK_PORT,
        Command.SET_SOURCE_PORT,
        Command.SET_PORT_LATENCY_OFFSET,
        Command.ENABLE_SRBCHANNEL,
        Command.DISABLE_SRBCHANNEL,
        Command.REGISTER_MEMFD_SHMID,
        Command.LOAD_MODULE,
        Command.UNLOAD_MODULE,
        Command.KILL_CLIENT,
        Command.MOVE_SINK_INPUT,
        Command.MOVE_SOURCE_OUTPUT,
        Command.SET_CARD_PROFILE,
        Command.EXTENSION,
    } <= refused
    assert (Command.CREATE_RECORD_STREAM in refused) is not grant.record
    assert (Command.KILL_SOURCE_OUTPUT in refused) is not grant.record
    for i, command in enumerate(sorted(refused)):
        filt = _ready(grant)
        tag = 1000 + i
        out = filt.from_client(Packet(command, tag, (U32(1), Str("x"))).encode())
        assert out.to_server == b"", command
        assert out.to_client == error_packet(tag, ErrorCode.ACCESS), command
    # Killing is allowed for the app's own streams only: another app's is refused the same way.
    for i, command in enumerate((Command.KILL_SINK_INPUT, Command.KILL_SOURCE_OUTPUT)):
        filt = _ready(grant)
        tag = 2000 + i
        out = filt.from_client(Packet(command, tag, (U32(1),)).encode())
        assert out.to_server == b"", command
        assert out.to_client == error_packet(tag, ErrorCode.ACCESS), command


def test_client_proplist_is_sanitised() -> None:
    props = _props(sanitize_proplist(EVIL, GRANT))
    assert props == {
        "media.name": "Level 1",
        "window.x11.display": ":0",
        "application.name": "Example Game",
        "application.id": "com.example.Game",
        "application.icon_name": "com.example.Game",
        "application.process.id": "4242",
    }


@pytest.mark.parametrize(
    "key",
    [
        "media.name",
        "media.title",
        "media.artist",
        "media.copyright",
        "media.software",
        "media.language",
        "media.filename",
        "media.icon_name",
    ],
)
def test_descriptive_media_keys_are_kept(key: str) -> None:
    props = _props(sanitize_proplist(Proplist(((key, prop_str("v")),)), GRANT))
    assert props[key] == "v"


@pytest.mark.parametrize(
    "key", ["media.class", "media.category", "media.type", "media.icon", "media.anything.new"]
)
def test_other_media_keys_are_stripped(key: str) -> None:
    props = _props(sanitize_proplist(Proplist(((key, prop_str("Manager")),)), GRANT))
    assert key not in props


@pytest.mark.parametrize(("role", "kept"), [("music", True), ("game", True), ("phone", False)])
def test_media_role_only_with_a_harmless_value(role: str, kept: bool) -> None:
    props = _props(sanitize_proplist(Proplist((("media.role", prop_str(role)),)), GRANT))
    assert ("media.role" in props) is kept


def test_identity_keys_cannot_be_removed() -> None:
    filt = _ready()
    keys = (Str("application.process.id"), Str("application.id"), Str(None))
    out = filt.from_client(Packet(Command.REMOVE_CLIENT_PROPLIST, 5, keys).encode())
    assert out.to_server == b""
    assert packets_of(out.to_client) == [Packet(Command.REPLY, 5, ())]
    out = filt.from_client(
        Packet(Command.REMOVE_CLIENT_PROPLIST, 6, (Str("media.name"), *keys)).encode()
    )
    (fwd,) = packets_of(out.to_server)
    assert fwd.args == (Str("media.name"), Str(None))


def _playback_args(props: Proplist = EVIL) -> tuple[Value, ...]:
    return (
        SampleSpec(3, 2, 44100),
        ChannelMap((1, 2)),
        U32(INVALID_INDEX),
        Str(None),
        U32(0xFFFFFFFF),
        Bool(False),
        props,
    )


def _open_playback(filt: PulseFilter, tag: int, channel: int, index: int) -> None:
    out = filt.from_client(Packet(Command.CREATE_PLAYBACK_STREAM, tag, _playback_args()).encode())
    (fwd,) = packets_of(out.to_server)
    assert _props(next(v for v in fwd.args if isinstance(v, Proplist)))["application.id"]
    filt.from_server(Packet(Command.REPLY, fwd.tag, (U32(channel), U32(index), U32(0))).encode())


def test_sink_input_control_only_on_own_streams() -> None:
    filt = _ready()
    _open_playback(filt, 10, channel=0, index=55)
    mine = filt.from_client(Packet(Command.SET_SINK_INPUT_MUTE, 11, (U32(55), Bool(True))).encode())
    assert packets_of(mine.to_server)[0].command == Command.SET_SINK_INPUT_MUTE
    other = filt.from_client(Packet(Command.KILL_SINK_INPUT, 12, (U32(54),)).encode())
    assert other.to_server == b"" and other.to_client == error_packet(12, ErrorCode.ACCESS)
    info = filt.from_client(Packet(Command.GET_SINK_INPUT_INFO, 13, (U32(3),)).encode())
    assert info.to_client == error_packet(13, ErrorCode.ACCESS)


def test_audio_frames_only_for_own_playback_channels() -> None:
    filt = _ready()
    _open_playback(filt, 10, channel=4, index=55)
    ok = filt.from_client(Frame(4, 0, 0, b"\x00" * 64).encode())
    assert ok.to_server == Frame(4, 0, 0, b"\x00" * 64).encode()
    assert filt.from_client(Frame(5, 0, 0, b"\x00" * 64).encode()).to_server == b""
    with pytest.raises(ProviderError):
        filt.from_client(Frame(4, 0, 0x80000000, bytes(16)).encode())


def test_stream_budget_is_shared_and_released() -> None:
    budget = StreamBudget(3)
    a, b = _ready(budget=budget), _ready(budget=budget)
    _open_playback(a, 1, 0, 10)
    _open_playback(a, 2, 1, 11)
    _open_playback(b, 1, 0, 12)
    out = b.from_client(Packet(Command.CREATE_PLAYBACK_STREAM, 9, _playback_args()).encode())
    assert out.to_client == error_packet(9, ErrorCode.TOOLARGE) and out.to_server == b""
    a.close()
    assert budget.used == 1
    out = b.from_client(Packet(Command.CREATE_PLAYBACK_STREAM, 10, _playback_args()).encode())
    assert packets_of(out.to_server)


def _record_args(
    source_index: int = INVALID_INDEX,
    source: str | None = None,
    direct_on_input: int = INVALID_INDEX,
) -> tuple[Value, ...]:
    return (
        SampleSpec(3, 2, 44100),
        ChannelMap((1, 2)),
        U32(source_index),
        Str(source),
        U32(0xFFFFFFFF),
        Bool(False),
        U32(0xFFFFFFFF),
        *(Bool(False),) * 7,
        Bool(False),
        Bool(False),
        EVIL,
        U32(direct_on_input),
    )


def test_record_refused_without_grant() -> None:
    out = _ready().from_client(Packet(Command.CREATE_RECORD_STREAM, 4, _record_args()).encode())
    assert out.to_server == b"" and out.to_client == error_packet(4, ErrorCode.ACCESS)


@pytest.mark.parametrize(
    "args",
    [
        _record_args(source="test_null.monitor"),
        _record_args(source="@DEFAULT_MONITOR@"),
        _record_args(direct_on_input=17),
    ],
    ids=["monitor-name", "default-monitor", "direct-on-input"],
)
def test_record_refusals_even_with_grant(args: tuple[Value, ...]) -> None:
    out = _ready(RECORD_GRANT).from_client(Packet(Command.CREATE_RECORD_STREAM, 4, args).encode())
    assert out.to_server == b"" and out.to_client == error_packet(4, ErrorCode.ACCESS)


def _source_info(index: int, name: str, monitor_of: int) -> tuple[Value, ...]:
    return (
        U32(index),
        Str(name),
        Str("desc"),
        SampleSpec(3, 2, 44100),
        ChannelMap((1, 2)),
        U32(0),
        U32(0),
        Bool(False),
        U32(monitor_of),
    )


@pytest.mark.parametrize(("monitor_of", "allowed"), [(INVALID_INDEX, True), (0, False)])
def test_record_checks_the_source_with_the_server(monitor_of: int, allowed: bool) -> None:
    filt = _ready(RECORD_GRANT)
    out = filt.from_client(Packet(Command.CREATE_RECORD_STREAM, 4, _record_args()).encode())
    assert out.to_client == b""
    (query,) = packets_of(out.to_server)
    assert query.command == Command.GET_SOURCE_INFO
    assert query.args == (U32(INVALID_INDEX), Str("@DEFAULT_SOURCE@"))
    info = Packet(Command.REPLY, query.tag, _source_info(3, "mic", monitor_of))
    back = filt.from_server(info.encode())
    if not allowed:
        assert back.to_server == b"" and back.to_client == error_packet(4, ErrorCode.ACCESS)
        assert filt.budget.used == 0
        return
    (create,) = packets_of(back.to_server)
    assert create.command == Command.CREATE_RECORD_STREAM
    assert create.args[2:4] == (U32(3), Str(None)), "pinned to the checked source"
    assert create.args[12] == Bool(True), "no_move"
    rep = filt.from_server(Packet(Command.REPLY, create.tag, (U32(1), U32(9), U32(0))).encode())
    assert packets_of(rep.to_client)[0].tag == 4
    assert (
        filt.from_server(Frame(1, 0, 0, b"ab").encode()).to_client == Frame(1, 0, 0, b"ab").encode()
    )


def test_sink_input_list_reply_is_reduced_to_own_objects() -> None:
    filt = PulseFilter(RECORD_GRANT)
    client_outs, server_outs = replay(filt, "pactl_list")
    replies = [p for o in client_outs + server_outs for p in packets_of(o.to_client)]
    # The captured server had one foreign paplay stream and two foreign clients.
    by_tag = {p.tag: p for p in replies}
    sink_inputs = by_tag[5]
    clients = by_tag[7]
    assert sink_inputs.args == ()
    # Two clients were connected; only the one this session is (learnt from the reply) is left.
    assert len(clients.args) == 5
    assert clients.args[0] == U32(filt.state.client_index)
    assert by_tag[2].args == () and by_tag[8].args == (), "module and sample lists are empty"


def test_sink_input_list_keeps_own_entries() -> None:
    filt = PulseFilter(RECORD_GRANT)
    server = [p for f in frames("pactl_list", "S") if f.is_control for p in [parse_packet(f)]]
    entry = next(p for p in server if p.tag == 5).args
    assert len(entry) == 18
    handshake(filt, client_index=entry[3].value)  # type: ignore[union-attr]
    out = filt.from_client(Packet(Command.GET_SINK_INPUT_INFO_LIST, 3, ()).encode())
    (fwd,) = packets_of(out.to_server)
    back = filt.from_server(Packet(Command.REPLY, fwd.tag, entry + entry).encode())
    assert packets_of(back.to_client)[0].args == entry + entry


def test_source_list_without_record_is_empty() -> None:
    out = _ready().from_client(Packet(Command.GET_SOURCE_INFO_LIST, 3, ()).encode())
    assert out.to_server == b"" and packets_of(out.to_client) == [Packet(Command.REPLY, 3, ())]


# ------------------------------------------------------------------------------------------
# Fuzzing: whatever arrives, only fully parsed, allowed packets leave towards the server.

ALLOWED_UPSTREAM = {
    Command.AUTH,
    Command.SET_CLIENT_NAME,
    Command.CREATE_PLAYBACK_STREAM,
    Command.DELETE_PLAYBACK_STREAM,
    Command.DRAIN_PLAYBACK_STREAM,
    Command.GET_PLAYBACK_LATENCY,
    Command.CORK_PLAYBACK_STREAM,
    Command.FLUSH_PLAYBACK_STREAM,
    Command.TRIGGER_PLAYBACK_STREAM,
    Command.PREBUF_PLAYBACK_STREAM,
    Command.SET_PLAYBACK_STREAM_NAME,
    Command.SET_PLAYBACK_STREAM_BUFFER_ATTR,
    Command.UPDATE_PLAYBACK_STREAM_SAMPLE_RATE,
    Command.LOOKUP_SINK,
    Command.STAT,
    Command.GET_SERVER_INFO,
    Command.GET_SINK_INFO,
    Command.GET_SINK_INFO_LIST,
    Command.SUBSCRIBE,
    Command.GET_CARD_INFO,
    Command.GET_CARD_INFO_LIST,
    Command.CREATE_UPLOAD_STREAM,
    Command.DELETE_UPLOAD_STREAM,
    Command.FINISH_UPLOAD_STREAM,
    Command.PLAY_SAMPLE,
    Command.GET_CLIENT_INFO,
    Command.GET_CLIENT_INFO_LIST,
    Command.GET_SINK_INPUT_INFO,
    Command.GET_SINK_INPUT_INFO_LIST,
    Command.GET_SOURCE_OUTPUT_INFO_LIST,
    Command.SET_SINK_INPUT_VOLUME,
    Command.SET_SINK_INPUT_MUTE,
    Command.KILL_SINK_INPUT,
    Command.UPDATE_CLIENT_PROPLIST,
    Command.UPDATE_PLAYBACK_STREAM_PROPLIST,
    Command.REMOVE_CLIENT_PROPLIST,
    Command.REMOVE_PLAYBACK_STREAM_PROPLIST,
}


def _check_upstream(data: bytes, filt: PulseFilter) -> None:
    for f in FrameDecoder(1 << 20, 1 << 20).feed(data):
        if not f.is_control:
            assert filt.state.streams[f.channel].kind in (StreamKind.PLAYBACK, StreamKind.UPLOAD)
            continue
        pkt = parse_packet(f)
        assert pkt.command in ALLOWED_UPSTREAM, pkt.command
        for v in pkt.args:
            if isinstance(v, Proplist) and pkt.command not in (Command.CREATE_UPLOAD_STREAM,):
                assert _props(v).get("application.id") == "com.example.Game"
                assert "media.class" not in _props(v)


def _mutate(data: bytes, rng: random.Random, n: int) -> bytes:
    buf = bytearray(data)
    for _ in range(n):
        op = rng.randrange(3)
        pos = rng.randrange(len(buf) + 1)
        if op == 0 and pos < len(buf):
            buf[pos] = rng.randrange(256)
        elif op == 1:
            buf[pos:pos] = bytes(rng.randrange(256) for _ in range(rng.randrange(1, 8)))
        elif pos < len(buf):
            del buf[pos : pos + rng.randrange(1, 8)]
    return bytes(buf)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.sampled_from(["paplay", "pactl_list", "parecord"]), st.integers(0, 2**32), st.integers(1, 12)
)
def test_mutated_sessions_forward_only_parsed_allowed_packets(name: str, seed: int, n: int) -> None:
    rng = random.Random(seed)
    filt = PulseFilter(GRANT)
    server = FrameDecoder(1 << 24, 1 << 24)
    try:
        for mark, chunk in records(name):
            if mark == "C":
                data = _mutate(chunk, rng, n) if rng.random() < 0.5 else chunk
                _check_upstream(filt.from_client(data).to_server, filt)
            else:
                for f in server.feed(chunk):
                    filt.from_server(f.encode())
    except ProviderError:
        pass


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.integers(0, 120),
            st.integers(0, 2**32 - 1),
            st.lists(
                st.sampled_from(
                    [
                        U32(0),
                        U32(INVALID_INDEX),
                        Str(None),
                        Str("x.monitor"),
                        Bool(True),
                        EVIL,
                        SampleSpec(3, 2, 8000),
                    ]
                ),
                max_size=20,
            ),
        ),
        max_size=20,
    )
)
def test_random_command_sessions(cmds: list[tuple[int, int, list[Value]]]) -> None:
    filt = _ready()
    try:
        for command, tag, args in cmds:
            out = filt.from_client(Packet(command, tag, tuple(args)).encode())
            _check_upstream(out.to_server, filt)
            for p in packets_of(out.to_client):
                assert p.tag == tag
    except ProviderError:
        pass
