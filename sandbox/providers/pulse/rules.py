"""Pure rules of the per-app PulseAudio proxy: grants, allow-lists, command tables; no state."""

# What a sandboxed client may do through the proxy (docs/audio.md says the same for users):
#
# * Every client packet is parsed completely; only packets this module allows are forwarded,
#   re-serialised from the parsed values under a fresh upstream tag. Everything else gets
#   `ERROR(tag, PA_ERR_ACCESS)` or, for a malformed frame, the connection is closed (the caller
#   catches ProviderError). Unknown commands are refused: the table below is an allow-list.
# * playback: streams, drain/cork/flush/latency on its own channels; volume, mute and kill of its
#   OWN sink inputs; sample upload (namespaced and capped per app, samples.py) and play. Server,
#   sink and card info are readable (they describe devices, not other apps). Client, sink-input
#   and source-output lists are answered with the client's own objects only; module and sample
#   lists are answered empty.
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

from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace

from sandbox.errors import ProviderError
from sandbox.providers.pulse.protocol import Command, ErrorCode, Packet, StreamKind
from sandbox.providers.pulse.tagstruct import U32, FormatInfo, Proplist, Str, Value, prop_str

LIST_SCHEMA_MIN_VERSION = 22

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


class RefusedError(Exception):
    """A request the proxy answers with `ERROR(tag, code)` instead of forwarding it."""

    def __init__(self, code: ErrorCode = ErrorCode.ACCESS) -> None:
        self.code = code


@dataclass(frozen=True, slots=True)
class AudioGrant:
    """What one app's connections may do; host_pid is filled per connection from SO_PEERCRED."""

    app_id: str
    app_name: str
    record: bool = False
    icon: str | None = None
    host_pid: int | None = None


def with_peer(grant: AudioGrant, host_pid: int) -> AudioGrant:
    """The grant for one connection: the app's grant with the SO_PEERCRED pid."""
    return replace(grant, host_pid=host_pid)


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


def rewrite_proplists(args: tuple[Value, ...], grant: AudioGrant) -> tuple[Value, ...]:
    """Every top-level proplist sanitised (a request carries one; a second must not slip by)."""
    if not any(isinstance(v, Proplist) for v in args):
        raise ProviderError("pulse: request has no proplist")
    return tuple(sanitize_proplist(v, grant) if isinstance(v, Proplist) else v for v in args)


def u32_arg(args: tuple[Value, ...], i: int) -> int:
    if i >= len(args) or not isinstance(args[i], U32):
        raise ProviderError(f"pulse: argument {i} is not a u32")
    v = args[i]
    assert isinstance(v, U32)
    return v.value


def str_arg(args: tuple[Value, ...], i: int) -> str | None:
    if i >= len(args) or not isinstance(args[i], Str):
        raise ProviderError(f"pulse: argument {i} is not a string")
    v = args[i]
    assert isinstance(v, Str)
    return v.value


