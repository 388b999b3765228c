//! Connections: DSN parsing with a printable description, and [`Link`], a shared connection that
//! LISTENs on channels and reconnects by itself.

use std::collections::HashMap;
use std::future::poll_fn;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use meridian_pgtls::PgTarget;
use tokio::task::JoinHandle;
use tokio_postgres::{AsyncMessage, Client, Statement};

use crate::DistError;

/// Longest wait for a TCP connection when the DSN does not say (`connect_timeout`).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Reconnect back-off bounds.
const BACKOFF_MIN: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(5);

/// A parsed DSN plus a description of it that is safe to print (no password).
#[derive(Clone)]
pub(crate) struct Target {
    /// The connection string parsed, with the TLS its `sslmode` asks for.
    pub(crate) pg: PgTarget,
    pub(crate) name: String,
}

impl std::fmt::Debug for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.name)
    }
}

impl Target {
    /// Accepts both `host=… port=… user=… dbname=…` and `postgres://user@host:port/db`, with
    /// libpq's `sslmode` and `sslrootcert` (see `meridian-pgtls`).
    pub(crate) fn parse(dsn: &str) -> Result<Target, DistError> {
        let mut pg = PgTarget::parse(dsn).map_err(|e| DistError::Config(e.to_string()))?;
        let config = &mut pg.config;
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(CONNECT_TIMEOUT);
        }
        if config.get_application_name().is_none() {
            config.application_name("meridian");
        }
        let host = config
            .get_hosts()
            .iter()
            .map(|h| match h {
                tokio_postgres::config::Host::Tcp(s) => s.clone(),
                #[cfg(unix)]
                tokio_postgres::config::Host::Unix(p) => p.display().to_string(),
            })
            .collect::<Vec<_>>()
            .join(",");
        let port = config
            .get_ports()
            .iter()
            .map(u16::to_string)
            .collect::<Vec<_>>()
            .join(",");
        let name = format!(
            "postgres://{}@{}:{}/{}",
            config.get_user().unwrap_or("?"),
            if host.is_empty() { "localhost" } else { &host },
            if port.is_empty() { "5432" } else { &port },
            config.get_dbname().unwrap_or("?"),
        );
        Ok(Target { pg, name })
    }

    /// Connects, the start-up handshake included, within the DSN's `connect_timeout` (default
    /// 10 s). tokio-postgres bounds the TCP connect only: a listener that accepted and never
    /// answered (a wrong port, a stuck proxy) hung `serve`, `runs list` and `worker` silently,
    /// the worker deaf to SIGTERM.
    async fn handshake(&self) -> Result<(Client, Conn), DistError> {
        let after = self
            .pg
            .config
            .get_connect_timeout()
            .copied()
            .unwrap_or(CONNECT_TIMEOUT);
        match tokio::time::timeout(after, self.pg.connect()).await {
            Ok(Ok(pair)) => Ok(pair),
            Ok(Err(source)) => Err(DistError::Connect {
                target: self.name.clone(),
                source,
            }),
            Err(_) => Err(DistError::Stalled {
                target: self.name.clone(),
                after,
            }),
        }
    }

    /// A plain connection whose driver runs as a task on the current runtime (it ends when the
    /// client is dropped).
    pub(crate) async fn connect(&self) -> Result<Client, DistError> {
        let (client, conn) = self.handshake().await?;
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!("postgres connection ended: {e}");
            }
        });
        Ok(client)
    }
}

/// What a [`Link`] reports to its owner.
pub(crate) enum LinkEvent<'a> {
    Notification {
        channel: &'a str,
        payload: &'a str,
    },
    /// A new connection is up and listening: notifications sent while it was down were lost, so
    /// whoever waits for one should look at the table again.
    Reconnected,
}

pub(crate) type Handler = Arc<dyn Fn(LinkEvent<'_>) + Send + Sync>;

/// One connection shared by every task of a coordinator or worker process (tokio-postgres
/// pipelines concurrent statements on it), LISTENing on fixed channels. A supervisor task
/// reconnects with capped exponential back-off when the connection drops; meanwhile
/// [`client`](Self::client) returns `None` and callers retry on their own schedule.
///
/// Cost: one server backend; notifications are dispatched on the supervisor task, so the handler
/// must be quick (it only wakes waiters).
pub(crate) struct Link {
    client: Arc<RwLock<Option<Arc<Client>>>>,
    supervisor: JoinHandle<()>,
}

impl Drop for Link {
    fn drop(&mut self) {
        self.supervisor.abort();
    }
}

impl Link {
    /// Connects and LISTENs; fails when the first connection cannot be made.
    pub(crate) async fn open(
        target: &Target,
        channels: &'static [&'static str],
        handler: Handler,
    ) -> Result<Link, DistError> {
        let first = target.handshake().await?;
        let client = Arc::new(RwLock::new(None));
        let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
        let supervisor = tokio::spawn(supervise(
            target.clone(),
            channels,
            handler,
            client.clone(),
            first,
            ready_tx,
        ));
        match ready_rx.await {
            Ok(Ok(())) => Ok(Link { client, supervisor }),
            Ok(Err(e)) => {
                supervisor.abort();
                Err(e)
            }
            Err(_) => Err(DistError::Config(format!(
                "the connection to {} ended while it was being set up",
                target.name
            ))),
        }
    }

    /// The live client, or `None` while reconnecting.
    pub(crate) fn client(&self) -> Option<Arc<Client>> {
        self.client
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
            .filter(|c| !c.is_closed())
            .cloned()
    }
}

