"""Sans-IO frames, packets and phases of the PulseAudio native protocol; no sockets, no policy."""

# The rules of this module, in the manner of h11:
#
# * Bytes in, values out. `FrameDecoder.feed()` takes whatever the socket gave and returns the
#   complete frames; nothing here reads, writes, sleeps or knows about asyncio.
# * A frame is a 20-byte descriptor (five big-endian u32: LENGTH, CHANNEL, OFFSET_HI,
#   OFFSET_LO, FLAGS) and LENGTH payload bytes. CHANNEL 0xFFFFFFFF is a command packet (flags and
#   offsets must be 0); any other channel is audio (a memblock) whose FLAGS low byte is the seek
#   mode (<= 3). Every SHM flag (mask 0xFF000000) is a violation: the proxy never negotiates
#   shared memory, so such a frame can only be an attack or a bug.
# * Sizes are capped per direction before the payload is buffered: a decoder never holds more
#   than one frame's worth of bytes, and a LENGTH over the cap is a violation at once.
# * A packet's tagstruct is parsed completely or not at all (the value codec: tagstruct.py).
# * Every violation raises ProviderError; the caller closes THAT connection and nothing of the
#   offending frame reaches the other side.
# * The connection walks AUTH -> AUTHORIZING -> NAMING -> NAMING_SENT -> READY (see `Phase`):
#   the first client packet must be AUTH, the second SET_CLIENT_NAME and only after the auth
#   reply, no other command is valid before READY, and neither comes again after.
#   `SessionState.client_command_allowed` is that transition table.
# * Tags are the proxy's own towards the server: each forwarded request gets a fresh upstream
#   tag and a `Pending` record; a server REPLY/ERROR must name a pending upstream tag, and is
#   sent back under the client's tag. So the proxy can ask its own questions (e.g. "is this
#   source a monitor?") and a server reply can never be matched to a request that was refused.
# * Streams the client owns are learnt only from the server's replies to its own requests
#   (CREATE_*_STREAM reply: channel, then sink input / source output index).

from __future__ import annotations

import enum
import struct
from collections.abc import Sequence
from dataclasses import dataclass, field

from sandbox.errors import ProviderError
from sandbox.providers.pulse.tagstruct import U32, Value, parse_tagstruct, serialize_tagstruct

DESCRIPTOR = struct.Struct("!IIIII")
_U32 = struct.Struct("!I")
DESCRIPTOR_SIZE = DESCRIPTOR.size
CONTROL_CHANNEL = 0xFFFFFFFF
INVALID_INDEX = 0xFFFFFFFF
NO_TAG = 0xFFFFFFFF  # tag of server-initiated commands

SHM_FLAG_MASK = 0xFF000000
SEEK_MODE_MASK = 0x000000FF
SEEK_MODE_MAX = 3

PROTOCOL_VERSION = 35  # the newest version this codec understands
PROTOCOL_VERSION_MIN = 13  # proplists everywhere; older clients are refused
PROTOCOL_VERSION_MASK = 0x0000FFFF
AUTH_FLAG_SHM = 0x80000000
AUTH_FLAG_MEMFD = 0x40000000
COOKIE_LENGTH = 256

# libpulse sends audio in blocks of at most ~64 KiB and commands of a few KiB; PulseAudio itself
# accepts 16 MiB frames, which would let one client make the server allocate that much.
CLIENT_MAX_CONTROL = 256 * 1024
CLIENT_MAX_DATA = 1024 * 1024
SERVER_MAX_FRAME = 16 * 1024 * 1024


