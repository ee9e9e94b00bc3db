//! tracing setup: one span per connection (`conn{id,peer}`), events inside.
//! `RUST_LOG` overrides `log.level`; `log.format` picks text or JSON lines.
//! Also the tiny HTTP endpoint both `sqlcache` and `sqlcache cdc` expose
//! metrics on.

use std::sync::Arc;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use tracing_subscriber::EnvFilter;

use crate::config::{LogConfig, LogFormat};

pub fn init(cfg: &LogConfig) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(&cfg.level));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = match cfg.format {
        LogFormat::Json => builder.json().try_init(),
        LogFormat::Text => builder.try_init(),
    };
}

/// A minimal HTTP/1.0 server: one GET per connection; `route` maps the
/// request path to a body (`None`: 404). Slow or oversized requests are
/// dropped.
pub async fn serve_http<F>(listener: TcpListener, route: F)
where
    F: Fn(&str) -> Option<String> + Send + Sync + 'static,
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
            let (code, body) = match route(path) {
                Some(body) => ("200 OK", body),
                None => ("404 Not Found", "not found\n".to_string()),
            };
            let head = format!(
                "HTTP/1.0 {code}\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                body.len()
            );
            let _ = s.write_all(head.as_bytes()).await;
            let _ = s.write_all(body.as_bytes()).await;
        });
    }
}