type Conn = meridian_pgtls::Connection;

async fn supervise(
    target: Target,
    channels: &'static [&'static str],
    handler: Handler,
    slot: Arc<RwLock<Option<Arc<Client>>>>,
    first: (Client, Conn),
    ready: tokio::sync::oneshot::Sender<Result<(), DistError>>,
) {
    let mut next = Some(first);
    let mut ready = Some(ready);
    let mut backoff = BACKOFF_MIN;
    loop {
        let (client, mut conn) = match next.take() {
            Some(pair) => pair,
            None => match target.handshake().await {
                Ok(pair) => pair,
                Err(e) => {
                    tracing::warn!("reconnecting to {}: {e}", target.name);
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(BACKOFF_MAX);
                    continue;
                }
            },
        };
        let client = Arc::new(client);
        let setup = {
            let client = client.clone();
            let slot = slot.clone();
            let handler = handler.clone();
            let ready = &mut ready;
            let name = target.name.clone();
            async move {
                let listen: String = channels.iter().map(|c| format!("LISTEN {c};")).collect();
                match client.batch_execute(&listen).await {
                    Ok(()) => {
                        *slot.write().unwrap_or_else(|p| p.into_inner()) = Some(client);
                        if let Some(tx) = ready.take() {
                            let _ = tx.send(Ok(()));
                        }
                        handler(LinkEvent::Reconnected);
                        // Keep the connection driven until it ends.
                        std::future::pending::<()>().await;
                    }
                    Err(source) => {
                        let e = DistError::Connect {
                            target: name,
                            source,
                        };
                        tracing::warn!("{e}");
                        if let Some(tx) = ready.take() {
                            let _ = tx.send(Err(e));
                        }
                    }
                }
            }
        };
        let drive = async {
            loop {
                match poll_fn(|cx| conn.poll_message(cx)).await {
                    Some(Ok(AsyncMessage::Notification(n))) => handler(LinkEvent::Notification {
                        channel: n.channel(),
                        payload: n.payload(),
                    }),
                    Some(Ok(_)) => {}
                    Some(Err(e)) => {
                        tracing::warn!("connection to {} lost: {e}", target.name);
                        return;
                    }
                    None => return,
                }
            }
        };
        let connected_at = tokio::time::Instant::now();
        tokio::select! {
            () = drive => {}
            () = setup => {}
        }
        *slot.write().unwrap_or_else(|p| p.into_inner()) = None;
        if ready.is_some() {
            // The first connection died before LISTEN finished.
            return;
        }
        // A connection that lasted resets the back-off; one that drops at once keeps growing it.
        if connected_at.elapsed() > BACKOFF_MAX {
            backoff = BACKOFF_MIN;
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(BACKOFF_MAX);
    }
}

/// Statements prepared once per connection of a [`Link`] (a statement belongs to the connection
/// that prepared it, so the cache follows the current client).
#[derive(Default)]
pub(crate) struct Prepared {
    cache: std::sync::Mutex<Option<PerClient>>,
}

/// The client the statements were prepared on, and the statements by SQL text.
type PerClient = (Arc<Client>, HashMap<&'static str, Statement>);

impl Prepared {
    pub(crate) async fn get(
        &self,
        client: &Arc<Client>,
        sql: &'static str,
    ) -> Result<Statement, tokio_postgres::Error> {
        {
            let cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
            if let Some((c, map)) = cache.as_ref()
                && Arc::ptr_eq(c, client)
                && let Some(s) = map.get(sql)
            {
                return Ok(s.clone());
            }
        }
        let stmt = client.prepare(sql).await?;
        let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        match cache.as_mut() {
            Some((c, map)) if Arc::ptr_eq(c, client) => {
                map.insert(sql, stmt.clone());
            }
            _ => *cache = Some((client.clone(), HashMap::from([(sql, stmt.clone())]))),
        }
        Ok(stmt)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn description_never_shows_the_password() {
        for dsn in [
            "host=db.example port=6543 user=meridian password=s3cret dbname=state",
            "postgres://meridian:s3cret@db.example:6543/state",
        ] {
            let t = Target::parse(dsn).unwrap();
            assert_eq!(t.name, "postgres://meridian@db.example:6543/state");
            assert!(!format!("{t:?}").contains("s3cret"));
        }
        assert!(Target::parse("host=x port=notaport").is_err());
    }

    /// A listener that accepts and never answers: the connection gives up at its timeout with
    /// a message that says so (it hung forever).
    #[tokio::test]
    async fn a_server_that_never_answers_is_given_up_on_at_the_timeout() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let held = tokio::spawn(async move {
            let mut open = Vec::new();
            while let Ok((sock, _)) = listener.accept().await {
                open.push(sock);
            }
        });
        let t = Target::parse(&format!(
            "postgres://meridian@127.0.0.1:{port}/state?connect_timeout=1&sslmode=disable"
        ))
        .unwrap();
        let started = std::time::Instant::now();
        let Err(e) = t.connect().await else {
            panic!("a connection to a server that never answered")
        };
        assert!(matches!(e, DistError::Stalled { .. }), "{e}");
        assert!(e.to_string().contains("did not finish its start-up"), "{e}");
        assert!(started.elapsed() < Duration::from_secs(5));
        held.abort();
    }
}
