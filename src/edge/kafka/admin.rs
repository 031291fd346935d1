//! The admin HTTP server, on its own port: this module owns the routes, their status
//! codes and bodies, and the server's graceful shutdown.
//!
//! | Route | Success | Failure |
//! |---|---|---|
//! | `GET /metrics` | 200, Prometheus text format 0.0.4 | — |
//! | `GET /healthz` | 200 `ok` | 503 with the reason |
//! | `GET /readyz` | 200 `ready` | 503 with the reason |
//! | `GET /customers/{id}` | 200, the customer's JSON | 404 / 500, `{"error": ...}` |
//!
//! Any other path answers 404. What the answers mean comes from an [`AdminState`]
//! implemented by the service; the server reads it and the metrics, and touches
//! nothing else.

use super::metrics::Metrics;
use axum::extract::{Path, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::json;
use std::sync::Arc;
use tokio_util::sync::CancellationToken;

/// What the admin server asks the service.
pub trait AdminState: Send + Sync + 'static {
    /// Ok while the process works (the processing loop heartbeats), Err(reason) otherwise.
    fn health(&self) -> Result<(), String>;
    /// Readiness: Ok when every assigned partition is restored, Err(reason listing
    /// partitions not ready).
    fn readiness(&self) -> Result<(), String>;
    /// A customer's JSON state and status, None if unknown; Err(msg) if the store failed.
    /// It may block (it runs on a blocking thread).
    fn customer(&self, id: &str) -> Result<Option<serde_json::Value>, String>;
}

#[derive(Clone)]
struct App {
    metrics: Arc<Metrics>,
    state: Arc<dyn AdminState>,
}

fn router(metrics: Arc<Metrics>, state: Arc<dyn AdminState>) -> Router {
    Router::new()
        .route("/metrics", get(render_metrics))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/customers/{id}", get(customer))
        .fallback(not_found)
        .with_state(App { metrics, state })
}

async fn render_metrics(State(app): State<App>) -> Response {
    (
        [(header::CONTENT_TYPE, app.metrics.content_type())],
        app.metrics.render(),
    )
        .into_response()
}

fn probe(result: Result<(), String>, ok: &'static str) -> Response {
    match result {
        Ok(()) => (StatusCode::OK, ok).into_response(),
        Err(reason) => (StatusCode::SERVICE_UNAVAILABLE, reason).into_response(),
    }
}

async fn healthz(State(app): State<App>) -> Response {
    probe(app.state.health(), "ok")
}

async fn readyz(State(app): State<App>) -> Response {
    probe(app.state.readiness(), "ready")
}

async fn customer(State(app): State<App>, Path(id): Path<String>) -> Response {
    let state = Arc::clone(&app.state);
    let key = id.clone();
    match tokio::task::spawn_blocking(move || state.customer(&key)).await {
        Ok(Ok(Some(value))) => (StatusCode::OK, Json(value)).into_response(),
        // While partitions are still being taken over or restored, a customer not found
        // may simply not be loaded yet: say so rather than "unknown".
        Ok(Ok(None)) => match app.state.readiness() {
            Err(reason) => (
                StatusCode::SERVICE_UNAVAILABLE,
                Json(json!({
                    "error": "not ready: the customer may be in a partition still being restored; retry shortly",
                    "reason": reason,
                    "customer_id": id,
                })),
            )
                .into_response(),
            Ok(()) => (
                StatusCode::NOT_FOUND,
                Json(json!({ "error": "unknown customer", "customer_id": id })),
            )
                .into_response(),
        },
        Ok(Err(message)) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            Json(json!({ "error": message })),
        )
            .into_response(),
        Err(e) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            Json(json!({ "error": format!("the customer lookup failed: {e}") })),
        )
            .into_response(),
    }
}

async fn not_found() -> Response {
    (StatusCode::NOT_FOUND, "not found").into_response()
}

