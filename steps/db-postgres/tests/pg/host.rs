//! A host over real PostgreSQL: the SDK's `MockHost` whose `sql` capability stands in for the
//! Meridian sandbox's: named connections only, one cached session per connection, and plan mode
//! as the sandbox brief describes it (`query` inside `BEGIN READ ONLY`; `execute` inside a
//! read-only transaction, a refusal recorded as a planned change and answered with 0 rows).
//!
//! Column types map like the sandbox's: bool, int2/4/8, oid, float4/8, text-like; anything else
//! is `unsupported`, so the step must cast (it does: LSNs `::text`, intervals to seconds).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::Mutex;

use meridian_sdk::sql::{Rows, SqlError, Value};
use meridian_sdk::testing::MockHost;
use meridian_sdk::{Ctx, Invocation, Mode};
use tokio_postgres::types::{ToSql, Type};

/// The step's host: `sql` answered by [`PgSql`], the rest by the `MockHost`.
pub(crate) struct PgHost {
    sql: Arc<PgSql>,
    host: Arc<MockHost>,
}

impl PgHost {
    /// Apply mode over the named connections.
    pub(crate) fn new(dsns: &[(&str, String)]) -> Self {
        Self::with_plan(dsns, false)
    }

    /// Plan mode over the named connections.
    pub(crate) fn planning(dsns: &[(&str, String)]) -> Self {
        Self::with_plan(dsns, true)
    }

    fn with_plan(dsns: &[(&str, String)], plan: bool) -> Self {
        let sql = Arc::new(PgSql::new(dsns, plan));
        let (query, execute) = (Arc::clone(&sql), Arc::clone(&sql));
        let host = MockHost::new()
            .sql(move |conn, statement, params| {
                query
                    .run(conn, statement, params, false)
                    .map(|(rows, _)| rows)
            })
            .sql_execute(move |conn, statement, params| {
                execute.run(conn, statement, params, true).map(|(_, n)| n)
            });
        Self {
            sql,
            host: Arc::new(host),
        }
    }

    /// Statements plan mode recorded instead of running, as `(connection, statement)`.
    pub(crate) fn planned(&self) -> Vec<(String, String)> {
        self.sql.planned.lock().unwrap().clone()
    }

    /// A context for one invocation over this host.
    pub(crate) fn ctx(&self, step_id: &str) -> Ctx {
        let mut inv = Invocation::for_test(&serde_json::json!({}));
        inv.step_id = step_id.to_owned();
        inv.idempotency_key = format!("test-run/{step_id}");
        inv.mode = if self.sql.plan {
            Mode::Plan
        } else {
            Mode::Apply
        };
        Ctx::new(inv, self.host.clone())
    }
}

/// Real PostgreSQL sessions by connection name.
struct PgSql {
    rt: tokio::runtime::Runtime,
    dsns: BTreeMap<String, String>,
    clients: Mutex<BTreeMap<String, tokio_postgres::Client>>,
    plan: bool,
    /// Statements plan mode recorded instead of running.
    planned: Mutex<Vec<(String, String)>>,
}

impl PgSql {
    fn new(dsns: &[(&str, String)], plan: bool) -> Self {
        Self {
            rt: tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime"),
            dsns: dsns
                .iter()
                .map(|(n, d)| ((*n).to_owned(), d.clone()))
                .collect(),
            clients: Mutex::default(),
            plan,
            planned: Mutex::default(),
        }
    }

    /// Connects `name` unless a live session is cached.
    fn ensure(&self, name: &str) -> Result<(), SqlError> {
        if self
            .clients
            .lock()
            .unwrap()
            .get(name)
            .is_some_and(|c| !c.is_closed())
        {
            return Ok(());
        }
        let dsn = self
            .dsns
            .get(name)
            .ok_or_else(|| SqlError::Denied(format!("connection `{name}` is not granted")))?;
        let (client, conn) = self
            .rt
            .block_on(tokio_postgres::connect(dsn, tokio_postgres::NoTls))
            .map_err(|e| SqlError::Connect(e.to_string()))?;
        self.rt.spawn(conn);
        self.rt
            .block_on(client.batch_execute("SET statement_timeout = '30s'"))
            .map_err(|e| SqlError::Connect(e.to_string()))?;
        self.clients.lock().unwrap().insert(name.to_owned(), client);
        Ok(())
    }

    fn convert_err(e: &tokio_postgres::Error) -> SqlError {
        match e.as_db_error() {
            Some(db) => SqlError::Db {
                code: db.code().code().to_owned(),
                message: db.message().to_owned(),
            },
            None => SqlError::Connect(e.to_string()),
        }
    }

