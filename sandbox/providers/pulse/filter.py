"""One connection of the per-app PulseAudio proxy: state and handlers; bytes in and out, no I/O."""

# One PulseFilter per client connection. It parses every frame of both directions (protocol),
# applies the rules (rules.py, where the list of what a client may do lives) and tracks what the
# connection owns: its phase, its streams, its requests in flight and its share of the app's
# stream budget. Only packets a handler allows are forwarded, re-serialised from the parsed
# values under a fresh upstream tag; a refusal is `ERROR(tag, code)`; a malformed frame raises
# ProviderError and the caller closes the connection.

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from sandbox.errors import ProviderError
from sandbox.providers.pulse import samples
from sandbox.providers.pulse.budget import Budget, StreamBudget
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
    Command,
    ErrorCode,
    Frame,
    FrameDecoder,
    Packet,
    Pending,
    Phase,
    SessionState,
    Stream,
    StreamKind,
    error_packet,
    parse_packet,
    reply_packet,
)
from sandbox.providers.pulse.rules import (
    EMPTY_LISTS,
    IDENTITY_KEYS,
    KILL_COMMANDS,
    LIST_SCHEMA_MIN_VERSION,
    LIST_SCHEMAS,
    PLAYBACK_CHANNEL_COMMANDS,
    READ_ONLY_COMMANDS,
    RECORD_CHANNEL_COMMANDS,
    RECORD_ONLY_COMMANDS,
    SERVER_EVENTS,
    SHM_COMMANDS,
    STREAM_CREATES,
    STREAM_KIND,
    AudioGrant,
    RefusedError,
    check_shape,
    is_monitor_name,
    own_entries,
    rewrite_proplists,
    str_arg,
    u32_arg,
)
from sandbox.providers.pulse.tagstruct import U32, Arbitrary, Bool, Proplist, Str, Value

MAX_PENDING = 4096


@dataclass(frozen=True, slots=True)
class Output:
    """What one input chunk produced: bytes for the server and bytes for the client."""

    to_server: bytes = b""
    to_client: bytes = b""


_Handler = Callable[["PulseFilter", Packet], tuple[Value, ...] | None]
# A handler returns the (rewritten) arguments to forward, returns None after answering
# locally, or raises RefusedError.
_ReplyHandler = Callable[["PulseFilter", Command, tuple[Value, ...]], tuple[Value, ...]]
# A reply handler learns from the server's reply to a forwarded request and returns the
# arguments the client gets.


