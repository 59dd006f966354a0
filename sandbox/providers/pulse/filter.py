"""Pure allow/deny/rewrite rules of the per-app PulseAudio proxy; bytes in, bytes out, no I/O."""

# What a sandboxed client may do through the proxy (docs/audio.md says the same for users):
#
# * Every client packet is parsed completely; only packets this module allows are forwarded,
#   re-serialised from the parsed values under a fresh upstream tag. Everything else gets
#   `ERROR(tag, PA_ERR_ACCESS)` or, for a malformed frame, the connection is closed (the caller
#   catches ProviderError). Unknown commands are refused: the table below is an allow-list.
# * playback: streams, drain/cork/flush/latency on its own channels; volume, mute and kill of its
#   OWN sink inputs; sample upload and play. Server, sink and card info are readable (they
#   describe devices, not other apps). Client, sink-input and source-output lists are answered
#   with the client's own objects only; module and sample lists are answered empty.
# * record (only with the grant): record streams from a real source. The proxy asks the server
#   itself which source a request names (GET_SOURCE_INFO, by index, name or default) and refuses
#   monitors (`monitor_of_sink` set or a `.monitor` name) and `direct_on_input` captures, then
#   pins the stream to that source index with `no_move` so it cannot be moved onto a monitor.
# * Always refused: module load/unload, default sink/source, device volume/mute/suspend/ports,
#   card profiles, extensions, killing or moving anything not its own, moving streams at all,
#   srbchannel/memfd/shm, object messages, server-to-client command numbers, EXIT.
# * Identity: every client, stream and sample proplist is reduced to an allow-list of keys and
#   gets application.name/id/icon_name from the manifest and application.process.id = the host
#   pid from SO_PEERCRED. The client cannot remove those keys.
# * AUTH: the version is pinned to what the codec knows, the SHM and memfd bits are cleared both
#   ways, and the client's cookie is replaced (the host cookie never reaches the container).

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Protocol

from sandbox.errors import ProviderError
from sandbox.providers.pulse.protocol import (
    AUTH_FLAG_MEMFD,
    AUTH_FLAG_SHM,
    CLIENT_MAX_CONTROL,
    CLIENT_MAX_DATA,
    COOKIE_LENGTH,
    INVALID_INDEX,
    NO_TAG,
    PROTOCOL_VERSION,
    PROTOCOL_VERSION_MASK,
    PROTOCOL_VERSION_MIN,
    SERVER_MAX_FRAME,
    U32,
    Arbitrary,
    Bool,
    Command,
    ErrorCode,
    FormatInfo,
    Frame,
    FrameDecoder,
    Packet,
    Pending,
    Phase,
    Proplist,
    SessionState,
    Str,
    Stream,
    StreamKind,
    Value,
    error_packet,
    parse_packet,
    prop_str,
    reply_packet,
)

MAX_PENDING = 4096
LIST_SCHEMA_MIN_VERSION = 22
DEFAULT_STREAM_LIMIT = 32

# Keys a client may set on itself and its streams. Everything else is dropped: pipewire.*,
# pulse.*, node.*, target.*, stream.*, object.*, client.*, device.*, media.class (routing and
# access on PipeWire), filter.* (makes PulseAudio load filter modules), module-stream-restore.id
# (shares another app's restore entry), application.process.* (the container's view of itself).
# media.* is named key by key, not by prefix: PipeWire reads media.class, media.category
# ("Manager" names a session-manager client) and media.type for routing and access, and a key
# added later must not slip in. media.icon (raw pixels) is dropped too.
ALLOWED_PREFIXES = ("event.", "window.")
MEDIA_KEYS = frozenset(
    {
        "media.name",
        "media.title",
        "media.artist",
        "media.copyright",
        "media.software",
        "media.language",
        "media.filename",
        "media.icon_name",
        "media.role",  # only with a value in ALLOWED_ROLES
    }
)
ALLOWED_KEYS = frozenset({"application.version", "application.language"}) | MEDIA_KEYS
DENIED_KEYS = frozenset({"media.class"})
# media.role "phone" makes module-role-cork pause every other app's stream.
ALLOWED_ROLES = frozenset(
    {"video", "music", "game", "event", "animation", "production", "a11y", "test"}
)
IDENTITY_KEYS = frozenset(
    {"application.name", "application.id", "application.icon_name", "application.process.id"}
)
MONITOR_NAMES = frozenset({"@DEFAULT_MONITOR@"})


