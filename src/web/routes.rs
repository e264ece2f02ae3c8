//! The router: the guard every request passes (declared size, token, origin), the handlers,
//! the MJPEG stream, and the figures of `/stats.json` and `/metrics`.

use axum::body::Body;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{header, HeaderMap, Method, StatusCode, Uri};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use bytes::Bytes;
use http_body_util::{BodyExt, LengthLimitError, Limited};
use std::convert::Infallible;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use tower_http::catch_panic::CatchPanicLayer;

use super::auth::{query_value, same_origin};
use super::worker::{Reply, Task};
use super::{Shared, Stats, BODY_READ_TIMEOUT, MAX_UPLOAD};

const INDEX: &str = include_str!("page/index.html");
const PAD: &str = include_str!("page/pad.html");

/// With no new frame for this long, a stream client gets the last one again (so that idle
/// timeouts along the way do not close a stream whose camera paused).
const STREAM_KEEPALIVE: Duration = Duration::from_secs(5);

/// Every route, behind the guard, with handler panics turned into 500s.
pub(super) fn router(shared: Arc<Shared>) -> Router {
    let app = Router::new()
        .route("/", get(|| async { html(INDEX) }))
        .route("/pad", get(|| async { html(PAD) }))
        .route("/stream.mjpg", get(stream))
        .route("/stats.json", get(stats_json))
        .route("/metrics", get(metrics))
        .route("/api/control", post(control))
        .route("/api/project", post(project))
        .route("/api/interpolate", post(interpolate))
        .route("/api/noise", get(noise))
        .fallback(|| async { text(StatusCode::NOT_FOUND, "not found: try / or /pad") })
        .layer(middleware::from_fn_with_state(shared.clone(), guard))
        .layer(DefaultBodyLimit::max(MAX_UPLOAD))
        .with_state(shared);
    catch_panics(app)
}

/// A handler that panics answers 500; the server and the other connections go on.
fn catch_panics(app: Router) -> Router {
    app.layer(CatchPanicLayer::custom(|_| {
        text(StatusCode::INTERNAL_SERVER_ERROR, "internal error")
    }))
}

fn text(code: StatusCode, body: impl Into<String>) -> Response {
    (
        code,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        body.into(),
    )
        .into_response()
}

fn html(page: &'static str) -> Response {
    ([(header::CONTENT_TYPE, "text/html; charset=utf-8")], page).into_response()
}

fn json(s: &Stats) -> Response {
    (
        [(header::CONTENT_TYPE, "application/json")],
        serde_json::to_string(s).unwrap_or_default(),
    )
        .into_response()
}

fn png(reply: Reply) -> Response {
    match reply {
        Ok(png) => ([(header::CONTENT_TYPE, "image/png")], png).into_response(),
        Err((code, msg)) => text(code, msg),
    }
}

/// Before any handler, without reading the body: a declared body over [`MAX_UPLOAD`] (413),
/// the token (401), and for a POST, the origin (403).
async fn guard(State(s): State<Arc<Shared>>, req: Request, next: Next) -> Response {
    let h = req.headers();
    let declared = h
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    if declared.is_some_and(|n| n > MAX_UPLOAD as u64) {
        return refuse(StatusCode::PAYLOAD_TOO_LARGE, "upload larger than 1 MB");
    }
    if !s.hosts.allows(h.get(header::HOST).map(|v| v.as_bytes())) {
        return refuse(
            StatusCode::FORBIDDEN,
            "Host is not a name of this server (DNS rebinding?); a reverse proxy's name needs --http-allow-host NAME",
        );
    }
    if let Some(t) = &s.token {
        let authorization = h.get(header::AUTHORIZATION).map(|v| v.as_bytes());
        if !t.authorizes(req.uri().query(), authorization) {
            return refuse(
                StatusCode::UNAUTHORIZED,
                "token required: add ?token=... (percent-encoded) or Authorization: Bearer ...",
            );
        }
    }
    if req.method() == Method::POST
        && !same_origin(origin(h), h.get(header::HOST).map(|v| v.as_bytes()))
    {
        return refuse(
            StatusCode::FORBIDDEN,
            "cross-origin request refused: Origin does not match Host",
        );
    }
    next.run(req).await
}