class PulseFilter:
    """One client connection: feed it bytes from either side, write out what it returns."""

    def __init__(
        self,
        grant: AudioGrant,
        budget: Budget | None = None,
        upstream_cookie: bytes = bytes(COOKIE_LENGTH),
        ledger: samples.SampleLedger | None = None,
    ) -> None:
        if len(upstream_cookie) != COOKIE_LENGTH:
            raise ProviderError(f"pulse: cookie must be {COOKIE_LENGTH} bytes")
        self.grant = grant
        self.budget: Budget = budget if budget is not None else StreamBudget()
        self.state = SessionState()
        self.ledger = ledger if ledger is not None else samples.MemoryLedger()
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
                raise RefusedError()
            args = handler(self, pkt)
        except RefusedError as refusal:
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
        word = u32_arg(pkt.args, 0)
        cookie = pkt.args[1] if len(pkt.args) > 1 else None
        if not isinstance(cookie, Arbitrary) or len(cookie.data) != COOKIE_LENGTH:
            raise ProviderError("pulse: AUTH without a 256-byte cookie")
        version = word & PROTOCOL_VERSION_MASK
        if version < PROTOCOL_VERSION_MIN:
            raise RefusedError(ErrorCode.VERSION)
        self.state.client_version = min(version, PROTOCOL_VERSION)
        self.state.phase = Phase.AUTHORIZING
        # No SHM or memfd bits: the server then uses no srbchannel and no fd passing at all.
        return (U32(self.state.client_version), Arbitrary(self._cookie), *pkt.args[2:])

    def _set_client_name(self, pkt: Packet) -> tuple[Value, ...]:
        check_shape(pkt)
        self.state.phase = Phase.NAMING_SENT
        return rewrite_proplists(pkt.args, self.grant)

    def _forward(self, pkt: Packet) -> tuple[Value, ...]:
        check_shape(pkt)
        return pkt.args

    def _with_proplist(self, pkt: Packet) -> tuple[Value, ...]:
        check_shape(pkt)
        return rewrite_proplists(pkt.args, self.grant)

    def _reserve_stream(self) -> None:
        if not self.budget.acquire():
            raise RefusedError(ErrorCode.TOOLARGE)
        self._reserved += 1

    def _unreserve_stream(self) -> None:
        if self._reserved:
            self._reserved -= 1
            self.budget.release()

    def _create_playback(self, pkt: Packet) -> tuple[Value, ...]:
        args = rewrite_proplists(pkt.args, self.grant)
        self._reserve_stream()
        return args

    def _create_upload(self, pkt: Packet) -> tuple[Value, ...]:
        args = rewrite_proplists(pkt.args, self.grant)
        self._reserve_stream()
        try:
            return samples.upload_args(args, self.grant.app_id, self.ledger)
        except RefusedError:
            self._unreserve_stream()
            raise

    def _play_sample(self, pkt: Packet) -> tuple[Value, ...]:
        check_shape(pkt)
        args = rewrite_proplists(pkt.args, self.grant)
        return samples.play_args(args, self.grant.app_id, self.ledger)

    def _remove_sample(self, pkt: Packet) -> tuple[Value, ...]:
        check_shape(pkt)
        return samples.remove_args(pkt.args, self.grant.app_id, self.ledger)

    def _create_record(self, pkt: Packet) -> tuple[Value, ...] | None:
        if not self.grant.record:
            raise RefusedError()
        args = rewrite_proplists(pkt.args, self.grant)
        source_index = u32_arg(args, 2)
        source_name = str_arg(args, 3)
        plist_at = next(i for i, v in enumerate(args) if isinstance(v, Proplist))
        if u32_arg(args, plist_at + 1) != INVALID_INDEX:
            raise RefusedError()  # direct_on_input: capture of one other stream
        if source_name is not None and is_monitor_name(source_name):
            raise RefusedError()
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
        if not self.state.own_channel(StreamKind.PLAYBACK, u32_arg(pkt.args, 0)):
            raise RefusedError(ErrorCode.NOENTITY)
        return pkt.args

    def _own_record_channel(self, pkt: Packet) -> tuple[Value, ...]:
        if not self.grant.record or not self.state.own_channel(
            StreamKind.RECORD, u32_arg(pkt.args, 0)
        ):
            raise RefusedError()
        return pkt.args

    def _drop_stream(self, channel: int) -> None:
        if self.state.streams.pop(channel, None) is not None:
            self.budget.release()

    def _delete_stream(self, pkt: Packet) -> tuple[Value, ...]:
        channel = u32_arg(pkt.args, 0)
        if not self.state.own_channel(STREAM_KIND[pkt.command], channel):
            raise RefusedError(ErrorCode.NOENTITY)
        self._drop_stream(channel)
        return pkt.args

    def _update_stream_proplist(self, pkt: Packet) -> tuple[Value, ...]:
        if not self.state.own_channel(STREAM_KIND[pkt.command], u32_arg(pkt.args, 0)):
            raise RefusedError()
        u32_arg(pkt.args, 1)  # mode
        return rewrite_proplists(pkt.args, self.grant)

    def _remove_proplist_keys(self, pkt: Packet) -> tuple[Value, ...] | None:
        start = 0
        kind = STREAM_KIND.get(pkt.command)  # None: the client's own proplist
        if kind is not None:
            if not self.state.own_channel(kind, u32_arg(pkt.args, 0)):
                raise RefusedError()
            start = 1
        keys = pkt.args[start:]
        if not keys or keys[-1] != Str(None) or not all(isinstance(k, Str) for k in keys):
            raise ProviderError("pulse: malformed proplist key list")
        kept = tuple(k for k in keys[:-1] if isinstance(k, Str) and k.value not in IDENTITY_KEYS)
        if not kept:
            self._answer_locally(pkt.tag)
            return None
        return (*pkt.args[:start], *kept, Str(None))

    def _own_stream_index(self, pkt: Packet) -> tuple[Value, ...]:
        """A sink input (playback) or source output (record) of the client's own, by index."""
        kind = STREAM_KIND[pkt.command]
        if kind is StreamKind.RECORD and not self.grant.record:
            raise RefusedError()  # before the arguments: refused, not malformed, without record
        index = u32_arg(pkt.args, 0)
        if not self.state.own_index(kind, index):
            raise RefusedError()
        if pkt.command in KILL_COMMANDS:
            for s in list(self.state.streams.values()):
                if s.kind is kind and s.index == index:
                    self._drop_stream(s.channel)
        return pkt.args

    def _own_client_info(self, pkt: Packet) -> tuple[Value, ...]:
        if u32_arg(pkt.args, 0) != self.state.client_index:
            raise RefusedError()
        return pkt.args

    def _record_only(self, pkt: Packet) -> tuple[Value, ...]:
        if not self.grant.record:
            raise RefusedError()
        return pkt.args

    def _source_list(self, pkt: Packet) -> tuple[Value, ...] | None:
        if not self.grant.record:
            # Without the microphone grant the app sees no sources at all (no device names).
            self._answer_locally(pkt.tag)
            return None
        return pkt.args

    def _empty_list(self, pkt: Packet) -> None:
        check_shape(pkt)
        self._answer_locally(pkt.tag)

    def _own_list(self, pkt: Packet) -> tuple[Value, ...]:
        check_shape(pkt)
        if self.state.version < LIST_SCHEMA_MIN_VERSION:
            raise RefusedError()
        return pkt.args

    # -- server side ----------------------------------------------------------------------

    def _server_packet(
        self, frame: Frame, pkt: Packet, to_server: list[bytes], to_client: list[bytes]
    ) -> None:
        if pkt.command in (Command.REPLY, Command.ERROR):
            pending = self.state.take_pending(pkt.tag)
            self._server_answer(pending, pkt, to_server, to_client)
            return
        if pkt.command in SHM_COMMANDS:
            raise ProviderError(f"pulse: server sent {Command(pkt.command).name} with SHM off")
        if pkt.tag != NO_TAG:
            raise ProviderError(f"pulse: server command {pkt.command} with tag {pkt.tag}")
        if pkt.command in (Command.PLAYBACK_STREAM_KILLED, Command.RECORD_STREAM_KILLED):
            self._drop_stream(u32_arg(pkt.args, 0))
            to_client.append(frame.encode())
        elif pkt.command in SERVER_EVENTS:
            to_client.append(frame.encode())

    def _server_answer(
        self, pending: Pending, pkt: Packet, to_server: list[bytes], to_client: list[bytes]
    ) -> None:
        command = pending.command
        if command == Command.GET_SOURCE_INFO and pending.context:
            self._finish_record_check(pending, pkt, to_server, to_client)
            return
        client_tag = pending.client_tag or 0
        if pkt.command == Command.ERROR:
            if command in STREAM_CREATES:
                self._unreserve_stream()
            to_client.append(Packet(Command.ERROR, client_tag, pkt.args).encode())
            return
        reply = _REPLY_HANDLERS.get(command)
        args = pkt.args if reply is None else reply(self, Command(command), pkt.args)
        to_client.append(Packet(Command.REPLY, client_tag, args).encode())

    # Reply handlers: what the connection learns from the server's answer to a request.

    def _auth_reply(self, _command: Command, args: tuple[Value, ...]) -> tuple[Value, ...]:
        server_version = u32_arg(args, 0) & PROTOCOL_VERSION_MASK
        self.state.version = min(self.state.client_version, server_version)
        self.state.phase = Phase.NAMING
        flags = u32_arg(args, 0) & ~(AUTH_FLAG_SHM | AUTH_FLAG_MEMFD)
        return (U32(flags), *args[1:])

    def _named(self, _command: Command, args: tuple[Value, ...]) -> tuple[Value, ...]:
        if args:
            self.state.client_index = u32_arg(args, 0)
        self.state.phase = Phase.READY
        return args

    def _stream_created(self, command: Command, args: tuple[Value, ...]) -> tuple[Value, ...]:
        kind = STREAM_KIND[command]
        channel = u32_arg(args, 0)
        index = INVALID_INDEX if kind is StreamKind.UPLOAD else u32_arg(args, 1)
        if channel in self.state.streams:
            raise ProviderError(f"pulse: server reused channel {channel}")
        if self._reserved:
            self._reserved -= 1  # the reservation becomes the stream's
        else:
            self.budget.acquire()
        self.state.streams[channel] = Stream(kind, channel, index)
        return args

    def _own_entries(self, command: Command, args: tuple[Value, ...]) -> tuple[Value, ...]:
        return own_entries(command, args, self.state.client_index, self.state.own_index)

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
        index = u32_arg(pkt.args, 0)
        name = str_arg(pkt.args, 1) or ""
        monitor_of = u32_arg(pkt.args, 8)
        if monitor_of != INVALID_INDEX or is_monitor_name(name):
            self._unreserve_stream()
            to_client.append(error_packet(client_tag, ErrorCode.ACCESS))
            return
        args = (*pending.context[:2], U32(index), Str(None), *pending.context[4:])
        upstream = self.state.new_tag(Pending(Command.CREATE_RECORD_STREAM, client_tag))
        to_server.append(Packet(Command.CREATE_RECORD_STREAM, upstream, args).encode())


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
        Command.PLAY_SAMPLE: f._play_sample,
        Command.REMOVE_SAMPLE: f._remove_sample,
        Command.LOOKUP_SOURCE: f._record_only,
        Command.GET_SOURCE_INFO: f._record_only,
        Command.GET_SOURCE_INFO_LIST: f._source_list,
        Command.GET_CLIENT_INFO: f._own_client_info,
        Command.GET_SINK_INPUT_INFO: f._own_stream_index,
        Command.GET_SOURCE_OUTPUT_INFO: f._own_stream_index,
        Command.SET_SINK_INPUT_VOLUME: f._own_stream_index,
        Command.SET_SINK_INPUT_MUTE: f._own_stream_index,
        Command.KILL_SINK_INPUT: f._own_stream_index,
        Command.SET_SOURCE_OUTPUT_VOLUME: f._own_stream_index,
        Command.SET_SOURCE_OUTPUT_MUTE: f._own_stream_index,
        Command.KILL_SOURCE_OUTPUT: f._own_stream_index,
        Command.UPDATE_CLIENT_PROPLIST: f._with_proplist,
        Command.UPDATE_PLAYBACK_STREAM_PROPLIST: f._update_stream_proplist,
        Command.UPDATE_RECORD_STREAM_PROPLIST: f._update_stream_proplist,
        Command.REMOVE_CLIENT_PROPLIST: f._remove_proplist_keys,
        Command.REMOVE_PLAYBACK_STREAM_PROPLIST: f._remove_proplist_keys,
        Command.REMOVE_RECORD_STREAM_PROPLIST: f._remove_proplist_keys,
    }
    table.update({c: f._forward for c in READ_ONLY_COMMANDS})
    table.update({c: f._own_playback_channel for c in PLAYBACK_CHANNEL_COMMANDS})
    table.update({c: f._own_record_channel for c in RECORD_CHANNEL_COMMANDS})
    table.update({c: f._empty_list for c in EMPTY_LISTS})
    table.update({c: f._own_list for c in LIST_SCHEMAS})
    return table


_HANDLERS = _handlers()
_REPLY_HANDLERS: dict[int, _ReplyHandler] = {
    Command.AUTH: PulseFilter._auth_reply,
    Command.SET_CLIENT_NAME: PulseFilter._named,
    **dict.fromkeys(STREAM_CREATES, PulseFilter._stream_created),
    **dict.fromkeys(LIST_SCHEMAS, PulseFilter._own_entries),
}


def refused_commands(grant: AudioGrant) -> frozenset[int]:
    """Every command number this grant answers with an error whatever its arguments."""
    always = {c for c in range(256) if c not in _HANDLERS}
    if not grant.record:
        always |= RECORD_ONLY_COMMANDS
    return frozenset(always)
