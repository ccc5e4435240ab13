"""PostgreSQL: the words of each owner's documents (the lexemes of their tsvectors), so the
last word of a query, a prefix, becomes the few whole words it stands for: an exact GIN
lookup reads a posting list, a prefix (`march:*`) collects every match into a bitmap first
and costs about twice as much (search.db._prefix_words). Filled from the documents already
indexed; words are never removed (one that no document has any more matches nothing).
SQLite needs nothing: FTS5 prefixes are cheap.
"""

from django.db import migrations

POSTGRESQL_SQL = [
    (
        'CREATE TABLE search_word (owner_id uuid NOT NULL, word text COLLATE "C" NOT NULL, '
        "PRIMARY KEY (owner_id, word))"
    ),
    (
        "INSERT INTO search_word (owner_id, word) SELECT DISTINCT owner_id, unnest(tsvector_to_array(document)) "
        "FROM search_searchentry ON CONFLICT DO NOTHING"
    ),
]
POSTGRESQL_REVERSE = ["DROP TABLE IF EXISTS search_word"]


def _run(statements: list[str]):
    def run(apps, schema_editor):
        if schema_editor.connection.vendor == "postgresql":
            for sql in statements:
                schema_editor.execute(sql)

    return run


class Migration(migrations.Migration):
    dependencies = (("search", "0002_fulltext"),)

    operations = (migrations.RunPython(_run(POSTGRESQL_SQL), _run(POSTGRESQL_REVERSE)),)