fn origin(h: &HeaderMap) -> Option<&[u8]> {
    h.get(header::ORIGIN).map(|v| v.as_bytes())
}

/// A refusal that closes the connection (the body, if any, is never read).
fn refuse(code: StatusCode, msg: &str) -> Response {
    let mut r = text(code, msg);
    r.headers_mut().insert(
        header::CONNECTION,
        header::HeaderValue::from_static("close"),
    );
    r
}

/// The request body, at most [`MAX_UPLOAD`] bytes, within [`BODY_READ_TIMEOUT`].
async fn read_upload(body: Body) -> Result<Bytes, Response> {
    let read = Limited::new(body, MAX_UPLOAD).collect();
    match tokio::time::timeout(BODY_READ_TIMEOUT, read).await {
        Err(_) => Err(refuse(
            StatusCode::REQUEST_TIMEOUT,
            "the upload did not arrive in time",
        )),
        Ok(Err(e)) if e.downcast_ref::<LengthLimitError>().is_some() => Err(refuse(
            StatusCode::PAYLOAD_TOO_LARGE,
            "upload larger than 1 MB",
        )),
        Ok(Err(_)) => Err(refuse(StatusCode::BAD_REQUEST, "cannot read the upload")),
        Ok(Ok(c)) => Ok(c.to_bytes()),
    }
}

async fn project(State(s): State<Arc<Shared>>, body: Body) -> Response {
    s.stats
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .pad_requests += 1;
    match read_upload(body).await {
        Ok(b) => png(s.pad.run(Task::Project(b)).await),
        Err(r) => r,
    }
}

async fn interpolate(State(s): State<Arc<Shared>>, body: Body) -> Response {
    match read_upload(body).await {
        Ok(b) => png(s.pad.run(Task::Interpolate(b)).await),
        Err(r) => r,
    }
}

async fn noise(State(s): State<Arc<Shared>>, uri: Uri) -> Response {
    let seed = query_value(uri.query(), "seed")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    png(s.pad.run(Task::Noise(seed)).await)
}

async fn control(State(s): State<Arc<Shared>>, uri: Uri) -> Response {
    let (q, c) = (uri.query(), &s.controls);
    if let Some(k) = query_value(q, "steps").and_then(|v| v.parse::<usize>().ok()) {
        c.steps.store(k.clamp(1, 8), Ordering::Relaxed);
    }
    if let Some(p) = query_value(q, "paper") {
        c.paper.store(p == "1" || p == "true", Ordering::Relaxed);
    }
    if let Some(i) =
        query_value(q, "precision").and_then(|v| c.precisions.iter().position(|p| p.as_str() == v))
    {
        c.precision.store(i, Ordering::Relaxed);
    }
    json(&stats_now(&s))
}

async fn stats_json(State(s): State<Arc<Shared>>) -> Response {
    json(&stats_now(&s))
}

async fn metrics(State(s): State<Arc<Shared>>) -> Response {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        metrics_text(&stats_now(&s)),
    )
        .into_response()
}

/// One MJPEG stream slot, given back when the stream ends (client gone, write timeout,
/// shutdown).
struct Slot(Arc<Shared>);

impl Slot {
    fn take(s: &Arc<Shared>) -> Option<Slot> {
        s.clients
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| {
                (n < s.max_clients).then_some(n + 1)
            })
            .ok()
            .map(|_| Slot(s.clone()))
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.clients.fetch_sub(1, Ordering::SeqCst);
    }
}

