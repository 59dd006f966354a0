"""Smoke tests of the desktop guest itself; they run INSIDE the guest (integration/vm.sh run)."""
