//! The admin HTTP endpoint `sqlcache`, `sqlcache cdc` and `sqlcache sink`
//! serve: `GET /metrics` (Prometheus text), `GET /health` (liveness: 200,
//! or 503 with the reason where the caller can tell it is unhealthy) and,
//! for the proxy, `GET /ready` (readiness, `ready.rs`).
//!
//! Policy: HTTP/1.0, one GET per connection; a request slower than 5 s or
//! larger than 8 KiB is dropped; any other path is a 404.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// A status line and body.
pub type Reply = (&'static str, String);
/// What `/ready` answers, computed when asked.
pub type ReadyFuture = Pin<Box<dyn Future<Output = Result<String, String>> + Send>>;

/// The proxy's endpoint: `/metrics` (the text `metrics` gives), `/health`
/// (200 while the process serves) and `/ready` (200 or 503 with the
/// reasons `ready` gives), until the task is dropped.
pub async fn serve<F, R>(listener: TcpListener, metrics: F, ready: R)
where
    F: Fn() -> String + Send + Sync + 'static,
    R: Fn() -> ReadyFuture + Send + Sync + 'static,
{
    let metrics = Arc::new(metrics);
    serve_http(
        listener,
        move |path: &str| -> Pin<Box<dyn Future<Output = Option<Reply>> + Send>> {
            match path {
                "/metrics" => Box::pin(std::future::ready(Some(("200 OK", metrics())))),
                "/health" => Box::pin(std::future::ready(Some(("200 OK", "ok\n".to_string())))),
                "/ready" => {
                    let r = ready();
                    Box::pin(async move { Some(status_of(r.await)) })
                }
                _ => Box::pin(std::future::ready(None)),
            }
        },
    )
    .await
}

fn status_of(r: Result<String, String>) -> Reply {
    match r {
        Ok(body) => ("200 OK", body),
        Err(body) => ("503 Service Unavailable", body),
    }
}

/// Binds `addr` and serves `/metrics` and `/health` there on a task of its
/// own (`sqlcache cdc` and `sqlcache sink`).
pub async fn spawn_endpoint<F, H>(addr: &str, metrics: F, health: H) -> std::io::Result<()>
where
    F: Fn() -> String + Send + Sync + 'static,
    H: Fn() -> Result<String, String> + Send + Sync + 'static,
{
    let l = TcpListener::bind(addr).await?;
    tokio::spawn(serve_with_health(l, metrics, health));
    tracing::info!(listen = %addr, "metrics endpoint (/metrics, /health)");
    Ok(())
}

/// Serves `/metrics` and a `/health` that answers 200 with `Ok`'s text or
/// 503 with `Err`'s.
pub async fn serve_with_health<F, H>(listener: TcpListener, metrics: F, health: H)
where
    F: Fn() -> String + Send + Sync + 'static,
    H: Fn() -> Result<String, String> + Send + Sync + 'static,
{
    serve_http(listener, move |path: &str| {
        std::future::ready(match path {
            "/metrics" => Some(("200 OK", metrics())),
            "/health" => Some(status_of(health())),
            _ => None,
        })
    })
    .await
}

/// A minimal HTTP/1.0 server: one GET per connection; `route` maps the
/// request path to a status line and body (`None`: 404). Slow or oversized
/// requests are dropped.
async fn serve_http<F, Fut>(listener: TcpListener, route: F)
where
    F: Fn(&str) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Option<Reply>> + Send + 'static,
{
    let route = Arc::new(route);
    loop {
        let Ok((mut s, _)) = listener.accept().await else {
            continue;
        };
        let route = route.clone();
        tokio::spawn(async move {
            let mut req = Vec::with_capacity(512);
            let mut buf = [0u8; 512];
            while !req.windows(4).any(|w| w == b"\r\n\r\n") && req.len() < 8192 {
                match tokio::time::timeout(std::time::Duration::from_secs(5), s.read(&mut buf))
                    .await
                {
                    Ok(Ok(n)) if n > 0 => req.extend_from_slice(&buf[..n]),
                    _ => return,
                }
            }
            let line = String::from_utf8_lossy(&req);
            let path = line
                .strip_prefix("GET ")
                .and_then(|r| r.split_whitespace().next())
                .unwrap_or("");
            let reply = route(path).await;
            let (code, body) = reply.unwrap_or(("404 Not Found", "not found\n".to_string()));
            let head = format!(
                "HTTP/1.0 {code}\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                body.len()
            );
            let _ = s.write_all(head.as_bytes()).await;
            let _ = s.write_all(body.as_bytes()).await;
        });
    }
}