class Command(enum.IntEnum):
    """PA_COMMAND_* in the order of pulsecore/native-common.h."""

    ERROR = 0
    TIMEOUT = 1
    REPLY = 2
    CREATE_PLAYBACK_STREAM = 3
    DELETE_PLAYBACK_STREAM = 4
    CREATE_RECORD_STREAM = 5
    DELETE_RECORD_STREAM = 6
    EXIT = 7
    AUTH = 8
    SET_CLIENT_NAME = 9
    LOOKUP_SINK = 10
    LOOKUP_SOURCE = 11
    DRAIN_PLAYBACK_STREAM = 12
    STAT = 13
    GET_PLAYBACK_LATENCY = 14
    CREATE_UPLOAD_STREAM = 15
    DELETE_UPLOAD_STREAM = 16
    FINISH_UPLOAD_STREAM = 17
    PLAY_SAMPLE = 18
    REMOVE_SAMPLE = 19
    GET_SERVER_INFO = 20
    GET_SINK_INFO = 21
    GET_SINK_INFO_LIST = 22
    GET_SOURCE_INFO = 23
    GET_SOURCE_INFO_LIST = 24
    GET_MODULE_INFO = 25
    GET_MODULE_INFO_LIST = 26
    GET_CLIENT_INFO = 27
    GET_CLIENT_INFO_LIST = 28
    GET_SINK_INPUT_INFO = 29
    GET_SINK_INPUT_INFO_LIST = 30
    GET_SOURCE_OUTPUT_INFO = 31
    GET_SOURCE_OUTPUT_INFO_LIST = 32
    GET_SAMPLE_INFO = 33
    GET_SAMPLE_INFO_LIST = 34
    SUBSCRIBE = 35
    SET_SINK_VOLUME = 36
    SET_SINK_INPUT_VOLUME = 37
    SET_SOURCE_VOLUME = 38
    SET_SINK_MUTE = 39
    SET_SOURCE_MUTE = 40
    CORK_PLAYBACK_STREAM = 41
    FLUSH_PLAYBACK_STREAM = 42
    TRIGGER_PLAYBACK_STREAM = 43
    SET_DEFAULT_SINK = 44
    SET_DEFAULT_SOURCE = 45
    SET_PLAYBACK_STREAM_NAME = 46
    SET_RECORD_STREAM_NAME = 47
    KILL_CLIENT = 48
    KILL_SINK_INPUT = 49
    KILL_SOURCE_OUTPUT = 50
    LOAD_MODULE = 51
    UNLOAD_MODULE = 52
    ADD_AUTOLOAD_OBSOLETE = 53
    REMOVE_AUTOLOAD_OBSOLETE = 54
    GET_AUTOLOAD_INFO_OBSOLETE = 55
    GET_AUTOLOAD_INFO_LIST_OBSOLETE = 56
    GET_RECORD_LATENCY = 57
    CORK_RECORD_STREAM = 58
    FLUSH_RECORD_STREAM = 59
    PREBUF_PLAYBACK_STREAM = 60
    REQUEST = 61
    OVERFLOW = 62
    UNDERFLOW = 63
    PLAYBACK_STREAM_KILLED = 64
    RECORD_STREAM_KILLED = 65
    SUBSCRIBE_EVENT = 66
    MOVE_SINK_INPUT = 67
    MOVE_SOURCE_OUTPUT = 68
    SET_SINK_INPUT_MUTE = 69
    SUSPEND_SINK = 70
    SUSPEND_SOURCE = 71
    SET_PLAYBACK_STREAM_BUFFER_ATTR = 72
    SET_RECORD_STREAM_BUFFER_ATTR = 73
    UPDATE_PLAYBACK_STREAM_SAMPLE_RATE = 74
    UPDATE_RECORD_STREAM_SAMPLE_RATE = 75
    PLAYBACK_STREAM_SUSPENDED = 76
    RECORD_STREAM_SUSPENDED = 77
    PLAYBACK_STREAM_MOVED = 78
    RECORD_STREAM_MOVED = 79
    UPDATE_RECORD_STREAM_PROPLIST = 80
    UPDATE_PLAYBACK_STREAM_PROPLIST = 81
    UPDATE_CLIENT_PROPLIST = 82
    REMOVE_RECORD_STREAM_PROPLIST = 83
    REMOVE_PLAYBACK_STREAM_PROPLIST = 84
    REMOVE_CLIENT_PROPLIST = 85
    STARTED = 86
    EXTENSION = 87
    GET_CARD_INFO = 88
    GET_CARD_INFO_LIST = 89
    SET_CARD_PROFILE = 90
    CLIENT_EVENT = 91
    PLAYBACK_STREAM_EVENT = 92
    RECORD_STREAM_EVENT = 93
    PLAYBACK_BUFFER_ATTR_CHANGED = 94
    RECORD_BUFFER_ATTR_CHANGED = 95
    SET_SINK_PORT = 96
    SET_SOURCE_PORT = 97
    SET_SOURCE_OUTPUT_VOLUME = 98
    SET_SOURCE_OUTPUT_MUTE = 99
    SET_PORT_LATENCY_OFFSET = 100
    ENABLE_SRBCHANNEL = 101
    DISABLE_SRBCHANNEL = 102
    REGISTER_MEMFD_SHMID = 103
    SEND_OBJECT_MESSAGE = 104