async fn stream(State(s): State<Arc<Shared>>) -> Response {
    let Some(slot) = Slot::take(&s) else {
        return text(
            StatusCode::SERVICE_UNAVAILABLE,
            "too many stream clients; try again later",
        );
    };
    let parts = futures_util::stream::unfold((s.frames.subscribe(), slot), next_part);
    (
        [
            (
                header::CONTENT_TYPE,
                "multipart/x-mixed-replace; boundary=frame",
            ),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        Body::from_stream(parts),
    )
        .into_response()
}

/// The next part of a stream: the newest frame when one arrives (frames in between are
/// skipped), the last one again after [`STREAM_KEEPALIVE`]; the end when the sink closes.
async fn next_part(
    (mut frames, slot): (watch::Receiver<Option<Bytes>>, Slot),
) -> Option<(
    Result<Bytes, Infallible>,
    (watch::Receiver<Option<Bytes>>, Slot),
)> {
    loop {
        // Err(Elapsed): no new frame for a while; send the last one again.
        if let Ok(Err(_)) = tokio::time::timeout(STREAM_KEEPALIVE, frames.changed()).await {
            return None; // the sink is gone
        }
        let part = frames.borrow_and_update().clone();
        if let Some(part) = part {
            return Some((Ok(part), (frames, slot)));
        }
    }
}

fn stats_now(shared: &Shared) -> Stats {
    let controls = &shared.controls;
    let mut s = shared
        .stats
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .clone();
    s.clients = shared.clients.load(Ordering::Relaxed);
    s.live.steps = controls.steps.load(Ordering::Relaxed);
    s.paper = controls.paper.load(Ordering::Relaxed);
    s.precisions = controls.precisions.clone();
    if let Some(p) = controls.precision() {
        s.live.precision = p.to_string();
    }
    s.events = shared.events.as_ref().map(|e| e.report());
    s
}

fn metrics_text(s: &Stats) -> String {
    let mut m = String::new();
    let mut g = |name: &str, help: &str, v: f64| {
        m += &format!(
            "# HELP ign_edge_{name} {help}\n# TYPE ign_edge_{name} gauge\nign_edge_{name} {v}\n"
        );
    };
    g(
        "fps",
        "Frames per second shown over the last second.",
        s.live.fps,
    );
    g(
        "end_to_end_ms",
        "Capture-to-display latency of the last frame, ms.",
        s.live.e2e_ms,
    );
    g(
        "capture_ms",
        "Mean capture time per frame, ms.",
        s.live.capture_ms,
    );
    g(
        "preprocess_ms",
        "Mean preprocessing time per frame, ms.",
        s.live.preprocess_ms,
    );
    g(
        "inference_ms",
        "Mean inference time per frame (f applied k times), ms.",
        s.live.inference_ms,
    );
    g(
        "display_ms",
        "Mean display time per frame, ms.",
        s.live.display_ms,
    );
    g(
        "dropped_frames",
        "Frames dropped so far (capture and display).",
        s.live.dropped as f64,
    );
    if let Some(score) = s.live.anomaly_score {
        g(
            "anomaly_score",
            "Anomaly score of the last frame (--anomaly).",
            score as f64,
        );
    }
    if let Some(a) = s.live.anomalous {
        g(
            "anomalous",
            "1 when the last frame's score is above the threshold (--anomaly).",
            if a { 1.0 } else { 0.0 },
        );
    }
    g("frames", "Frames shown so far.", s.frames as f64);
    g(
        "stream_clients",
        "Connected MJPEG clients.",
        s.clients as f64,
    );
    g("steps", "Applications of f per frame.", s.live.steps as f64);
    if let Some(e) = &s.events {
        m += &e.prometheus();
    }
    m
}

#[cfg(test)]
mod tests {
    use super::*;
    use hyper_util::service::TowerToHyperService;

    #[test]
    fn a_handler_panic_is_a_500() {
        async fn boom() -> &'static str {
            panic!("boom")
        }
        let app = catch_panics(Router::new().route("/boom", get(boom)));
        let svc = TowerToHyperService::new(app);
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let req = Request::get("/boom").body(Body::empty()).unwrap();
        let r = rt
            .block_on(hyper::service::Service::call(&svc, req))
            .unwrap();
        assert_eq!(r.status(), StatusCode::INTERNAL_SERVER_ERROR);
    }
}
