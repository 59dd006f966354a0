"""Integration tests against real components started by integration/harness.sh."""