# Commands on one of the client's own stream channels (first argument).
PLAYBACK_CHANNEL_COMMANDS = frozenset(
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
RECORD_CHANNEL_COMMANDS = frozenset(
    {
        Command.SET_RECORD_STREAM_NAME,
        Command.GET_RECORD_LATENCY,
        Command.CORK_RECORD_STREAM,
        Command.FLUSH_RECORD_STREAM,
        Command.SET_RECORD_STREAM_BUFFER_ATTR,
        Command.UPDATE_RECORD_STREAM_SAMPLE_RATE,
    }
)
# RefusedError without the record grant, whatever their arguments.
RECORD_ONLY_COMMANDS = frozenset(
    {
        Command.CREATE_RECORD_STREAM,
        Command.LOOKUP_SOURCE,
        Command.GET_SOURCE_INFO,
        *RECORD_CHANNEL_COMMANDS,
        Command.SET_SOURCE_OUTPUT_VOLUME,
        Command.SET_SOURCE_OUTPUT_MUTE,
        Command.KILL_SOURCE_OUTPUT,
    }
)
READ_ONLY_COMMANDS = frozenset(
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
EMPTY_LISTS = frozenset({Command.GET_MODULE_INFO_LIST, Command.GET_SAMPLE_INFO_LIST})
# (values per entry, position of the owning client index) at LIST_SCHEMA_MIN_VERSION and later.
LIST_SCHEMAS: Mapping[int, tuple[int, int]] = {
    Command.GET_CLIENT_INFO_LIST: (5, 0),
    Command.GET_SINK_INPUT_INFO_LIST: (18, 3),
    Command.GET_SOURCE_OUTPUT_INFO_LIST: (18, 3),
}
# Server-initiated commands passed to the client; any other is dropped, SHM ones close.
SERVER_EVENTS = frozenset(
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
SHM_COMMANDS = frozenset(
    {Command.ENABLE_SRBCHANNEL, Command.DISABLE_SRBCHANNEL, Command.REGISTER_MEMFD_SHMID}
)


# The kind of stream each command creates, ends or names (by channel or by index), and the kind
# each list reply is filtered by: one table, so no command is playback in one place and record
# in another.
STREAM_KIND: Mapping[int, StreamKind] = {
    **dict.fromkeys(
        (
            Command.CREATE_PLAYBACK_STREAM,
            Command.DELETE_PLAYBACK_STREAM,
            Command.UPDATE_PLAYBACK_STREAM_PROPLIST,
            Command.REMOVE_PLAYBACK_STREAM_PROPLIST,
            Command.GET_SINK_INPUT_INFO,
            Command.SET_SINK_INPUT_VOLUME,
            Command.SET_SINK_INPUT_MUTE,
            Command.KILL_SINK_INPUT,
            Command.GET_SINK_INPUT_INFO_LIST,
        ),
        StreamKind.PLAYBACK,
    ),
    **dict.fromkeys(
        (
            Command.CREATE_RECORD_STREAM,
            Command.DELETE_RECORD_STREAM,
            Command.UPDATE_RECORD_STREAM_PROPLIST,
            Command.REMOVE_RECORD_STREAM_PROPLIST,
            Command.GET_SOURCE_OUTPUT_INFO,
            Command.SET_SOURCE_OUTPUT_VOLUME,
            Command.SET_SOURCE_OUTPUT_MUTE,
            Command.KILL_SOURCE_OUTPUT,
            Command.GET_SOURCE_OUTPUT_INFO_LIST,
        ),
        StreamKind.RECORD,
    ),
    **dict.fromkeys(
        (
            Command.CREATE_UPLOAD_STREAM,
            Command.DELETE_UPLOAD_STREAM,
            Command.FINISH_UPLOAD_STREAM,
        ),
        StreamKind.UPLOAD,
    ),
}
STREAM_CREATES = frozenset(
    {Command.CREATE_PLAYBACK_STREAM, Command.CREATE_RECORD_STREAM, Command.CREATE_UPLOAD_STREAM}
)
KILL_COMMANDS = frozenset({Command.KILL_SINK_INPUT, Command.KILL_SOURCE_OUTPUT})

# Exact argument types of the commands forwarded without rewriting; anything else is a
# violation rather than something the server would have to reject.
SHAPES: dict[int, tuple[type, ...]] = {
    Command.LOOKUP_SINK: (Str,),
    Command.STAT: (),
    Command.GET_SERVER_INFO: (),
    Command.GET_SINK_INFO: (U32, Str),
    Command.GET_CARD_INFO: (U32, Str),
    Command.SUBSCRIBE: (U32,),
    **{c: () for c in (*EMPTY_LISTS, *LIST_SCHEMAS)},
    Command.GET_SINK_INFO_LIST: (),
    Command.GET_CARD_INFO_LIST: (),
    Command.SET_CLIENT_NAME: (Proplist,),
    Command.UPDATE_CLIENT_PROPLIST: (U32, Proplist),
    Command.PLAY_SAMPLE: (U32, Str, U32, Str, Proplist),
    Command.REMOVE_SAMPLE: (Str,),
}


def check_shape(pkt: Packet) -> None:
    shape = SHAPES[pkt.command]
    if len(pkt.args) != len(shape) or not all(
        isinstance(v, t) for v, t in zip(pkt.args, shape, strict=True)
    ):
        raise ProviderError(f"pulse: arguments of command {pkt.command} do not match its shape")


def own_entries(
    command: Command,
    args: tuple[Value, ...],
    client_index: int,
    own_index: Callable[[StreamKind, int], bool],
) -> tuple[Value, ...]:
    """A client/sink-input/source-output list reply reduced to the connection's own entries."""
    width, client_at = LIST_SCHEMAS[command]
    if len(args) % width:
        raise ProviderError(f"pulse: {command.name} reply does not match its schema")
    streams = command != Command.GET_CLIENT_INFO_LIST
    kind = STREAM_KIND.get(command, StreamKind.RECORD)
    kept: list[Value] = []
    for start in range(0, len(args), width):
        entry = args[start : start + width]
        index = u32_arg(entry, 0)
        owner = u32_arg(entry, client_at)
        if streams and not isinstance(entry[-1], FormatInfo):
            raise ProviderError(f"pulse: {command.name} reply does not match its schema")
        mine = owner == client_index
        if streams:
            mine = mine or own_index(kind, index)
        if mine:
            kept.extend(entry)
    return tuple(kept)


def is_monitor_name(name: str) -> bool:
    return name.endswith(".monitor") or name in MONITOR_NAMES
