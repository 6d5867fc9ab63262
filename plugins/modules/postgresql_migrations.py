#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: aiplatform.observability maintainers
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
module: postgresql_migrations
short_description: Apply numbered SQL migrations to a PostgreSQL database exactly once
version_added: "0.1.0"
description:
  - Applies a list of numbered SQL migrations in the order of their numbers.
  - Each migration runs in its own transaction together with the row that records it in a
    migrations table (name, checksum, applied_at, applied_by, execution_ms), so a migration is
    either applied and recorded, or neither.
  - A migration that fails is rolled back; the module stops and reports the migration's name and
    the PostgreSQL error. Migrations applied earlier in the same run stay applied.
  - A recorded migration whose SQL changed since it was applied (checksum mismatch) is an error,
    as is a new migration numbered below one that is already applied.
  - Runs are serialised with a PostgreSQL advisory lock, so two concurrent runs cannot apply the
    same migration twice.
  - The SQL text is passed in, not read from the target, so a role can read its migration files on
    the controller (for example with C(lookup('ansible.builtin.file', ...))).
author:
  - aiplatform.observability maintainers (@aiplatform)
options:
  migrations:
    description:
      - The migrations. Each name starts with its number and an underscore (C(0001_initial.sql)).
      - They are applied in ascending order of that number whatever the order of the list;
        two migrations with the same number are an error.
      - The checksum is the SHA-256 of the SQL with line endings normalised to LF and leading and
        trailing white space removed, so reading a file with or without its final newline gives
        the same checksum.
      - The SQL must not contain transaction control (C(BEGIN), C(COMMIT)); the module wraps each
        migration in one transaction. Statements that cannot run inside a transaction block (for
        example C(CREATE INDEX CONCURRENTLY)) fail with PostgreSQL's error.
    type: list
    elements: dict
    required: true
    suboptions:
      name:
        description: Unique name of the migration, usually the file name.
        type: str
        required: true
      sql:
        description: The SQL statements of the migration.
        type: str
        required: true
  db:
    description: Database to migrate.
    type: str
    required: true
    aliases: [login_db]
  login_user:
    description: Role to connect as. With a unix socket and C(peer) authentication this is the OS user.
    type: str
    default: postgres
  login_password:
    description: Password of O(login_user); not needed for C(peer) authentication.
    type: str
    default: ''
  login_host:
    description: Host to connect to. Empty means the unix socket in O(login_unix_socket).
    type: str
    default: ''
  login_unix_socket:
    description: Directory of the unix socket. Empty means libpq's default.
    type: str
    default: ''
  port:
    description: Port of the server (also part of the unix socket's file name).
    type: int
    default: 5432
    aliases: [login_port]
  session_role:
    description:
      - Role to C(SET ROLE) to after connecting, before anything is created, so that this role owns
        the migrations table and every object the migrations create.
      - O(login_user) must be a member of it (a superuser always is).
    type: str
  search_path:
    description: C(search_path) set before each migration, for unqualified names in the SQL.
    type: str
  schema:
    description: Schema of the migrations table. It is created if missing.
    type: str
    default: public
  table:
    description: Name of the migrations table. It is created if missing.
    type: str
    default: schema_migrations
  lock_timeout:
    description:
      - PostgreSQL C(lock_timeout) for the run, such as C(30s) or C(1min). It bounds the wait for
        the advisory lock and for the locks that the migrations take on busy tables; a migration
        that waits longer fails and is rolled back instead of blocking the application.
      - C(0) waits forever.
    type: str
    default: 1min
  connect_timeout:
    description: Seconds to wait for the connection.
    type: int
    default: 10
attributes:
  check_mode:
    description: Can run in check_mode and return changed status prediction without modifying target.
    support: full
    details: Connects and reads the migrations table; lists the pending migrations without applying them.
  diff_mode:
    description: Will return details on what has changed (or possibly needs changing in check_mode), when in diff mode.
    support: full
    details: The diff lists recorded migrations before and after, so the pending ones show as added lines.
requirements:
  - psycopg2 (python3-psycopg2) on the target
notes:
  - The migrations table is never dropped or truncated by this module; it only inserts rows.
"""

EXAMPLES = r"""
- name: Read the migration files on the controller
  ansible.builtin.set_fact:
    __migrations: "{{ __migrations | default([]) + [{'name': item | basename, 'sql': lookup('ansible.builtin.file', item)}] }}"
  loop: "{{ query('ansible.builtin.fileglob', role_path ~ '/files/migrations/*.sql') | sort }}"
  loop_control:
    label: "{{ item | basename }}"

- name: Apply them as the schema owner, over the unix socket with peer authentication
  aiplatform.observability.postgresql_migrations:
    db: ai_platform
    session_role: ai_user
    search_path: platform
    login_unix_socket: /var/run/postgresql
    migrations: "{{ __migrations }}"
  become: true
  become_user: postgres
  register: __applied

- name: Apply one inline migration with a password login over TCP
  aiplatform.observability.postgresql_migrations:
    db: ai_platform
    login_user: ai_user
    login_password: "{{ vault_ai_user_password }}"
    login_host: db.example.com
    migrations:
      - name: 0100_site_view.sql
        sql: CREATE VIEW platform.active_lora AS SELECT * FROM platform.lora_versions WHERE is_active;
"""

RETURN = r"""
applied:
  description: Migrations applied by this run, in order.
  returned: always
  type: list
  elements: str
  sample: [0002_grants.sql]
pending:
  description: Migrations not applied yet after this run; in check mode, those a real run would apply.
  returned: always
  type: list
  elements: str
  sample: []
already_applied:
  description: Migrations that were recorded before this run.
  returned: always
  type: list
  elements: str
  sample: [0001_initial_schema.sql]
unknown:
  description: Recorded migrations that are not in O(migrations) (a file was removed); reported with a warning.
  returned: always
  type: list
  elements: str
  sample: []
failed_migration:
  description: Name of the migration that failed and was rolled back.
  returned: failure
  type: str
  sample: 0003_broken.sql
"""

import hashlib
import re
import time
import traceback

from ansible.module_utils.basic import AnsibleModule, missing_required_lib

PSYCOPG2_IMPORT_ERROR = None
try:
    import psycopg2
    from psycopg2 import sql as pgsql
except ImportError:
    psycopg2 = None
    pgsql = None
    PSYCOPG2_IMPORT_ERROR = traceback.format_exc()

NAME_RE = re.compile(r"^([0-9]+)_[A-Za-z0-9_.-]+$")
IDENT_RE = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")
# Key of the advisory lock that serialises runs (any constant shared by all runs).
LOCK_KEY = 7317410923401


class MigrationError(Exception):
    """A problem with the migrations themselves; carries the result fields to return."""

    def __init__(self, msg, **result):
        super(MigrationError, self).__init__(msg)
        self.msg = msg
        self.result = result


def checksum(sql_text):
    """SHA-256 of the SQL, independent of line endings and surrounding white space."""
    normalised = sql_text.replace("\r\n", "\n").strip()
    return hashlib.sha256(normalised.encode("utf-8")).hexdigest()


def order_migrations(migrations):
    """Return the migrations sorted by number; raise MigrationError on bad or duplicate names."""
    seen = {}
    ordered = []
    for item in migrations:
        name = item["name"]
        match = NAME_RE.match(name)
        if not match:
            raise MigrationError(
                "Migration name %r must start with its number and an underscore, like 0001_initial.sql" % name)
        number = int(match.group(1))
        if number in seen:
            raise MigrationError("Migrations %s and %s have the same number %d" % (seen[number], name, number))
        seen[number] = name
        ordered.append((number, name, item["sql"]))
    ordered.sort()
    return ordered


def plan(ordered, recorded):
    """Compare the migrations with the recorded ones.

    ordered: [(number, name, sql)]; recorded: {name: checksum}.
    Returns (already_applied, pending, unknown); raises MigrationError on a checksum mismatch
    or on a pending migration numbered below an applied one.
    """
    known = set(name for _number, name, _sql in ordered)
    mismatched = [name for _number, name, sql in ordered
                  if name in recorded and recorded[name] != checksum(sql)]
    if mismatched:
        raise MigrationError(
            "Applied migration(s) changed since they were applied (checksum mismatch): %s. "
            "An applied migration must never be edited: restore its file and put the change in a new, "
            "higher-numbered migration." % ", ".join(mismatched))
    already = [name for _number, name, _sql in ordered if name in recorded]
    pending = [(number, name, sql) for number, name, sql in ordered if name not in recorded]
    unknown = sorted(name for name in recorded if name not in known)
    applied_numbers = [number for number, name, _sql in ordered if name in recorded]
    for name in recorded:
        match = NAME_RE.match(name)
        if match:
            applied_numbers.append(int(match.group(1)))
    if pending and applied_numbers and pending[0][0] < max(applied_numbers):
        latest = max(applied_numbers)
        raise MigrationError(
            "Migration %s is pending but a higher-numbered migration (%d) is already applied; "
            "number new migrations after the latest applied one." % (pending[0][1], latest))
    return already, pending, unknown


def pg_error_text(err):
    """One readable line from a psycopg2 error: severity, message, detail, hint, SQLSTATE."""
    diag = getattr(err, "diag", None)
    primary = getattr(diag, "message_primary", None) if diag is not None else None
    if not primary:
        return str(err).strip()
    parts = ["%s: %s" % (getattr(diag, "severity", None) or "ERROR", primary)]
    if getattr(diag, "message_detail", None):
        parts.append("DETAIL: %s" % diag.message_detail)
    if getattr(diag, "message_hint", None):
        parts.append("HINT: %s" % diag.message_hint)
    if getattr(diag, "statement_position", None):
        parts.append("at character %s" % diag.statement_position)
    if getattr(err, "pgcode", None):
        parts.append("(SQLSTATE %s)" % err.pgcode)
    return " ".join(parts)


class Migrator(object):
    """Runs against one open psycopg2 connection."""

    def __init__(self, conn, schema, table, session_role=None, search_path=None):
        self.conn = conn
        self.session_role = session_role
        self.search_path = search_path
        self.schema = schema
        self.table = table
        self.table_ident = pgsql.SQL("{}.{}").format(pgsql.Identifier(schema), pgsql.Identifier(table))

    def _execute(self, query, params=None):
        cur = self.conn.cursor()
        try:
            cur.execute(query, params)
            return cur.fetchall() if cur.description else None
        finally:
            cur.close()

    def prepare_session(self, lock_timeout):
        self.conn.autocommit = True
        self._execute("SET lock_timeout = %s", (lock_timeout,))
        if self.session_role:
            self._execute(pgsql.SQL("SET ROLE {}").format(pgsql.Identifier(self.session_role)))

    def lock(self):
        self._execute("SELECT pg_advisory_lock(%s)", (LOCK_KEY,))

    def unlock(self):
        self._execute("SELECT pg_advisory_unlock(%s)", (LOCK_KEY,))

    def table_exists(self):
        rows = self._execute("SELECT to_regclass(%s) IS NOT NULL",
                             (pgsql.Composed([self.table_ident]).as_string(self.conn),))
        return bool(rows[0][0])

    def create_table(self):
        schema_exists = self._execute("SELECT 1 FROM pg_namespace WHERE nspname = %s", (self.schema,))
        if not schema_exists:
            self._execute(pgsql.SQL("CREATE SCHEMA {}").format(pgsql.Identifier(self.schema)))
        self._execute(pgsql.SQL(
            "CREATE TABLE IF NOT EXISTS {} ("
            " name text PRIMARY KEY,"
            " checksum text NOT NULL,"
            " applied_at timestamptz NOT NULL DEFAULT now(),"
            " applied_by text NOT NULL DEFAULT current_user,"
            " execution_ms integer NOT NULL)").format(self.table_ident))

    def recorded(self):
        rows = self._execute(pgsql.SQL("SELECT name, checksum FROM {} ORDER BY name").format(self.table_ident))
        return dict((name, csum) for name, csum in rows)

    def apply(self, name, sql_text):
        """Apply one migration and its record in one transaction; roll back on any error."""
        self.conn.autocommit = True
        if self.session_role:
            # A migration may have changed the role; every migration starts as the owner again.
            self._execute(pgsql.SQL("SET ROLE {}").format(pgsql.Identifier(self.session_role)))
        self.conn.autocommit = False
        started = time.time()
        try:
            if self.search_path:
                self._execute("SELECT set_config('search_path', %s, true)", (self.search_path,))
            # No parameters: the SQL is sent as-is (a literal % needs no escaping).
            self._execute(sql_text)
            if self.conn.get_transaction_status() != psycopg2.extensions.TRANSACTION_STATUS_INTRANS:
                raise MigrationError("Migration %s ended the transaction it runs in (COMMIT or ROLLBACK in its SQL); "
                                     "remove the transaction control and check what it left applied" % name)
            elapsed_ms = int((time.time() - started) * 1000)
            self._execute(pgsql.SQL("INSERT INTO {} (name, checksum, execution_ms) VALUES (%s, %s, %s)")
                          .format(self.table_ident), (name, checksum(sql_text), elapsed_ms))
            self.conn.commit()
        except Exception:
            self.conn.rollback()
            raise
        finally:
            self.conn.autocommit = True


def connect(params):
    kwargs = {
        "dbname": params["db"],
        "user": params["login_user"],
        "port": params["port"],
        "connect_timeout": params["connect_timeout"],
        "application_name": "ansible postgresql_migrations",
    }
    if params["login_password"]:
        kwargs["password"] = params["login_password"]
    host = params["login_host"] or params["login_unix_socket"]
    if host:
        kwargs["host"] = host
    return psycopg2.connect(**kwargs)


def run(module):
    params = module.params
    for option in ("schema", "table"):
        if not IDENT_RE.match(params[option]):
            module.fail_json(msg="%s=%r is not a plain lower-case SQL identifier" % (option, params[option]))
    result = dict(changed=False, applied=[], pending=[], already_applied=[], unknown=[])
    try:
        ordered = order_migrations(params["migrations"])
    except MigrationError as err:
        module.fail_json(msg=err.msg, **result)

    try:
        conn = connect(params)
    except psycopg2.Error as err:
        module.fail_json(msg="Cannot connect to database %s: %s" % (params["db"], pg_error_text(err)), **result)

    migrator = Migrator(conn, params["schema"], params["table"], params["session_role"], params["search_path"])
    current = None
    try:
        try:
            migrator.prepare_session(params["lock_timeout"])
        except psycopg2.Error as err:
            module.fail_json(msg="Cannot prepare the session (lock_timeout, SET ROLE %s): %s"
                             % (params["session_role"], pg_error_text(err)), **result)
        try:
            if not module.check_mode:
                migrator.lock()
        except psycopg2.Error as err:
            module.fail_json(msg="Cannot take the migration lock (another run holds it?): %s"
                             % pg_error_text(err), **result)
        try:
            if not module.check_mode:
                migrator.create_table()
            recorded = migrator.recorded() if migrator.table_exists() else {}
        except psycopg2.Error as err:
            module.fail_json(msg="Cannot read or create the migrations table %s.%s: %s"
                             % (params["schema"], params["table"], pg_error_text(err)), **result)
        try:
            already, pending, unknown = plan(ordered, recorded)
        except MigrationError as err:
            module.fail_json(msg=err.msg, **result)
        result.update(already_applied=already, unknown=unknown, pending=[name for _n, name, _s in pending])
        for name in unknown:
            module.warn("Migration %s is recorded in %s.%s but was not passed in (its file was removed?)"
                        % (name, params["schema"], params["table"]))
        if module._diff:
            result["diff"] = dict(
                before_header="%s.%s" % (params["schema"], params["table"]),
                after_header="%s.%s" % (params["schema"], params["table"]),
                before="".join("%s\n" % name for name in sorted(recorded)),
                after="".join("%s\n" % name for name in sorted(list(recorded) + result["pending"])))
        result["changed"] = bool(pending)
        if module.check_mode:
            module.exit_json(**result)

        for _number, name, sql_text in pending:
            current = name
            migrator.apply(name, sql_text)
            result["applied"].append(name)
            result["pending"].remove(name)
        current = None
        migrator.unlock()
    except MigrationError as err:
        result["changed"] = True
        module.fail_json(msg=err.msg, failed_migration=current, **result)
    except psycopg2.Error as err:
        result["changed"] = bool(result["applied"])
        if current:
            module.fail_json(msg="Migration %s failed and was rolled back: %s" % (current, pg_error_text(err)),
                             failed_migration=current, **result)
        module.fail_json(msg="PostgreSQL error: %s" % pg_error_text(err), **result)
    finally:
        conn.close()
    module.exit_json(**result)


def main():
    module = AnsibleModule(
        argument_spec=dict(
            migrations=dict(type="list", elements="dict", required=True, options=dict(
                name=dict(type="str", required=True),
                sql=dict(type="str", required=True),
            )),
            db=dict(type="str", required=True, aliases=["login_db"]),
            login_user=dict(type="str", default="postgres"),
            login_password=dict(type="str", default="", no_log=True),
            login_host=dict(type="str", default=""),
            login_unix_socket=dict(type="str", default=""),
            port=dict(type="int", default=5432, aliases=["login_port"]),
            session_role=dict(type="str"),
            search_path=dict(type="str"),
            schema=dict(type="str", default="public"),
            table=dict(type="str", default="schema_migrations"),
            lock_timeout=dict(type="str", default="1min"),
            connect_timeout=dict(type="int", default=10),
        ),
        supports_check_mode=True,
    )
    if psycopg2 is None:
        module.fail_json(msg=missing_required_lib("psycopg2"), exception=PSYCOPG2_IMPORT_ERROR)
    run(module)


if __name__ == "__main__":
    main()
