"""PostgreSQL connector: a table as the object, its columns as fields."""

from .connector import PostgresConnector

__all__ = ["PostgresConnector"]