/// Serves the admin routes on `listener` until `shutdown` is cancelled, then stops
/// accepting connections and returns once the requests in flight are answered.
pub async fn serve(
    listener: tokio::net::TcpListener,
    metrics: Arc<Metrics>,
    state: Arc<dyn AdminState>,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    axum::serve(listener, router(metrics, state))
        .with_graceful_shutdown(shutdown.cancelled_owned())
        .await
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;
    use std::net::SocketAddr;
    use std::sync::Mutex;
    use std::time::Duration;
    use tokio::task::JoinHandle;

    /// Health and readiness answers the tests can flip; customer `C1` exists, `broken`
    /// makes the store fail.
    struct Fake {
        health: Mutex<Result<(), String>>,
        ready: Mutex<Result<(), String>>,
    }

    impl AdminState for Fake {
        fn health(&self) -> Result<(), String> {
            self.health.lock().unwrap().clone()
        }

        fn readiness(&self) -> Result<(), String> {
            self.ready.lock().unwrap().clone()
        }

        fn customer(&self, id: &str) -> Result<Option<Value>, String> {
            match id {
                "C1" | "a/b" => Ok(Some(json!({ "customer_id": id, "level": "retain" }))),
                "broken" => Err("store read failed: io error".to_string()),
                _ => Ok(None),
            }
        }
    }

    struct Server {
        addr: SocketAddr,
        fake: Arc<Fake>,
        metrics: Arc<Metrics>,
        shutdown: CancellationToken,
        task: JoinHandle<std::io::Result<()>>,
    }

    async fn start() -> Server {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let fake = Arc::new(Fake {
            health: Mutex::new(Ok(())),
            ready: Mutex::new(Ok(())),
        });
        let metrics = Arc::new(Metrics::new(10));
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(serve(
            listener,
            Arc::clone(&metrics),
            fake.clone(),
            shutdown.clone(),
        ));
        Server {
            addr,
            fake,
            metrics,
            shutdown,
            task,
        }
    }

    struct Answer {
        status: u16,
        content_type: String,
        body: String,
    }

    /// A real HTTP request with `agent`, on a blocking thread.
    async fn request(agent: &ureq::Agent, method: &str, url: String) -> Answer {
        let agent = agent.clone();
        let method = method.to_string();
        tokio::task::spawn_blocking(move || {
            let response = match agent.request(&method, &url).call() {
                Ok(r) => r,
                Err(ureq::Error::Status(_, r)) => r,
                Err(e) => panic!("{method} {url}: {e}"),
            };
            Answer {
                status: response.status(),
                content_type: response
                    .header("content-type")
                    .unwrap_or_default()
                    .to_string(),
                body: response.into_string().unwrap(),
            }
        })
        .await
        .unwrap()
    }

    async fn get(s: &Server, path: &str) -> Answer {
        request(&ureq::agent(), "GET", format!("http://{}{path}", s.addr)).await
    }

    async fn stop(s: Server) {
        s.shutdown.cancel();
        tokio::time::timeout(Duration::from_secs(10), s.task)
            .await
            .expect("the server stops")
            .unwrap()
            .unwrap();
    }

    #[tokio::test]
    async fn metrics_route() {
        let s = start().await;
        s.metrics.processed_events.inc_by(3);
        let a = get(&s, "/metrics").await;
        assert_eq!(a.status, 200);
        assert_eq!(a.content_type, "text/plain; version=0.0.4");
        assert!(a.body.contains("# HELP churnwatch_processed_events_total "));
        assert!(a.body.contains("\nchurnwatch_processed_events_total 3\n"));
        stop(s).await;
    }

    #[tokio::test]
    async fn health_and_readiness() {
        let s = start().await;
        let a = get(&s, "/healthz").await;
        assert_eq!((a.status, a.body.as_str()), (200, "ok"));
        let a = get(&s, "/readyz").await;
        assert_eq!((a.status, a.body.as_str()), (200, "ready"));

        *s.fake.health.lock().unwrap() = Err("no heartbeat for 31 s".to_string());
        *s.fake.ready.lock().unwrap() = Err("partitions not ready: 0, 5".to_string());
        let a = get(&s, "/healthz").await;
        assert_eq!((a.status, a.body.as_str()), (503, "no heartbeat for 31 s"));
        let a = get(&s, "/readyz").await;
        assert_eq!(
            (a.status, a.body.as_str()),
            (503, "partitions not ready: 0, 5")
        );

        *s.fake.health.lock().unwrap() = Ok(());
        assert_eq!(get(&s, "/healthz").await.status, 200);
        stop(s).await;
    }

    #[tokio::test]
    async fn customer_route() {
        let s = start().await;
        let a = get(&s, "/customers/C1").await;
        assert_eq!(a.status, 200);
        assert_eq!(a.content_type, "application/json");
        let v: Value = serde_json::from_str(&a.body).unwrap();
        assert_eq!(v, json!({ "customer_id": "C1", "level": "retain" }));

        // Ids are percent-decoded, so one containing a slash can be asked for.
        let a = get(&s, "/customers/a%2Fb").await;
        assert_eq!(a.status, 200);
        let v: Value = serde_json::from_str(&a.body).unwrap();
        assert_eq!(v["customer_id"], "a/b");

        let a = get(&s, "/customers/nobody").await;
        assert_eq!(a.status, 404);
        assert_eq!(a.content_type, "application/json");
        let v: Value = serde_json::from_str(&a.body).unwrap();
        assert_eq!(
            v,
            json!({ "error": "unknown customer", "customer_id": "nobody" })
        );

        let a = get(&s, "/customers/broken").await;
        assert_eq!(a.status, 500);
        let v: Value = serde_json::from_str(&a.body).unwrap();
        assert_eq!(v, json!({ "error": "store read failed: io error" }));

        // During start-up an unknown customer is "not ready", not "unknown"; a known
        // one is served.
        *s.fake.ready.lock().unwrap() = Err("partitions not ready: 3".to_string());
        let a = get(&s, "/customers/nobody").await;
        assert_eq!(a.status, 503);
        let v: Value = serde_json::from_str(&a.body).unwrap();
        assert_eq!(v["reason"], "partitions not ready: 3");
        assert_eq!(v["customer_id"], "nobody");
        assert!(v["error"].as_str().unwrap().starts_with("not ready"));
        assert_eq!(get(&s, "/customers/C1").await.status, 200);
        stop(s).await;
    }

    #[tokio::test]
    async fn unknown_routes_and_methods() {
        let s = start().await;
        for path in ["/", "/nope", "/customers", "/customers/", "/customers/C1/x"] {
            let a = get(&s, path).await;
            assert_eq!((a.status, a.body.as_str()), (404, "not found"), "{path}");
        }
        let a = request(&ureq::agent(), "POST", format!("http://{}/healthz", s.addr)).await;
        assert_eq!(a.status, 405);
        stop(s).await;
    }

    #[tokio::test]
    async fn shuts_down_on_the_token() {
        let s = start().await;
        let addr = s.addr;
        // A client holding a kept-alive connection does not keep the server up.
        let agent = ureq::agent();
        let a = request(&agent, "GET", format!("http://{addr}/healthz")).await;
        assert_eq!(a.status, 200);
        stop(s).await;
        assert!(tokio::net::TcpStream::connect(addr).await.is_err());
        drop(agent);
    }
}
