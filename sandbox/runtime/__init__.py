"""Runtime: compile a plan into a container spec, drive the engine, own the session lifecycle."""
