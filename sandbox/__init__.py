"""sandbox: ship Linux desktop apps as Docker images and run them sandboxed; public API only."""
