"""What the CLI commands do, as plain Python functions (one module per domain)."""
