"""MailFlow appliance core: configuration, keys, database, services, scheduler, CLI.

Nothing in this package imports Flask or webui, except the composition root
(`appliance.server`), which builds the one server process.
"""

__version__ = "0.1.0"
