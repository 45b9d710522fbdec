"""Give leads a position inside their pipeline column (drag and drop on the board).

A Python migration: use one when the SQL needs parameters or logic. ``m.execute``
and ``m.scalar`` take SQLAlchemy ``text()`` SQL with named parameters
(``:gap``) and run in this migration's transaction (no ``transaction = False``).
Never use ``db.session`` or the models here: the session runs on another
connection, outside this transaction, and the models describe the final schema,
not the schema at this step.
"""

#: Distance between neighbouring cards, so a card dropped between two others gets
#: a free number without renumbering the column. example_app/views.py uses it too.
GAP = 1024


def upgrade(m):
    m.execute("ALTER TABLE leads ADD COLUMN order_index integer")

    # one-time backfill: number the leads that exist today within their status,
    # oldest first, GAP apart. It runs once, with the column's creation, in the
    # same transaction; leads created later get their order_index from the app.
    m.execute(
        """
        UPDATE leads
        SET order_index = ranked.n * :gap
        FROM (
            SELECT id, row_number() OVER (PARTITION BY status_id ORDER BY created_at, id) AS n
            FROM leads
        ) AS ranked
        WHERE leads.id = ranked.id AND leads.order_index IS NULL
        """,
        {"gap": GAP},
    )

    # Check the backfill before committing: an exception rolls all of this back.
    off_grid = m.scalar(
        "SELECT count(*) FROM leads WHERE order_index IS NULL OR order_index % :gap <> 0",
        {"gap": GAP},
    )
    if off_grid:
        raise RuntimeError(f"order_index backfill missed {off_grid} lead(s)")

    # No SET NOT NULL: during a rolling deploy the previous release keeps
    # inserting leads without order_index; the app sorts NULLs last.


def downgrade(m):
    m.execute("ALTER TABLE leads DROP COLUMN IF EXISTS order_index")
