"""Meridian step SDK for Python (componentize-py), against sdk/wit (meridian:step@0.2.0).

    from meridian_step import Step, export, retryable, fatal, invalid_input

    class Check(Step):
        name = "check"
        version = "0.1.0"
        description = "…"
        input_schema = {"type": "object", "properties": {"url": {"type": "string"}}, "required": ["url"]}
        output_schema = {"type": "object", "properties": {"status": {"type": "integer"}}}
        needs = [("http", "the URL in `url`")]

        def run(self, ctx, input):
            return {"status": ctx.http.get(input["url"]).status}

    WitWorld = export(Check)   # the name componentize-py looks for

The same ideas as the Rust SDK: a declared JSON Schema for input and output (the engine checks
`with:` against it before anything runs), errors as values (retryable / fatal / invalid input),
helpers for http, sql, secrets, kv and log. Plan mode needs nothing from the author: the host
records what would change.
"""

import inspect
import json
import traceback

from componentize_py_types import Err
from wit_world.imports import http as _http
from wit_world.imports import kv as _kv
from wit_world.imports import log as _log
from wit_world.imports import secrets as _secrets
from wit_world.imports import sql as _sql
from wit_world.imports import types as _t


class StepError(Exception):
    """A failure the engine acts on; `kind` is retryable, fatal or invalid-input."""

    def __init__(self, kind, message):
        super().__init__(message)
        self.kind = kind
        self.message = message


def retryable(message):
    return StepError("retryable", message)


def fatal(message):
    return StepError("fatal", message)


def invalid_input(message):
    return StepError("invalid-input", message)


class Response:
    def __init__(self, r):
        self.status = r.status
        self.headers = r.headers
        self.body = r.body
        self.recorded = r.recorded

    def header(self, name):
        for k, v in self.headers:
            if k.lower() == name.lower():
                return v
        return None

    def text(self):
        return self.body.decode("utf-8", "replace")

    def json(self):
        return json.loads(self.body)


class Http:
    def send(self, method, url, headers=None, body=None, timeout_ms=None):
        headers = list(headers or [])
        if body is not None and not isinstance(body, (bytes, bytearray)):
            if not isinstance(body, str):
                body = json.dumps(body)
                if not any(k.lower() == "content-type" for k, _ in headers):
                    headers.append(("content-type", "application/json"))
            body = body.encode()
        try:
            return Response(_http.send(_http.Request(method, url, headers, body, timeout_ms)))
        except Err as e:
            v = e.value
            if isinstance(v, _http.Error_Denied):
                raise fatal(f"http {url}: not granted ({v.value}); add its origin to the step's grants.http")
            if isinstance(v, _http.Error_Timeout):
                raise retryable(f"http {url}: timed out")
            if isinstance(v, _http.Error_TooLarge):
                raise fatal(f"http {url}: body larger than {v.value} bytes")
            raise retryable(f"http {url}: {getattr(v, 'value', v)}")

    def get(self, url, **kw):
        return self.send("GET", url, **kw)

    def post(self, url, body=None, **kw):
        return self.send("POST", url, body=body, **kw)


def _to_sql(v):
    if v is None:
        return _sql.Value_Null()
    if isinstance(v, bool):
        return _sql.Value_Boolean(v)
    if isinstance(v, int):
        return _sql.Value_Int(v)
    if isinstance(v, float):
        return _sql.Value_Float(v)
    if isinstance(v, str):
        return _sql.Value_Text(v)
    if isinstance(v, (bytes, bytearray)):
        return _sql.Value_Bytes(bytes(v))
    return _sql.Value_Json(json.dumps(v))


def _from_sql(v):
    if isinstance(v, _sql.Value_Null):
        return None
    if isinstance(v, _sql.Value_Json):
        return json.loads(v.value)
    return v.value


class Sql:
    def __init__(self, connection):
        self.connection = connection

    def _error(self, e):
        v = e.value
        c = self.connection
        if isinstance(v, _sql.Error_Denied):
            return fatal(f"sql {c}: not granted ({v.value}); add it to the step's grants.sql")
        if isinstance(v, _sql.Error_Db):
            return fatal(f"sql {c}: {v.value[0]} {v.value[1]}")
        if isinstance(v, _sql.Error_Timeout):
            return retryable(f"sql {c}: timed out")
        if isinstance(v, _sql.Error_Connect):
            return retryable(f"sql {c}: {v.value}")
        return fatal(f"sql {c}: {getattr(v, 'value', v)}")

    def query(self, statement, params=()):
        """Rows as dicts keyed by column name."""
        try:
            r = _sql.query(self.connection, statement, [_to_sql(p) for p in params])
        except Err as e:
            raise self._error(e)
        return [dict(zip(r.columns, (_from_sql(v) for v in row))) for row in r.rows]

    def execute(self, statement, params=()):
        """Rows affected (0 for a statement plan mode recorded)."""
        try:
            return _sql.execute(self.connection, statement, [_to_sql(p) for p in params])
        except Err as e:
            raise self._error(e)