@dataclass(frozen=True, slots=True)
class AudioGrant:
    """What one app's connections may do; host_pid is filled per connection from SO_PEERCRED."""

    app_id: str
    app_name: str
    record: bool = False
    icon: str | None = None
    host_pid: int | None = None


class Budget(Protocol):
    """A count of units (streams) one app holds; the proxy may share it between processes."""

    @property
    def used(self) -> int: ...

    def acquire(self) -> bool: ...

    def release(self) -> None: ...


class StreamBudget:
    """An in-memory Budget: streams over the connections of one proxy (one process)."""

    def __init__(self, limit: int = DEFAULT_STREAM_LIMIT) -> None:
        self.limit = limit
        self.used = 0

    def acquire(self) -> bool:
        if self.used >= self.limit:
            return False
        self.used += 1
        return True

    def release(self) -> None:
        self.used = max(0, self.used - 1)


@dataclass(frozen=True, slots=True)
class Output:
    """What one input chunk produced: bytes for the server and bytes for the client."""

    to_server: bytes = b""
    to_client: bytes = b""


class _Purpose(enum.Enum):
    FORWARD = "forward"
    CHECK_RECORD_SOURCE = "check-record-source"


def sanitize_proplist(props: Proplist, grant: AudioGrant) -> Proplist:
    """The allow-listed keys of `props`, then the identity keys from the grant."""
    kept: list[tuple[str, bytes]] = []
    for key, value in props.items:
        if key in DENIED_KEYS or key in IDENTITY_KEYS:
            continue
        if key == "media.role" and props.get_str(key) not in ALLOWED_ROLES:
            continue
        if key in ALLOWED_KEYS or key.startswith(ALLOWED_PREFIXES):
            kept.append((key, value))
    kept.append(("application.name", prop_str(grant.app_name)))
    kept.append(("application.id", prop_str(grant.app_id)))
    kept.append(("application.icon_name", prop_str(grant.icon or grant.app_id)))
    if grant.host_pid is not None:
        kept.append(("application.process.id", prop_str(str(grant.host_pid))))
    return Proplist(tuple(kept))


def _rewrite_first_proplist(args: tuple[Value, ...], grant: AudioGrant) -> tuple[Value, ...]:
    """Every top-level proplist sanitised (a request carries one; a second must not slip by)."""
    if not any(isinstance(v, Proplist) for v in args):
        raise ProviderError("pulse: request has no proplist")
    return tuple(sanitize_proplist(v, grant) if isinstance(v, Proplist) else v for v in args)


def _u32(args: tuple[Value, ...], i: int) -> int:
    if i >= len(args) or not isinstance(args[i], U32):
        raise ProviderError(f"pulse: argument {i} is not a u32")
    v = args[i]
    assert isinstance(v, U32)
    return v.value


def _str(args: tuple[Value, ...], i: int) -> str | None:
    if i >= len(args) or not isinstance(args[i], Str):
        raise ProviderError(f"pulse: argument {i} is not a string")
    v = args[i]
    assert isinstance(v, Str)
    return v.value


class _RefusedError(Exception):
    """Internal: answer this request with an error instead of forwarding it."""

    def __init__(self, code: ErrorCode = ErrorCode.ACCESS) -> None:
        self.code = code


_Handler = Callable[["PulseFilter", Packet], tuple[Value, ...] | None]
# A handler returns the (rewritten) arguments to forward, returns None after answering
# locally, or raises _RefusedError.