class ErrorCode(enum.IntEnum):
    """The PA_ERR_* values a proxy answers with."""

    ACCESS = 1
    COMMAND = 2
    INVALID = 3
    NOENTITY = 5
    PROTOCOL = 7
    VERSION = 17
    TOOLARGE = 18


# ---------------------------------------------------------------------------------------------
# Frames and packets


@dataclass(frozen=True, slots=True)
class Frame:
    channel: int
    offset: int  # signed 64-bit seek offset of a memblock
    flags: int
    payload: bytes

    @property
    def is_control(self) -> bool:
        return self.channel == CONTROL_CHANNEL

    def encode(self) -> bytes:
        off = self.offset & 0xFFFFFFFFFFFFFFFF
        head = DESCRIPTOR.pack(
            len(self.payload), self.channel, off >> 32, off & 0xFFFFFFFF, self.flags
        )
        return head + self.payload


@dataclass(frozen=True, slots=True)
class Packet:
    """A command packet: `L command, L tag, arguments...`."""

    command: int
    tag: int
    args: tuple[Value, ...]

    def encode(self) -> bytes:
        body = b"L" + _U32.pack(self.command) + b"L" + _U32.pack(self.tag)
        return Frame(CONTROL_CHANNEL, 0, 0, body + serialize_tagstruct(self.args)).encode()


def parse_packet(frame: Frame) -> Packet:
    values = parse_tagstruct(frame.payload)
    if len(values) < 2 or not isinstance(values[0], U32) or not isinstance(values[1], U32):
        raise ProviderError("pulse: command packet does not start with command and tag")
    return Packet(values[0].value, values[1].value, values[2:])


def error_packet(tag: int, code: ErrorCode) -> bytes:
    return Packet(Command.ERROR, tag, (U32(code),)).encode()


def reply_packet(tag: int, args: Sequence[Value] = ()) -> bytes:
    return Packet(Command.REPLY, tag, tuple(args)).encode()


