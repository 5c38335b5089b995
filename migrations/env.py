"""Alembic environment: migrates the database at WAREHOUSE_URL (or ``-x url=...``)."""

from alembic import context
from sqlalchemy import create_engine, pool

from resources.schema import metadata
from resources.settings import normalize_postgres_url, warehouse_url

config = context.config
if config.config_file_name is not None:
    from logging.config import fileConfig

    fileConfig(config.config_file_name, disable_existing_loggers=False)


def _url() -> str:
    return normalize_postgres_url(context.get_x_argument(as_dictionary=True).get("url") or warehouse_url())


def run_migrations_offline() -> None:
    context.configure(url=_url(), target_metadata=metadata, literal_binds=True, render_as_batch=True)
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    engine = create_engine(_url(), poolclass=pool.NullPool)
    with engine.connect() as connection:
        # Batch mode lets later ALTERs work on SQLite too.
        context.configure(connection=connection, target_metadata=metadata, render_as_batch=True)
        with context.begin_transaction():
            context.run_migrations()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