# Commands on one of the client's own stream channels (first argument).
_PLAYBACK_CHANNEL_COMMANDS = frozenset(
    {
        Command.DRAIN_PLAYBACK_STREAM,
        Command.GET_PLAYBACK_LATENCY,
        Command.CORK_PLAYBACK_STREAM,
        Command.FLUSH_PLAYBACK_STREAM,
        Command.TRIGGER_PLAYBACK_STREAM,
        Command.SET_PLAYBACK_STREAM_NAME,
        Command.PREBUF_PLAYBACK_STREAM,
        Command.SET_PLAYBACK_STREAM_BUFFER_ATTR,
        Command.UPDATE_PLAYBACK_STREAM_SAMPLE_RATE,
    }
)
_RECORD_CHANNEL_COMMANDS = frozenset(
    {
        Command.SET_RECORD_STREAM_NAME,
        Command.GET_RECORD_LATENCY,
        Command.CORK_RECORD_STREAM,
        Command.FLUSH_RECORD_STREAM,
        Command.SET_RECORD_STREAM_BUFFER_ATTR,
        Command.UPDATE_RECORD_STREAM_SAMPLE_RATE,
    }
)
_READ_ONLY_COMMANDS = frozenset(
    {
        Command.LOOKUP_SINK,
        Command.STAT,
        Command.GET_SERVER_INFO,
        Command.GET_SINK_INFO,
        Command.GET_SINK_INFO_LIST,
        Command.SUBSCRIBE,
        Command.GET_CARD_INFO,
        Command.GET_CARD_INFO_LIST,
    }
)
_EMPTY_LISTS = frozenset({Command.GET_MODULE_INFO_LIST, Command.GET_SAMPLE_INFO_LIST})
# (values per entry, position of the owning client index) at LIST_SCHEMA_MIN_VERSION and later.
_LIST_SCHEMAS = {
    Command.GET_CLIENT_INFO_LIST: (5, 0),
    Command.GET_SINK_INPUT_INFO_LIST: (18, 3),
    Command.GET_SOURCE_OUTPUT_INFO_LIST: (18, 3),
}
# Server-initiated commands passed to the client; any other is dropped, SHM ones close.
_SERVER_EVENTS = frozenset(
    {
        Command.REQUEST,
        Command.OVERFLOW,
        Command.UNDERFLOW,
        Command.SUBSCRIBE_EVENT,
        Command.PLAYBACK_STREAM_SUSPENDED,
        Command.RECORD_STREAM_SUSPENDED,
        Command.PLAYBACK_STREAM_MOVED,
        Command.RECORD_STREAM_MOVED,
        Command.STARTED,
        Command.CLIENT_EVENT,
        Command.PLAYBACK_STREAM_EVENT,
        Command.RECORD_STREAM_EVENT,
        Command.PLAYBACK_BUFFER_ATTR_CHANGED,
        Command.RECORD_BUFFER_ATTR_CHANGED,
    }
)
_SHM_COMMANDS = frozenset(
    {Command.ENABLE_SRBCHANNEL, Command.DISABLE_SRBCHANNEL, Command.REGISTER_MEMFD_SHMID}
)


