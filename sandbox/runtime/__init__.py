"""Runtime: plan -> container spec, engine, session lifecycle; it grants nothing the plan lacks."""
