"""Storage: the encrypted database, migrations, and one repository module per entity.

SQL lives only here, always parameterised."""

from .database import Database, DatabaseKeyError

__all__ = ["Database", "DatabaseKeyError"]
