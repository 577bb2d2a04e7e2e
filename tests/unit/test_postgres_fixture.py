import psycopg
import pytest


@pytest.mark.integration
def test_postgres_fixture_gives_an_empty_real_database(postgres_dsn: str) -> None:
    with psycopg.connect(postgres_dsn) as conn:
        version = conn.execute("show server_version").fetchone()
        tables = conn.execute(
            "select count(*) from information_schema.tables where table_schema = 'public'"
        ).fetchone()
    assert version is not None and int(version[0].split(".")[0]) >= 13
    assert tables == (0,)