class PulseFilter:
    """One client connection: feed it bytes from either side, write out what it returns."""

    def __init__(
        self,
        grant: AudioGrant,
        budget: Budget | None = None,
        upstream_cookie: bytes = bytes(COOKIE_LENGTH),
    ) -> None:
        if len(upstream_cookie) != COOKIE_LENGTH:
            raise ProviderError(f"pulse: cookie must be {COOKIE_LENGTH} bytes")
        self.grant = grant
        self.budget: Budget = budget if budget is not None else StreamBudget()
        self.state = SessionState()
        self._cookie = upstream_cookie
        self._from_client = FrameDecoder(CLIENT_MAX_CONTROL, CLIENT_MAX_DATA)
        self._from_server = FrameDecoder(SERVER_MAX_FRAME, SERVER_MAX_FRAME)
        self._reserved = 0  # budget held by stream requests not yet answered
        self._closed = False
        # Where handlers put packets they answer or ask themselves, during one from_client().
        self._to_server: list[bytes] = []
        self._to_client: list[bytes] = []

    # -- public ---------------------------------------------------------------------------

    def from_client(self, data: bytes) -> Output:
        to_server: list[bytes] = []
        to_client: list[bytes] = []
        self._to_server, self._to_client = to_server, to_client
        for frame in self._from_client.feed(data):
            if frame.is_control:
                self._client_packet(parse_packet(frame), to_server, to_client)
            elif self._client_may_write(frame.channel):
                to_server.append(frame.encode())
            # Audio for a channel that is not (or no longer) the client's own is dropped.
        return Output(b"".join(to_server), b"".join(to_client))

    def from_server(self, data: bytes) -> Output:
        to_server: list[bytes] = []
        to_client: list[bytes] = []
        for frame in self._from_server.feed(data):
            if frame.is_control:
                self._server_packet(frame, parse_packet(frame), to_server, to_client)
            elif self.state.own_channel(StreamKind.RECORD, frame.channel):
                to_client.append(frame.encode())
        return Output(b"".join(to_server), b"".join(to_client))

    def close(self) -> None:
        """Give back the app's stream budget; call once when the connection ends."""
        if self._closed:
            return
        self._closed = True
        for _ in range(len(self.state.streams) + self._reserved):
            self.budget.release()
        self.state.streams.clear()
        self._reserved = 0

    # -- client side ----------------------------------------------------------------------

    def _client_may_write(self, channel: int) -> bool:
        s = self.state.streams.get(channel)
        return s is not None and s.kind in (StreamKind.PLAYBACK, StreamKind.UPLOAD)

    def _client_packet(self, pkt: Packet, to_server: list[bytes], to_client: list[bytes]) -> None:
        if not self.state.client_command_allowed(pkt.command):
            raise ProviderError(
                f"pulse: command {pkt.command} not valid in phase {self.state.phase.value}"
            )
        if len(self.state.pending) >= MAX_PENDING:
            raise ProviderError("pulse: too many requests in flight")
        handler = _HANDLERS.get(pkt.command)
        try:
            if handler is None:
                raise _RefusedError()
            args = handler(self, pkt)
        except _RefusedError as refusal:
            to_client.append(error_packet(pkt.tag, refusal.code))
            return
        if args is None:
            return  # the handler answered or asked the server itself
        upstream = self.state.new_tag(Pending(pkt.command, pkt.tag))
        to_server.append(Packet(pkt.command, upstream, args).encode())

    def _answer_locally(self, tag: int, args: tuple[Value, ...] = ()) -> None:
        self._to_client.append(reply_packet(tag, args))

    # Handlers: each returns the args to forward, or None after _answer_locally, or raises.

    def _auth(self, pkt: Packet) -> tuple[Value, ...]:
        word = _u32(pkt.args, 0)
        cookie = pkt.args[1] if len(pkt.args) > 1 else None
        if not isinstance(cookie, Arbitrary) or len(cookie.data) != COOKIE_LENGTH:
            raise ProviderError("pulse: AUTH without a 256-byte cookie")
        version = word & PROTOCOL_VERSION_MASK
        if version < PROTOCOL_VERSION_MIN:
            raise _RefusedError(ErrorCode.VERSION)
        self.state.client_version = min(version, PROTOCOL_VERSION)
        self.state.phase = Phase.AUTHORIZING
        # No SHM or memfd bits: the server then uses no srbchannel and no fd passing at all.
        return (U32(self.state.client_version), Arbitrary(self._cookie), *pkt.args[2:])

    def _set_client_name(self, pkt: Packet) -> tuple[Value, ...]:
        _check_shape(pkt)
        self.state.phase = Phase.NAMING_SENT
        return _rewrite_first_proplist(pkt.args, self.grant)

    def _forward(self, pkt: Packet) -> tuple[Value, ...]:
        _check_shape(pkt)
        return pkt.args

    def _with_proplist(self, pkt: Packet) -> tuple[Value, ...]:
        _check_shape(pkt)
        return _rewrite_first_proplist(pkt.args, self.grant)

    def _reserve_stream(self) -> None:
        if not self.budget.acquire():
            raise _RefusedError(ErrorCode.TOOLARGE)
        self._reserved += 1

    def _unreserve_stream(self) -> None:
        if self._reserved:
            self._reserved -= 1
            self.budget.release()

    def _create_playback(self, pkt: Packet) -> tuple[Value, ...]:
        args = _rewrite_first_proplist(pkt.args, self.grant)
        self._reserve_stream()
        return args

    def _create_upload(self, pkt: Packet) -> tuple[Value, ...]:
        return self._create_playback(pkt)

    def _create_record(self, pkt: Packet) -> tuple[Value, ...] | None:
        if not self.grant.record:
            raise _RefusedError()
        args = _rewrite_first_proplist(pkt.args, self.grant)
        source_index = _u32(args, 2)
        source_name = _str(args, 3)
        plist_at = next(i for i, v in enumerate(args) if isinstance(v, Proplist))
        if _u32(args, plist_at + 1) != INVALID_INDEX:
            raise _RefusedError()  # direct_on_input: capture of one other stream
        if source_name is not None and _is_monitor_name(source_name):
            raise _RefusedError()
        if len(args) < 14 or not all(isinstance(v, Bool) for v in args[7:14]):
            raise ProviderError("pulse: CREATE_RECORD_STREAM without the v12 flags")
        # no_move (7th-from-v12 flag 6): the server may not later move the stream to a monitor.
        args = (*args[:12], Bool(True), *args[13:])
        self._reserve_stream()
        # Ask the server which source this is before creating anything.
        if source_index != INVALID_INDEX:
            query: tuple[Value, ...] = (U32(source_index), Str(None))
        else:
            query = (U32(INVALID_INDEX), Str(source_name or "@DEFAULT_SOURCE@"))
        upstream = self.state.new_tag(Pending(Command.GET_SOURCE_INFO, pkt.tag, args))
        self._to_server.append(Packet(Command.GET_SOURCE_INFO, upstream, query).encode())
        return None

    def _own_playback_channel(self, pkt: Packet) -> tuple[Value, ...]:
        if not self.state.own_channel(StreamKind.PLAYBACK, _u32(pkt.args, 0)):
            raise _RefusedError(ErrorCode.NOENTITY)
        return pkt.args

    def _own_record_channel(self, pkt: Packet) -> tuple[Value, ...]:
        if not self.grant.record or not self.state.own_channel(
            StreamKind.RECORD, _u32(pkt.args, 0)
        ):
            raise _RefusedError()
        return pkt.args

    def _own_upload_channel(self, pkt: Packet) -> tuple[Value, ...]:
        if not self.state.own_channel(StreamKind.UPLOAD, _u32(pkt.args, 0)):
            raise _RefusedError(ErrorCode.NOENTITY)
        return pkt.args

    def _drop_stream(self, channel: int) -> None:
        if self.state.streams.pop(channel, None) is not None:
            self.budget.release()

    def _delete_stream(self, pkt: Packet) -> tuple[Value, ...]:
        kind = {
            Command.DELETE_PLAYBACK_STREAM: StreamKind.PLAYBACK,
            Command.DELETE_RECORD_STREAM: StreamKind.RECORD,
            Command.DELETE_UPLOAD_STREAM: StreamKind.UPLOAD,
            Command.FINISH_UPLOAD_STREAM: StreamKind.UPLOAD,
        }[Command(pkt.command)]
        channel = _u32(pkt.args, 0)
        if not self.state.own_channel(kind, channel):
            raise _RefusedError(ErrorCode.NOENTITY)
        self._drop_stream(channel)
        return pkt.args

    def _update_stream_proplist(self, pkt: Packet) -> tuple[Value, ...]:
        kind = (
            StreamKind.PLAYBACK
            if pkt.command == Command.UPDATE_PLAYBACK_STREAM_PROPLIST
            else StreamKind.RECORD
        )
        if not self.state.own_channel(kind, _u32(pkt.args, 0)):
            raise _RefusedError()
        _u32(pkt.args, 1)  # mode
        return _rewrite_first_proplist(pkt.args, self.grant)

    def _remove_proplist_keys(self, pkt: Packet) -> tuple[Value, ...] | None:
        start = 0
        if pkt.command != Command.REMOVE_CLIENT_PROPLIST:
            kind = (
                StreamKind.PLAYBACK
                if pkt.command == Command.REMOVE_PLAYBACK_STREAM_PROPLIST
                else StreamKind.RECORD
            )
            if not self.state.own_channel(kind, _u32(pkt.args, 0)):
                raise _RefusedError()
            start = 1
        keys = pkt.args[start:]
        if not keys or keys[-1] != Str(None) or not all(isinstance(k, Str) for k in keys):
            raise ProviderError("pulse: malformed proplist key list")
        kept = tuple(k for k in keys[:-1] if isinstance(k, Str) and k.value not in IDENTITY_KEYS)
        if not kept:
            self._answer_locally(pkt.tag)
            return None
        return (*pkt.args[:start], *kept, Str(None))

    def _own_sink_input(self, pkt: Packet) -> tuple[Value, ...]:
        if not self.state.own_index(StreamKind.PLAYBACK, _u32(pkt.args, 0)):
            raise _RefusedError()
        if pkt.command == Command.KILL_SINK_INPUT:
            for s in list(self.state.streams.values()):
                if s.kind is StreamKind.PLAYBACK and s.index == _u32(pkt.args, 0):
                    self._drop_stream(s.channel)
        return pkt.args

    def _own_source_output(self, pkt: Packet) -> tuple[Value, ...]:
        if not self.grant.record or not self.state.own_index(StreamKind.RECORD, _u32(pkt.args, 0)):
            raise _RefusedError()
        if pkt.command == Command.KILL_SOURCE_OUTPUT:
            for s in list(self.state.streams.values()):
                if s.kind is StreamKind.RECORD and s.index == _u32(pkt.args, 0):
                    self._drop_stream(s.channel)
        return pkt.args

    def _own_client_info(self, pkt: Packet) -> tuple[Value, ...]:
        if _u32(pkt.args, 0) != self.state.client_index:
            raise _RefusedError()
        return pkt.args

    def _record_only(self, pkt: Packet) -> tuple[Value, ...]:
        if not self.grant.record:
            raise _RefusedError()
        return pkt.args

    def _source_list(self, pkt: Packet) -> tuple[Value, ...] | None:
        if not self.grant.record:
            # Without the microphone grant the app sees no sources at all (no device names).
            self._answer_locally(pkt.tag)
            return None
        return pkt.args

    def _empty_list(self, pkt: Packet) -> None:
        _check_shape(pkt)
        self._answer_locally(pkt.tag)

    def _own_list(self, pkt: Packet) -> tuple[Value, ...]:
        _check_shape(pkt)
        if self.state.version < LIST_SCHEMA_MIN_VERSION:
            raise _RefusedError()
        return pkt.args

    # -- server side ----------------------------------------------------------------------

    def _server_packet(
        self, frame: Frame, pkt: Packet, to_server: list[bytes], to_client: list[bytes]
    ) -> None:
        if pkt.command in (Command.REPLY, Command.ERROR):
            pending = self.state.take_pending(pkt.tag)
            self._server_answer(pending, pkt, to_server, to_client)
            return
        if pkt.command in _SHM_COMMANDS:
            raise ProviderError(f"pulse: server sent {Command(pkt.command).name} with SHM off")
        if pkt.tag != NO_TAG:
            raise ProviderError(f"pulse: server command {pkt.command} with tag {pkt.tag}")
        if pkt.command in (Command.PLAYBACK_STREAM_KILLED, Command.RECORD_STREAM_KILLED):
            self._drop_stream(_u32(pkt.args, 0))
            to_client.append(frame.encode())
        elif pkt.command in _SERVER_EVENTS:
            to_client.append(frame.encode())

    def _server_answer(
        self, pending: Pending, pkt: Packet, to_server: list[bytes], to_client: list[bytes]
    ) -> None:
        command = pending.command
        client_tag = pending.client_tag
        if command == Command.GET_SOURCE_INFO and pending.context:
            self._finish_record_check(pending, pkt, to_server, to_client)
            return
        if pkt.command == Command.ERROR:
            if command in (
                Command.CREATE_PLAYBACK_STREAM,
                Command.CREATE_RECORD_STREAM,
                Command.CREATE_UPLOAD_STREAM,
            ):
                self._unreserve_stream()
            to_client.append(Packet(Command.ERROR, client_tag or 0, pkt.args).encode())
            return
        args = pkt.args
        if command == Command.AUTH:
            server_version = _u32(args, 0) & PROTOCOL_VERSION_MASK
            self.state.version = min(self.state.client_version, server_version)
            self.state.phase = Phase.NAMING
            flags = _u32(args, 0) & ~(AUTH_FLAG_SHM | AUTH_FLAG_MEMFD)
            args = (U32(flags), *args[1:])
        elif command == Command.SET_CLIENT_NAME:
            if args:
                self.state.client_index = _u32(args, 0)
            self.state.phase = Phase.READY
        elif command in (
            Command.CREATE_PLAYBACK_STREAM,
            Command.CREATE_RECORD_STREAM,
            Command.CREATE_UPLOAD_STREAM,
        ):
            channel = _u32(args, 0)
            if command == Command.CREATE_UPLOAD_STREAM:
                kind, index = StreamKind.UPLOAD, INVALID_INDEX
            else:
                kind = (
                    StreamKind.PLAYBACK
                    if command == Command.CREATE_PLAYBACK_STREAM
                    else StreamKind.RECORD
                )
                index = _u32(args, 1)
            if channel in self.state.streams:
                raise ProviderError(f"pulse: server reused channel {channel}")
            if self._reserved:
                self._reserved -= 1  # the reservation becomes the stream's
            else:
                self.budget.acquire()
            self.state.streams[channel] = Stream(kind, channel, index)
        elif command in _LIST_SCHEMAS:
            args = self._own_entries(Command(command), args)
        to_client.append(Packet(Command.REPLY, client_tag or 0, args).encode())

    def _own_entries(self, command: Command, args: tuple[Value, ...]) -> tuple[Value, ...]:
        width, client_at = _LIST_SCHEMAS[command]
        if len(args) % width:
            raise ProviderError(f"pulse: {command.name} reply does not match its schema")
        kind = StreamKind.RECORD
        if command == Command.GET_SINK_INPUT_INFO_LIST:
            kind = StreamKind.PLAYBACK
        kept: list[Value] = []
        for start in range(0, len(args), width):
            entry = args[start : start + width]
            index = _u32(entry, 0)
            owner = _u32(entry, client_at)
            if command != Command.GET_CLIENT_INFO_LIST and not isinstance(entry[-1], FormatInfo):
                raise ProviderError(f"pulse: {command.name} reply does not match its schema")
            mine = owner == self.state.client_index
            if command != Command.GET_CLIENT_INFO_LIST:
                mine = mine or self.state.own_index(kind, index)
            if mine:
                kept.extend(entry)
        return tuple(kept)

    def _finish_record_check(
        self, pending: Pending, pkt: Packet, to_server: list[bytes], to_client: list[bytes]
    ) -> None:
        client_tag = pending.client_tag if pending.client_tag is not None else 0
        if pkt.command == Command.ERROR:
            self._unreserve_stream()
            to_client.append(Packet(Command.ERROR, client_tag, pkt.args).encode())
            return
        # Source info starts: index, name, description, spec, map, owner module, volume, mute,
        # monitor_of_sink; stable since the first protocol versions.
        index = _u32(pkt.args, 0)
        name = _str(pkt.args, 1) or ""
        monitor_of = _u32(pkt.args, 8)
        if monitor_of != INVALID_INDEX or _is_monitor_name(name):
            self._unreserve_stream()
            to_client.append(error_packet(client_tag, ErrorCode.ACCESS))
            return
        args = (*pending.context[:2], U32(index), Str(None), *pending.context[4:])
        upstream = self.state.new_tag(Pending(Command.CREATE_RECORD_STREAM, client_tag))
        to_server.append(Packet(Command.CREATE_RECORD_STREAM, upstream, args).encode())


