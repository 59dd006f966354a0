"""Providers: granted requests -> host resources (grants), torn down; they decide no policy."""