    fn run(
        &self,
        name: &str,
        statement: &str,
        params: &[Value],
        execute: bool,
    ) -> Result<(Rows, u64), SqlError> {
        self.ensure(name)?;
        let clients = self.clients.lock().unwrap();
        let client = &clients[name];
        self.rt.block_on(async {
            if self.plan {
                client
                    .batch_execute("BEGIN READ ONLY")
                    .await
                    .map_err(|e| Self::convert_err(&e))?;
            }
            let result = Self::statement(client, statement, params, execute).await;
            if self.plan {
                let _ = client.batch_execute("ROLLBACK").await;
                if execute
                    && let Err(SqlError::Db { code, .. }) = &result
                    && code.starts_with("25")
                {
                    self.planned
                        .lock()
                        .unwrap()
                        .push((name.to_owned(), statement.to_owned()));
                    return Ok((Rows::default(), 0));
                }
            }
            result
        })
    }

    async fn statement(
        client: &tokio_postgres::Client,
        statement: &str,
        params: &[Value],
        execute: bool,
    ) -> Result<(Rows, u64), SqlError> {
        let stmt = client
            .prepare(statement)
            .await
            .map_err(|e| Self::convert_err(&e))?;
        let mut boxed: Vec<Box<dyn ToSql + Sync + Send>> = Vec::new();
        for (v, ty) in params.iter().zip(stmt.params()) {
            boxed.push(match (v, ty) {
                (Value::Null, _) => Box::new(Option::<String>::None),
                (Value::Bool(b), _) => Box::new(*b),
                (Value::Int(i), t) if *t == Type::INT4 => Box::new(
                    i32::try_from(*i).map_err(|_| SqlError::Unsupported("int4 overflow".into()))?,
                ),
                (Value::Int(i), t) if *t == Type::INT2 => Box::new(
                    i16::try_from(*i).map_err(|_| SqlError::Unsupported("int2 overflow".into()))?,
                ),
                (Value::Int(i), _) => Box::new(*i),
                (Value::Float(f), _) => Box::new(*f),
                (Value::Text(s), _) | (Value::Json(s), _) => Box::new(s.clone()),
                (Value::Bytes(b), _) => Box::new(b.clone()),
            });
        }
        let refs: Vec<&(dyn ToSql + Sync)> =
            boxed.iter().map(|b| &**b as &(dyn ToSql + Sync)).collect();
        if execute {
            let n = client
                .execute(&stmt, &refs)
                .await
                .map_err(|e| Self::convert_err(&e))?;
            return Ok((Rows::default(), n));
        }
        let rows = client
            .query(&stmt, &refs)
            .await
            .map_err(|e| Self::convert_err(&e))?;
        let columns: Vec<String> = stmt.columns().iter().map(|c| c.name().to_owned()).collect();
        let mut out = Rows {
            columns,
            rows: Vec::with_capacity(rows.len()),
        };
        for row in &rows {
            let mut values = Vec::with_capacity(row.len());
            for (i, col) in row.columns().iter().enumerate() {
                let t = col.type_();
                let conv = |e: tokio_postgres::Error| SqlError::Unsupported(e.to_string());
                let v = if *t == Type::BOOL {
                    row.try_get::<_, Option<bool>>(i)
                        .map_err(conv)?
                        .map(Value::Bool)
                } else if *t == Type::INT2 {
                    row.try_get::<_, Option<i16>>(i)
                        .map_err(conv)?
                        .map(|v| Value::Int(v.into()))
                } else if *t == Type::INT4 {
                    row.try_get::<_, Option<i32>>(i)
                        .map_err(conv)?
                        .map(|v| Value::Int(v.into()))
                } else if *t == Type::INT8 {
                    row.try_get::<_, Option<i64>>(i)
                        .map_err(conv)?
                        .map(Value::Int)
                } else if *t == Type::OID {
                    row.try_get::<_, Option<u32>>(i)
                        .map_err(conv)?
                        .map(|v| Value::Int(v.into()))
                } else if *t == Type::FLOAT4 {
                    row.try_get::<_, Option<f32>>(i)
                        .map_err(conv)?
                        .map(|v| Value::Float(v.into()))
                } else if *t == Type::FLOAT8 {
                    row.try_get::<_, Option<f64>>(i)
                        .map_err(conv)?
                        .map(Value::Float)
                } else if [Type::TEXT, Type::VARCHAR, Type::NAME, Type::BPCHAR].contains(t) {
                    row.try_get::<_, Option<String>>(i)
                        .map_err(conv)?
                        .map(Value::Text)
                } else {
                    return Err(SqlError::Unsupported(format!(
                        "column `{}` has type {t}; cast it to text or a number",
                        col.name()
                    )));
                };
                values.push(v.unwrap_or(Value::Null));
            }
            out.rows.push(values);
        }
        Ok((out, 0))
    }
}