# Exact argument types of the commands forwarded without rewriting; anything else is a
# violation rather than something the server would have to reject.
_SHAPES: dict[int, tuple[type, ...]] = {
    Command.LOOKUP_SINK: (Str,),
    Command.STAT: (),
    Command.GET_SERVER_INFO: (),
    Command.GET_SINK_INFO: (U32, Str),
    Command.GET_CARD_INFO: (U32, Str),
    Command.SUBSCRIBE: (U32,),
    **{c: () for c in (*_EMPTY_LISTS, *_LIST_SCHEMAS)},
    Command.GET_SINK_INFO_LIST: (),
    Command.GET_CARD_INFO_LIST: (),
    Command.SET_CLIENT_NAME: (Proplist,),
    Command.UPDATE_CLIENT_PROPLIST: (U32, Proplist),
    Command.PLAY_SAMPLE: (U32, Str, U32, Str, Proplist),
}


def _check_shape(pkt: Packet) -> None:
    shape = _SHAPES[pkt.command]
    if len(pkt.args) != len(shape) or not all(
        isinstance(v, t) for v, t in zip(pkt.args, shape, strict=True)
    ):
        raise ProviderError(f"pulse: arguments of command {pkt.command} do not match its shape")


def _is_monitor_name(name: str) -> bool:
    return name.endswith(".monitor") or name in MONITOR_NAMES


