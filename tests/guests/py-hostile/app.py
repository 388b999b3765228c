"""A hostile Python step (built from source by the e2e tests): `mode` picks the misbehaviour."""

from meridian_step import Step, export


class Hostile(Step):
    name = "py-hostile"
    version = "0.1.0"
    description = "Misbehaves on purpose (tests)."
    input_schema = {"type": "object", "properties": {"mode": {"type": "string"}, "url": {"type": "string"}}, "required": ["mode"]}
    needs = [("http", "the URL in `url`"), ("sql", "the connection `db`")]

    def run(self, ctx, input):
        mode = input["mode"]
        if mode == "spin":
            while True:
                pass
        if mode == "alloc":
            hoard = []
            while True:
                hoard.append(bytearray(1 << 20))
        if mode == "post":
            return {"status": ctx.http.post(input["url"], {"x": 1}).status}
        if mode == "sql":
            return {"rows": ctx.sql("db").query("SELECT 1 AS one")}
        if mode == "throw":
            raise TypeError("a bug in the step")
        if mode == "async":
            async def later():
                return {"ok": True}
            return later()
        if mode == "bigint":
            return {"n": {1, 2}}
        return {"ok": True}


WitWorld = export(Hostile)
