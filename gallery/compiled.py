"""Queries compiled once by the ORM and run many times with fresh arguments.

Building and compiling a queryset costs more CPU than running its SQL on a kept connection
(~0.3-1 ms against ~0.1 ms for an indexed read). Where a door runs the same query for every
request with different values (the visibility rule for this user, this token; the API key
with this prefix), `CompiledQuery` has the ORM write the SQL once from the same querysets the
rest of the code uses, so the rule stays written in one place (Media.objects.visible_to), and
checks that only the arguments change between two compilations. Nothing read is cached: the
rows are read afresh each time.
"""

from __future__ import annotations

import re
import sqlite3
import uuid
from collections.abc import Callable
from datetime import datetime

from django.db import DEFAULT_DB_ALIAS, connections
from django.db.backends.sqlite3.base import FORMAT_QMARK_REGEX

from gallery.models import User

_FORMAT_PLACEHOLDER = re.compile(r"%%|%s")


class CompiledQuery:
    """SQL compiled once by the ORM from `build(*arguments)`, run with fresh arguments.

    `build` is called twice with different sample arguments: the SQL must be the same and
    every parameter either equal in both (a constant) or one of the arguments as the ORM
    prepares it (as is, str, hex of a UUID, a datetime adapted for the database). Anything
    else (a value computed at build time, a rule reading more than the arguments) raises.
    """

    def __init__(self, build: Callable, samples: tuple[tuple, tuple], using: str = DEFAULT_DB_ALIAS,
                 convert: bool = False) -> None:
        connection = connections[using]
        compilers = [build(*args).query.get_compiler(using) for args in samples]
        compiled = [compiler.as_sql() for compiler in compilers]
        # The compiler of the first sample: its select and converters describe the rows.
        self.compiler = compilers[0]
        # With `convert`, converted() gives the values as the ORM would (a UUID, an aware
        # datetime, bytes), through the field converters of the compiled select.
        self._converters = compilers[0].get_converters(
            [column for column, _, _ in compilers[0].select[:compilers[0].col_count]]) if convert else {}
        (sql, first), (sql_b, second) = compiled
        if sql != sql_b or len(first) != len(second):
            raise ValueError("the query's SQL depends on its arguments")
        preps = (lambda v: v, str, lambda v: v.hex if isinstance(v, uuid.UUID) else None,
                 lambda v: connection.ops.adapt_datetimefield_value(v) if isinstance(v, datetime) else None)
        self.sql, self.constants, self.slots = sql, list(first), []
        self.sql_qmark = FORMAT_QMARK_REGEX.sub("?", sql).replace("%%", "%")
        for index, (a, b) in enumerate(zip(first, second)):
            if a == b:
                continue
            slot = next(((position, prep) for position in range(len(samples[0])) for prep in preps
                         if prep(samples[0][position]) == a and prep(samples[1][position]) == b), None)
            if slot is None:
                raise ValueError(f"parameter {index} of the query is not one of its arguments")
            self.slots.append((index, *slot))

    def params(self, *arguments) -> list:
        params = self.constants.copy()
        for index, position, prep in self.slots:
            params[index] = prep(arguments[position])
        return params

    def rows(self, cursor, *arguments) -> list[tuple]:
        cursor.execute(self.sql, self.params(*arguments))
        return cursor.fetchall()

    def converted(self, rows: list[tuple]) -> list[tuple]:
        if not self._converters:
            return rows
        return [tuple(row) for row in self.compiler.apply_converters(rows, self._converters)]

    def inlined(self, arguments: tuple) -> tuple[str, list]:
        """The SQL with its arguments replaced, to nest it in another query: an argument that is a
        str is an SQL expression put in its place (a column of the outer query), any other stays
        a parameter. Returns the SQL and its parameters in order: those, and the constants."""
        by_index = {index: position for index, position, _ in self.slots}
        params, count = [], 0

        def replace(match: re.Match) -> str:
            nonlocal count
            if match.group() == "%%":
                return "%%"
            index, count = count, count + 1
            value = arguments[by_index[index]] if index in by_index else self.constants[index]
            if index in by_index and isinstance(value, str):
                return value
            params.append(value)
            return "%s"

        return _FORMAT_PLACEHOLDER.sub(replace, self.sql), params

    def rows_here(self, connection: sqlite3.Connection, *arguments) -> list[tuple]:
        """The same on a plain sqlite3 connection (qmark placeholders, as Django's SQLite cursor
        converts them)."""
        return connection.execute(self.sql_qmark, self.params(*arguments)).fetchall()


def sample_user(pk: uuid.UUID) -> User:
    """A user with only its id, to compile the visibility rule for any user: every other field
    deferred, so a rule that reads more of the user loads it, which fails for this id, and the
    compilation fails rather than compile the wrong rule."""
    return User.from_db(DEFAULT_DB_ALIAS, ["id"], [pk])
