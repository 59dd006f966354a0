"""PulseAudio per-app filtering proxy: sans-IO codec, pure filter, asyncio shell."""