def _handlers() -> dict[int, _Handler]:
    f = PulseFilter
    table: dict[int, _Handler] = {
        Command.AUTH: f._auth,
        Command.SET_CLIENT_NAME: f._set_client_name,
        Command.CREATE_PLAYBACK_STREAM: f._create_playback,
        Command.DELETE_PLAYBACK_STREAM: f._delete_stream,
        Command.CREATE_RECORD_STREAM: f._create_record,
        Command.DELETE_RECORD_STREAM: f._delete_stream,
        Command.CREATE_UPLOAD_STREAM: f._create_upload,
        Command.DELETE_UPLOAD_STREAM: f._delete_stream,
        Command.FINISH_UPLOAD_STREAM: f._delete_stream,
        Command.PLAY_SAMPLE: f._with_proplist,
        Command.LOOKUP_SOURCE: f._record_only,
        Command.GET_SOURCE_INFO: f._record_only,
        Command.GET_SOURCE_INFO_LIST: f._source_list,
        Command.GET_CLIENT_INFO: f._own_client_info,
        Command.GET_SINK_INPUT_INFO: f._own_sink_input,
        Command.GET_SOURCE_OUTPUT_INFO: f._own_source_output,
        Command.SET_SINK_INPUT_VOLUME: f._own_sink_input,
        Command.SET_SINK_INPUT_MUTE: f._own_sink_input,
        Command.KILL_SINK_INPUT: f._own_sink_input,
        Command.SET_SOURCE_OUTPUT_VOLUME: f._own_source_output,
        Command.SET_SOURCE_OUTPUT_MUTE: f._own_source_output,
        Command.KILL_SOURCE_OUTPUT: f._own_source_output,
        Command.UPDATE_CLIENT_PROPLIST: f._with_proplist,
        Command.UPDATE_PLAYBACK_STREAM_PROPLIST: f._update_stream_proplist,
        Command.UPDATE_RECORD_STREAM_PROPLIST: f._update_stream_proplist,
        Command.REMOVE_CLIENT_PROPLIST: f._remove_proplist_keys,
        Command.REMOVE_PLAYBACK_STREAM_PROPLIST: f._remove_proplist_keys,
        Command.REMOVE_RECORD_STREAM_PROPLIST: f._remove_proplist_keys,
    }
    table.update({c: f._forward for c in _READ_ONLY_COMMANDS})
    table.update({c: f._own_playback_channel for c in _PLAYBACK_CHANNEL_COMMANDS})
    table.update({c: f._own_record_channel for c in _RECORD_CHANNEL_COMMANDS})
    table.update({c: f._empty_list for c in _EMPTY_LISTS})
    table.update({c: f._own_list for c in _LIST_SCHEMAS})
    return table


_HANDLERS = _handlers()


def refused_commands(grant: AudioGrant) -> frozenset[int]:
    """Every command number this grant answers with an error whatever its arguments."""
    always = {c for c in range(256) if c not in _HANDLERS}
    if not grant.record:
        always |= {
            Command.CREATE_RECORD_STREAM,
            Command.LOOKUP_SOURCE,
            Command.GET_SOURCE_INFO,
            *_RECORD_CHANNEL_COMMANDS,
            Command.SET_SOURCE_OUTPUT_VOLUME,
            Command.SET_SOURCE_OUTPUT_MUTE,
            Command.KILL_SOURCE_OUTPUT,
        }
    return frozenset(always)


def with_peer(grant: AudioGrant, host_pid: int) -> AudioGrant:
    """The grant for one connection: the app's grant with the SO_PEERCRED pid."""
    return replace(grant, host_pid=host_pid)
