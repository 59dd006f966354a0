"""Providers: turn granted resource requests into host resources (grants) and tear them down."""
