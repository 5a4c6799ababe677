"""Domain services: the one place business rules live, shared by the web UI, the API and the CLI."""
