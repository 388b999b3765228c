//! Test harness: in-process servers on 127.0.0.1:0 that stop when dropped, a local upstream
//! that echoes what it received, and an HTTP client that never uses a proxy.

use std::net::SocketAddr;

use axum::Router;
use axum::extract::Request;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// A router served on a free loopback port; shut down (gracefully, then aborted) on drop.
pub(crate) struct Server {
    pub(crate) addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<std::io::Result<()>>,
}

impl Server {
    pub(crate) async fn start(router: Router) -> Server {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind loopback");
        let addr = listener.local_addr().expect("local addr");
        let (tx, rx) = oneshot::channel::<()>();
        let task = tokio::spawn(meridian_emulators::serve(listener, router, async move {
            let _ = rx.await;
        }));
        Server {
            addr,
            stop: Some(tx),
            task,
        }
    }

    pub(crate) fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    pub(crate) fn port(&self) -> u16 {
        self.addr.port()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        self.task.abort();
    }
}

/// A client that ignores `*_PROXY` variables and never pools across tests.
pub(crate) fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .timeout(std::time::Duration::from_secs(20))
        .build()
        .expect("client")
}

/// An upstream that answers every request with JSON describing it and naming itself.
pub(crate) async fn echo_upstream(name: &'static str) -> Server {
    let app = Router::new().fallback(move |req: Request| async move {
        let h = req.headers();
        let get = |k: &str| {
            h.get(k)
                .and_then(|v| v.to_str().ok())
                .map_or(Value::Null, |v| json!(v))
        };
        let body = json!({
            "upstream": name,
            "method": req.method().as_str(),
            "uri": req.uri().to_string(),
            "host": get("host"),
            "x_forwarded_for": get("x-forwarded-for"),
            "x_real_ip": get("x-real-ip"),
            "x_custom": get("x-custom"),
        });
        let mut resp: Response = (StatusCode::OK, body.to_string()).into_response();
        resp.headers_mut()
            .insert("server", "echo-upstream".parse().expect("header"));
        resp.headers_mut()
            .insert("x-upstream", name.parse().expect("header"));
        resp
    });
    Server::start(app).await
}

/// A loopback port that nothing listens on (bound, then released).
pub(crate) async fn dead_port() -> u16 {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port = l.local_addr().expect("addr").port();
    drop(l);
    port
}

/// Status and JSON body of a response (Null when the body is not JSON).
pub(crate) async fn json_of(resp: reqwest::Response) -> (u16, Value) {
    let status = resp.status().as_u16();
    let text = resp.text().await.expect("body");
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}
