"""A mock host for unit-testing a Python step without building a component.

    import meridian_testing                      # first: installs the fake WIT modules
    from meridian_testing import host, invocation, host_error
    import app                                   # the step (it imports meridian_step)

    host.reset()
    host.http = lambda req: meridian_testing.Response(200, [], b"ok")
    out = json.loads(app.WitWorld().run(invocation({"url": "https://example.com"})))

Importing this module puts stand-ins for the modules componentize-py generates from
`wit/step.wit` (`wit_world.imports.*`, `componentize_py_types`) into `sys.modules`: what the
step logs, sends and runs is recorded in `host`, and its answers come from the functions a test
sets. Errors the real host returns are raised as componentize-py raises them
(`Err(<variant>)`): `host.http = host_error(http.Error_Denied("not granted"))`.
"""

import enum
import sys
import types
from dataclasses import dataclass, field
from typing import Any, Callable


class Err(Exception):
    """An error result of an import (componentize-py's `Err`)."""

    def __init__(self, value):
        super().__init__(value)
        self.value = value


def _variant(name):
    @dataclass
    class V:
        value: Any = None

    V.__name__ = V.__qualname__ = name
    return V


def _module(name, **members):
    m = types.ModuleType(name)
    m.__dict__.update(members)
    sys.modules[name] = m
    return m


# meridian:step/types
class Mode(enum.Enum):
    APPLY = 0
    PLAN = 1


class GrantKind(enum.Enum):
    HTTP = 0
    SQL = 1
    FS = 2
    SECRET = 3
    DNS = 4


@dataclass
class Invocation:
    run_id: str
    step_id: str
    attempt: int
    idempotency_key: str
    mode: Mode
    input: str


@dataclass
class GrantRequest:
    kind: GrantKind
    detail: str


@dataclass
class Manifest:
    name: str
    version: str
    description: str
    input_schema: str
    output_schema: str
    needs: list
    supports_plan: bool
    supports_compensate: bool


# meridian:step/http
@dataclass
class Request:
    method: str
    url: str
    headers: list
    body: Any
    timeout_ms: Any


@dataclass
class Response:
    status: int
    headers: list = field(default_factory=list)
    body: bytes = b""
    recorded: bool = False


# meridian:step/sql
@dataclass
class QueryResult:
    columns: list
    rows: list


class Level(enum.Enum):
    TRACE = 0
    DEBUG = 1
    INFO = 2
    WARN = 3
    ERROR = 4


class Host:
    """What the step did (`logs`, `requests`, `statements`) and how the host answers (`http`,
    `sql`, `secrets`, `kv`)."""

    def __init__(self):
        self.reset()

    def reset(self):
        self.logs = []
        self.requests = []
        self.statements = []
        self.secrets = {}
        self.kv = {}
        self.http: Callable[[Request], Response] = lambda req: Response(200)
        self.sql: Callable[..., Any] = (
            lambda connection, statement, params, kind: 0 if kind == "execute" else QueryResult([], [])
        )


host = Host()


def host_error(variant):
    """An answer function that fails the call with `variant` (e.g. `http.Error_Timeout()`)."""

    def fail(*_args):
        raise Err(variant)

    return fail


def invocation(input, mode="apply", attempt=1):
    """A `run`/`compensate` invocation for `input` (`mode="plan"` for plan mode)."""
    import json

    return Invocation(
        "test-run",
        "test-step",
        attempt,
        f"test-run/test-step/{attempt}",
        Mode.PLAN if mode == "plan" else Mode.APPLY,
        json.dumps(input),
    )


def _send(req):
    host.requests.append(req)
    return host.http(req)


def _query(connection, statement, params):
    host.statements.append((connection, statement, params, "query"))
    return host.sql(connection, statement, params, "query")


def _execute(connection, statement, params):
    host.statements.append((connection, statement, params, "execute"))
    return host.sql(connection, statement, params, "execute")


def _secret(name):
    if name not in host.secrets:
        raise Err(_variant("Error_Denied")(f"secret `{name}` is not granted"))
    return host.secrets[name]


def _log(level, message, fields):
    host.logs.append((level.name.lower(), message, dict(fields)))


_sql_members = {
    f"Value_{n}": _variant(f"Value_{n}") for n in ["Null", "Boolean", "Int", "Float", "Text", "Bytes", "Json"]
}
_sql_members.update({f"Error_{n}": _variant(f"Error_{n}") for n in ["Denied", "Db", "Timeout", "Connect", "Unsupported"]})

_module("componentize_py_types", Err=Err)
_module("wit_world")
imports = _module("wit_world.imports")
http = _module(
    "wit_world.imports.http",
    Request=Request,
    Response=Response,
    send=_send,
    **{f"Error_{n}": _variant(f"Error_{n}") for n in ["Denied", "Timeout", "Connect", "TooLarge", "Other"]},
)
sql = _module("wit_world.imports.sql", QueryResult=QueryResult, query=_query, execute=_execute, **_sql_members)
kv = _module(
    "wit_world.imports.kv",
    get=lambda key: host.kv.get(key),
    set=lambda key, value: host.kv.__setitem__(key, bytes(value)),
    delete=lambda key: host.kv.pop(key, None) is not None,
    keys=lambda prefix: sorted(k for k in host.kv if k.startswith(prefix)),
)
log = _module("wit_world.imports.log", Level=Level, log=_log)
secrets = _module("wit_world.imports.secrets", get=_secret, Error_Denied=_variant("Error_Denied"))
types_ = _module(
    "wit_world.imports.types",
    Mode=Mode,
    GrantKind=GrantKind,
    Invocation=Invocation,
    GrantRequest=GrantRequest,
    Manifest=Manifest,
    **{f"StepError_{n}": _variant(f"StepError_{n}") for n in ["Retryable", "Fatal", "InvalidInput"]},
)
for _name in ["http", "sql", "kv", "log", "secrets", "types"]:
    setattr(imports, _name, sys.modules[f"wit_world.imports.{_name}"])
