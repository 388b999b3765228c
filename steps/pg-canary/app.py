"""pg-canary: writes a canary row through the step's sql grant and checks it reads back — on the
same connection and, optionally, on another (a standby: has replication carried it over?).
Safe to retry: the row's id is the step's idempotency key. In plan mode PostgreSQL refuses the
writes (the host runs them READ ONLY) and the host records them as planned changes; nothing
here has to know. A Meridian built-in step written in Python."""

import re

from meridian_step import Step, export, fatal, invalid_input

IDENT = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")


class PgCanary(Step):
    name = "pg-canary"
    version = "0.1.0"
    description = "Writes a canary row and checks it reads back (and, optionally, on a standby)."
    input_schema = {
        "type": "object",
        "additionalProperties": False,
        "required": ["connection"],
        "properties": {
            "connection": {"type": "string", "description": "The connection to write to (grant it under grants.sql)."},
            "verify_on": {"type": "string", "description": "Another connection (a standby) that must see the row."},
            "table": {"type": "string", "default": "meridian_canary", "description": "Table for canary rows (created if missing)."},
            "label": {"type": "string", "default": "", "description": "Stored with the row, e.g. the region."},
        },
    }
    output_schema = {
        "type": "object",
        "required": ["canary_id", "written", "verified"],
        "properties": {
            "canary_id": {"type": "string"},
            "written": {"type": "boolean", "description": "False in plan mode: the write was recorded, not made."},
            "verified": {"type": "boolean", "description": "The row read back on `connection`."},
            "verify_on_found": {"type": ["boolean", "null"], "description": "The row is visible on `verify_on`."},
            "written_at": {"type": ["string", "null"]},
        },
    }
    needs = [("sql", "the connections in `connection` and `verify_on`")]

    def run(self, ctx, input):
        table = input.get("table", "meridian_canary")
        if not IDENT.match(table):
            raise invalid_input(f"table `{table}`: use lower-case letters, digits and _")
        db = ctx.sql(input["connection"])
        canary = ctx.idempotency_key
        db.execute(
            f"CREATE TABLE IF NOT EXISTS {table} (id text PRIMARY KEY, label text NOT NULL,"
            " run_id text NOT NULL, written_at timestamptz NOT NULL DEFAULT now())"
        )
        try:
            affected = db.execute(
                f"INSERT INTO {table} (id, label, run_id) VALUES ($1, $2, $3)"
                " ON CONFLICT (id) DO UPDATE SET written_at = now()",
                [canary, input.get("label", ""), ctx.run_id],
            )
        except Exception as e:
            # Plan mode on a database without the table: the CREATE above was recorded, not
            # made, so PostgreSQL cannot even parse the INSERT. It would run after the CREATE.
            if not (ctx.is_plan and "42P01" in str(e)):
                raise
            affected = 0
        written = affected > 0
        ctx.log.info("canary written" if written else "canary write recorded (plan)", {"id": canary, "table": table})
        rows = self._read(db, table, canary)
        if written and not rows:
            raise fatal(f"canary {canary} was written to {input['connection']} but does not read back")
        out = {
            "canary_id": canary,
            "written": written,
            "verified": bool(rows),
            "verify_on_found": None,
            "written_at": rows[0]["written_at"] if rows else None,
        }
        if "verify_on" in input:
            out["verify_on_found"] = bool(self._read(ctx.sql(input["verify_on"]), table, canary))
        return out

    @staticmethod
    def _read(db, table, canary):
        try:
            return db.query(f"SELECT written_at::text AS written_at FROM {table} WHERE id = $1", [canary])
        except Exception as e:  # the table may not exist yet (plan mode on a fresh database)
            if "42P01" in str(e):
                return []
            raise


WitWorld = export(PgCanary)