class Kv:
    def get(self, key):
        v = _kv.get(key)
        return None if v is None else v.decode()

    def set(self, key, value):
        data = value if isinstance(value, str) else json.dumps(value)
        try:
            _kv.set(key, data.encode())
        except Err as e:
            raise fatal(f"kv {key}: {e.value}")

    def delete(self, key):
        return _kv.delete(key)

    def keys(self, prefix=""):
        return _kv.keys(prefix)


class Log:
    def _emit(self, level, message, fields):
        pairs = [(k, v if isinstance(v, str) else json.dumps(v)) for k, v in (fields or {}).items()]
        _log.log(level, str(message), pairs)

    def trace(self, m, fields=None):
        self._emit(_log.Level.TRACE, m, fields)

    def debug(self, m, fields=None):
        self._emit(_log.Level.DEBUG, m, fields)

    def info(self, m, fields=None):
        self._emit(_log.Level.INFO, m, fields)

    def warn(self, m, fields=None):
        self._emit(_log.Level.WARN, m, fields)

    def error(self, m, fields=None):
        self._emit(_log.Level.ERROR, m, fields)


class Ctx:
    """What a step can reach: only what the workflow granted it."""

    def __init__(self, inv):
        self.invocation = inv
        self.run_id = inv.run_id
        self.step_id = inv.step_id
        self.attempt = inv.attempt
        self.idempotency_key = inv.idempotency_key
        self.is_plan = inv.mode == _t.Mode.PLAN
        self.http = Http()
        self.kv = Kv()
        self.log = Log()

    def sql(self, connection):
        return Sql(connection)

    def secret(self, name):
        try:
            return _secrets.get(name)
        except Err as e:
            raise fatal(f"secret {name}: {e.value}; add it to the step's grants.secrets")


class Step:
    """Subclass and set name, version, description, input_schema, output_schema, needs; define
    run(ctx, input) returning a JSON-serializable value, and optionally compensate(ctx, input)."""

    name = ""
    version = "0.1.0"
    description = ""
    input_schema = {"type": "object"}
    output_schema = {"type": "object"}
    needs = []

    def run(self, ctx, input):
        raise NotImplementedError

    compensate = None


_KINDS = {
    "http": _t.GrantKind.HTTP,
    "sql": _t.GrantKind.SQL,
    "fs": _t.GrantKind.FS,
    "secret": _t.GrantKind.SECRET,
    "dns": _t.GrantKind.DNS,
}


def _step_error(e):
    if isinstance(e, StepError):
        cls = {
            "retryable": _t.StepError_Retryable,
            "fatal": _t.StepError_Fatal,
            "invalid-input": _t.StepError_InvalidInput,
        }[e.kind]
        return Err(cls(e.message))
    return Err(_t.StepError_Fatal("uncaught " + "".join(traceback.format_exception(e)).strip()))


def _invoke(fn, inv):
    try:
        data = json.loads(inv.input)
    except ValueError as e:
        raise Err(_t.StepError_InvalidInput(f"input is not JSON: {e}"))
    try:
        return fn(Ctx(inv), data)
    except Exception as e:  # every failure crosses as a step-error value
        raise _step_error(e)


def _synchronous(what, out):
    # The exports are synchronous: a coroutine handed back (an `async def run`) would never run.
    if inspect.isawaitable(out):
        if inspect.iscoroutine(out):
            out.close()
        raise Err(_t.StepError_Fatal(
            f"`{what}` returned a coroutine: write it as a plain `def`, not `async def`; "
            "ctx.http, ctx.sql and ctx.kv answer synchronously"))
    return out


def export(step_class):
    """The class componentize-py instantiates for the world's exports (bind it to `WitWorld`)."""
    step = step_class()

    class WitWorld:
        def describe(self):
            return _t.Manifest(
                name=step.name,
                version=step.version,
                description=step.description,
                input_schema=json.dumps(step.input_schema),
                output_schema=json.dumps(step.output_schema),
                needs=[_t.GrantRequest(_KINDS[k], d) for k, d in step.needs],
                supports_plan=True,
                supports_compensate=step.compensate is not None,
            )

        def run(self, inv):
            out = _synchronous("run", _invoke(step.run, inv))
            try:
                return json.dumps({} if out is None else out, allow_nan=False)
            except (TypeError, ValueError) as e:
                raise Err(_t.StepError_Fatal(f"the output of `run` cannot be written as JSON: {e}"))

        def compensate(self, inv):
            if step.compensate is not None:
                _synchronous("compensate", _invoke(step.compensate, inv))

    return WitWorld
