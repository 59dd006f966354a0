"""File reading for policy data (capability catalog, manifests); parsing stays in sandbox.policy."""
