"""Command implementations: each turns a validated Config into result files (the CLI stays thin)."""
