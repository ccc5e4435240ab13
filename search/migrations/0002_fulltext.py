"""Full-text indexes that Django's models cannot state, for the database in use.

PostgreSQL: a generated tsvector of `words` with a GIN index, and a trigram GIN index on the
folded file name (pg_trgm). SQLite: two external-content FTS5 tables over search_searchentry
(words with unicode61, the name with the trigram tokenizer) kept in step by triggers.
"""

from django.db import migrations

POSTGRESQL_SQL = [
    "CREATE EXTENSION IF NOT EXISTS pg_trgm",
    "ALTER TABLE search_searchentry ADD COLUMN document tsvector "
    "GENERATED ALWAYS AS (to_tsvector('simple'::regconfig, words)) STORED",
    "CREATE INDEX search_entry_document ON search_searchentry USING gin (document)",
    "CREATE INDEX search_entry_name_trgm ON search_searchentry USING gin (name gin_trgm_ops)",
]
POSTGRESQL_REVERSE = [
    "DROP INDEX IF EXISTS search_entry_name_trgm",
    "DROP INDEX IF EXISTS search_entry_document",
    "ALTER TABLE search_searchentry DROP COLUMN IF EXISTS document",
]

SQLITE_SQL = [
    "CREATE VIRTUAL TABLE search_words_fts USING fts5(words, content='search_searchentry', "
    "content_rowid='id', tokenize='unicode61 remove_diacritics 2')",
    "CREATE VIRTUAL TABLE search_name_fts USING fts5(name, content='search_searchentry', "
    "content_rowid='id', tokenize='trigram')",
    "CREATE TRIGGER search_entry_ai AFTER INSERT ON search_searchentry BEGIN "
    "INSERT INTO search_words_fts(rowid, words) VALUES (new.id, new.words); "
    "INSERT INTO search_name_fts(rowid, name) VALUES (new.id, new.name); END",
    "CREATE TRIGGER search_entry_ad AFTER DELETE ON search_searchentry BEGIN "
    "INSERT INTO search_words_fts(search_words_fts, rowid, words) VALUES ('delete', old.id, old.words); "
    "INSERT INTO search_name_fts(search_name_fts, rowid, name) VALUES ('delete', old.id, old.name); END",
    "CREATE TRIGGER search_entry_au AFTER UPDATE ON search_searchentry BEGIN "
    "INSERT INTO search_words_fts(search_words_fts, rowid, words) VALUES ('delete', old.id, old.words); "
    "INSERT INTO search_name_fts(search_name_fts, rowid, name) VALUES ('delete', old.id, old.name); "
    "INSERT INTO search_words_fts(rowid, words) VALUES (new.id, new.words); "
    "INSERT INTO search_name_fts(rowid, name) VALUES (new.id, new.name); END",
]
SQLITE_REVERSE = [
    "DROP TRIGGER IF EXISTS search_entry_au",
    "DROP TRIGGER IF EXISTS search_entry_ad",
    "DROP TRIGGER IF EXISTS search_entry_ai",
    "DROP TABLE IF EXISTS search_name_fts",
    "DROP TABLE IF EXISTS search_words_fts",
]


def _run(statements: dict[str, list[str]]):
    def run(apps, schema_editor):
        for sql in statements.get(schema_editor.connection.vendor, []):
            schema_editor.execute(sql)

    return run


class Migration(migrations.Migration):
    dependencies = [("search", "0001_index")]

    operations = [
        migrations.RunPython(_run({"postgresql": POSTGRESQL_SQL, "sqlite": SQLITE_SQL}),
                             _run({"postgresql": POSTGRESQL_REVERSE, "sqlite": SQLITE_REVERSE})),
    ]