class FrameDecoder:
    """Splits a byte stream into frames; holds at most one frame's bytes."""

    def __init__(self, max_control: int, max_data: int) -> None:
        self._buf = bytearray()
        self._max_control = max_control
        self._max_data = max_data

    @property
    def buffered(self) -> int:
        return len(self._buf)

    def feed(self, data: bytes) -> list[Frame]:
        self._buf += data
        frames: list[Frame] = []
        buf = self._buf
        pos = 0
        while len(buf) - pos >= DESCRIPTOR_SIZE:
            length, channel, off_hi, off_lo, flags = DESCRIPTOR.unpack_from(buf, pos)
            self._check_descriptor(length, channel, off_hi | off_lo, flags)
            end = pos + DESCRIPTOR_SIZE + length
            if end > len(buf):
                break
            offset = (off_hi << 32) | off_lo
            if offset >= 1 << 63:
                offset -= 1 << 64
            frames.append(Frame(channel, offset, flags, bytes(buf[pos + DESCRIPTOR_SIZE : end])))
            pos = end
        if pos:
            del buf[:pos]
        return frames

    def _check_descriptor(self, length: int, channel: int, offset_bits: int, flags: int) -> None:
        """Refuse a frame by its descriptor alone, before any of its payload is buffered."""
        if channel == CONTROL_CHANNEL:
            if length > self._max_control:
                raise ProviderError(f"pulse: command frame of {length} bytes exceeds the cap")
            if flags or offset_bits:
                raise ProviderError("pulse: command frame with flags or offset")
        else:
            if length > self._max_data:
                raise ProviderError(f"pulse: audio frame of {length} bytes exceeds the cap")
            if flags & ~SEEK_MODE_MASK:
                raise ProviderError(f"pulse: frame flags {flags:#010x} (shared memory is off)")
            if flags & SEEK_MODE_MASK > SEEK_MODE_MAX:
                raise ProviderError(f"pulse: seek mode {flags & SEEK_MODE_MASK}")
        if length == 0:
            raise ProviderError("pulse: empty frame")


# ---------------------------------------------------------------------------------------------
# Connection state


class Phase(enum.Enum):
    AUTH = "auth"  # waiting for the client's AUTH
    AUTHORIZING = "authorizing"  # AUTH forwarded, waiting for the server's reply
    NAMING = "naming"  # waiting for the client's SET_CLIENT_NAME
    NAMING_SENT = "naming-sent"  # SET_CLIENT_NAME forwarded, waiting for the reply
    READY = "ready"


class StreamKind(enum.Enum):
    PLAYBACK = "playback"
    RECORD = "record"
    UPLOAD = "upload"


@dataclass(slots=True)
class Stream:
    kind: StreamKind
    channel: int
    index: int  # sink input / source output index; INVALID_INDEX for uploads


@dataclass(frozen=True, slots=True)
class Pending:
    """A request forwarded upstream and not yet answered."""

    command: int
    client_tag: int | None  # None: the proxy's own question, never answered to the client
    context: tuple[Value, ...] = ()  # what the proxy needs to finish handling the reply


@dataclass(slots=True)
class SessionState:
    """What one connection has negotiated and owns; mutated only by the filter."""

    phase: Phase = Phase.AUTH
    version: int = 0  # negotiated: min(client, server)
    client_version: int = 0
    client_index: int = INVALID_INDEX
    streams: dict[int, Stream] = field(default_factory=dict)  # by channel
    pending: dict[int, Pending] = field(default_factory=dict)  # by upstream tag
    next_tag: int = 0

    def client_command_allowed(self, command: int) -> bool:
        """The phase table: which command may open each phase's next step."""
        if self.phase is Phase.AUTH:
            return command == Command.AUTH
        if self.phase is Phase.NAMING:
            return command == Command.SET_CLIENT_NAME
        # AUTH and SET_CLIENT_NAME happen once; again in READY they are a violation.
        return self.phase is Phase.READY and command not in (Command.AUTH, Command.SET_CLIENT_NAME)

    def new_tag(self, pending: Pending) -> int:
        # Upstream tags wrap below NO_TAG; a wrap onto a still-pending tag is a violation.
        tag = self.next_tag
        self.next_tag = (tag + 1) % NO_TAG
        if tag in self.pending:
            raise ProviderError("pulse: too many requests in flight")
        self.pending[tag] = pending
        return tag

    def take_pending(self, tag: int) -> Pending:
        try:
            return self.pending.pop(tag)
        except KeyError:
            raise ProviderError(f"pulse: server answered unknown tag {tag}") from None

    def own_index(self, kind: StreamKind, index: int) -> bool:
        return any(s.kind is kind and s.index == index for s in self.streams.values())

    def own_channel(self, kind: StreamKind, channel: int) -> bool:
        s = self.streams.get(channel)
        return s is not None and s.kind is kind
