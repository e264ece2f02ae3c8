//! The web page: the live loop in a browser, for headless boards (`--sink http:[addr:port]`,
//! which `app::run` turns into a [`WebServer`] beside the loop). It watches the loop through
//! [`crate::pipeline::feed::Watcher`] (frames and figures) and changes it through
//! [`Controls`]; the drawing pad runs on its own worker and model, so the loop never waits
//! for it.
//!
//! Routes (every one behind the token when one is set, as `?token=` (percent-encoded) or
//! `Authorization: Bearer`):
//! - `/`: the live page (stream, overlay figures, controls for k and paper mode);
//! - `/stream.mjpg`: MJPEG (`multipart/x-mixed-replace`) of the composed frames; each client
//!   gets the newest frame or skips, so slow clients never slow the loop; at most
//!   `--http-max-clients` streams, then 503; a client that stops reading is dropped after
//!   [`WRITE_TIMEOUT`], one that reads slower than [`MIN_TRANSFER_RATE`] after a
//!   [`RATE_WINDOW`];
//! - `/pad`: draw with mouse or touch and see f(drawing) and f(f(drawing)); `/api/project`
//!   (POST an image, at most 1 MB: 413 beyond, 413 for more than 4096×4096 pixels, 400 if it
//!   does not decode) and `/api/noise` answer with a PNG of f and f∘f side by side, computed on
//!   the pad's own worker thread and backend so the loop never waits for them (503 when its
//!   queue is full);
//! - `/api/interpolate` (POST two drawings: a 4-byte big-endian length, the first image, the
//!   second): a PNG strip of 8 points decoded between their latents (models with `ign.latent`);
//! - `/api/control?steps=K&paper=0|1&precision=P` (POST): change the running loop (P among
//!   the model's variants: fp32 and the `.fp16.onnx` / `.int8.onnx` files beside it);
//! - `/stats.json` and `/metrics` (Prometheus text format), with the events' counters
//!   (`--events`: an `events` key, `ign_edge_events_*` series; [`crate::events::status`]).
//!
//! Every POST refuses a cross-origin request (an `Origin` whose host:port is not the `Host`:
//! 403). The page and pad are embedded in the binary (no build step, no CDN).
//!
//! Built for hostile networks: hyper (through axum) on a one-thread tokio runtime of its own,
//! every connection in its own task, limits on connections, header size and count, body size
//! (from `Content-Length`, then while reading), header-read, idle and write timeouts; see the
//! constants below. Modules: `server` (listener, connection cap, timeouts), `routes` (the router,
//! the token/origin/size guard, handlers, MJPEG), `worker` (the pad's inference behind a bounded
//! queue, image checks before decoding), `auth` (token, query decoding, origin check).

mod auth;
mod routes;
mod server;
mod worker;

pub use auth::{resolve_token, AllowedHosts, TOKEN_ENV};

use anyhow::{anyhow, Result};
use bytes::Bytes;
use image::RgbImage;
use serde::Serialize;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::model::{Model, Precision};
use crate::pipeline::feed::Watcher;
use crate::pipeline::telemetry::Telemetry;

/// Largest request body (pad uploads): 413 beyond, from `Content-Length` or while reading.
pub const MAX_UPLOAD: usize = 1 << 20;
/// Largest width and height of an uploaded image, checked before it is decoded.
pub const MAX_IMAGE_SIDE: u32 = 4096;
/// Most memory the image decoder may allocate for one upload.
pub const MAX_IMAGE_ALLOC: u64 = 64 << 20;
/// Most open connections; any more are closed as soon as they are accepted.
pub const MAX_CONNECTIONS: usize = 128;
/// Most open connections from one client address, so that one client cannot hold every slot
/// (behind a reverse proxy on the board itself, every client shares the proxy's address).
pub const MAX_CONNECTIONS_PER_CLIENT: usize = 32;
/// Largest request head (request line and headers), bytes: 431 beyond.
pub const MAX_HEADER_BYTES: usize = 16 << 10;
/// Most request headers: 431 beyond.
pub const MAX_HEADERS: usize = 64;
/// A client must send a whole request head within this time of connecting or of its last
/// response.
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// A connection on which nothing is read or written for this long is closed.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(30);
/// A write the client does not take for this long closes the connection (and frees a stream
/// slot).
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(4);
/// The slowest a client may take what is written (a stream, a page), bytes per second over
/// [`RATE_WINDOW`]: a client that the server waited on for at least half of a window and that
/// took less than this is dropped, and its stream slot freed. A reader that takes a few bytes
/// at a time mostly trips [`WRITE_TIMEOUT`] first (Linux wakes a blocked writer only once half
/// the send buffer is free); this floor catches one that reads just often enough to keep every
/// write moving. A stream at its lowest useful rate (a few kB a frame) stays far above it.
pub const MIN_TRANSFER_RATE: u64 = 2 << 10;
/// The window over which [`MIN_TRANSFER_RATE`] is measured.
pub const RATE_WINDOW: Duration = Duration::from_secs(10);
/// An upload must arrive whole within this time: 408 otherwise.
pub const BODY_READ_TIMEOUT: Duration = Duration::from_secs(30);
/// Pad requests waiting for the pad's worker; more get 503.
pub const PAD_QUEUE: usize = 4;
/// A pad request not answered within this time gets 503 (the connection does not wait on).
pub const PAD_TIMEOUT: Duration = Duration::from_secs(30);

pub use crate::pipeline::controls::{Controls, SwitchBackend};

/// What the web page needs: the pad's model, the token, the client limit, the controls.
#[derive(Clone)]
pub struct WebOptions {
    /// The model, for the pad (run on the pad's own backend).
    pub model: Model,
    /// Its noise variant, for `/api/noise` (BatchNorm models).
    pub noise_model: Option<Model>,
    /// The token every request must carry (none: open to whoever reaches the address).
    pub token: Option<String>,
    /// Most MJPEG clients at once.
    pub max_clients: usize,
    /// The running loop's settings.
    pub controls: Arc<Controls>,
    /// Names besides this machine's that `Host` may carry (`--http-allow-host`).
    pub allow_hosts: Vec<String>,
    /// The run's events (`--events`), whose counters `/stats.json` and `/metrics` show.
    pub events: Option<crate::events::EventsStatus>,
}

/// The figures `/stats.json` and `/metrics` report.
#[derive(Clone, Debug, Default, Serialize)]
struct Stats {
    /// The loop's figures (the same the overlay shows).
    #[serde(flatten)]
    live: Telemetry,
    paper: bool,
    /// The variants the page can switch between.
    precisions: Vec<Precision>,
    frames: u64,
    clients: usize,
    pad_requests: u64,
    /// The events' counters (`--events`).
    #[serde(skip_serializing_if = "Option::is_none")]
    events: Option<crate::events::EventsReport>,
}

/// What the sink (on the loop's thread) and the server's tasks share.
struct Shared {
    stats: Mutex<Stats>,
    /// Connected MJPEG clients.
    clients: AtomicUsize,
    max_clients: usize,
    /// The newest frame as one multipart part (boundary, part headers, JPEG), shared by every
    /// stream client.
    frames: tokio::sync::watch::Sender<Option<Bytes>>,
    controls: Arc<Controls>,
    token: Option<auth::Token>,
    hosts: auth::AllowedHosts,
    pad: worker::Worker,
    events: Option<crate::events::EventsStatus>,
}

/// Serves the live loop over HTTP; [`WebServer::watcher`] is what the loop feeds.
pub struct WebServer {
    addr: SocketAddr,
    shared: Arc<Shared>,
    server: server::Server,
}

impl WebServer {
    /// Bind `addr` (`""` → 127.0.0.1:8080) and start serving.
    pub fn start(addr: &str, opts: WebOptions) -> Result<WebServer> {
        let addr = if addr.is_empty() {
            "127.0.0.1:8080"
        } else {
            addr
        };
        let token = opts.token.as_deref().map(auth::Token::new).transpose()?;
        let listener = std::net::TcpListener::bind(addr).map_err(|e| {
            anyhow!("http:{addr}: cannot listen ({e}); pick another port, e.g. --sink http:127.0.0.1:8081")
        })?;
        let bound = listener
            .local_addr()
            .map_err(|e| anyhow!("http:{addr}: no local address ({e})"))?;
        if !bound.ip().is_loopback() {
            log::warn!(
                "serving on {bound}: the stream and the pad are visible on the network{}",
                if token.is_some() {
                    " (token required)"
                } else {
                    "; consider --http-token-file or IGN_EDGE_HTTP_TOKEN"
                }
            );
        }
        let pad = worker::Worker::start(&opts.model, opts.noise_model.as_ref())?;
        let shared = Arc::new(Shared {
            stats: Mutex::new(Stats {
                live: Telemetry {
                    model: opts
                        .model
                        .info
                        .path
                        .file_stem()
                        .map(|s| s.to_string_lossy().into_owned())
                        .unwrap_or_default(),
                    precision: opts.model.info.precision.to_string(),
                    ..Default::default()
                },
                ..Default::default()
            }),
            clients: AtomicUsize::new(0),
            max_clients: opts.max_clients.max(1),
            frames: tokio::sync::watch::Sender::new(None),
            controls: opts.controls.clone(),
            token,
            hosts: auth::AllowedHosts::for_this_machine(&opts.allow_hosts),
            pad,
            events: opts.events.clone(),
        });
        let server = server::Server::start(listener, routes::router(shared.clone()))
            .map_err(|e| anyhow!("http:{bound}: cannot start the server: {e:#}"))?;
        log::info!("serving the live view on http://{bound}/ (pad: http://{bound}/pad)");
        Ok(WebServer {
            addr: bound,
            shared,
            server,
        })
    }

    /// The bound address (useful with port 0).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// What it is, for the run's summary.
    pub fn describe(&self) -> String {
        format!("http http://{}/", self.addr)
    }

    /// What the loop feeds: every frame's figures, and pictures while someone streams.
    pub fn watcher(&self) -> Arc<dyn Watcher> {
        Arc::new(Feed(self.shared.clone()))
    }

    /// Stop serving (open streams end; waits at most a moment for the server's thread).
    pub fn stop(&mut self) {
        self.server.stop();
    }
}

/// The loop's side of the page: figures into `/stats.json`, pictures into the MJPEG stream.
struct Feed(Arc<Shared>);

impl Watcher for Feed {
    /// Encode only for someone: with no stream client the loop pays nothing.
    fn wants_picture(&self) -> bool {
        self.0.clients.load(Ordering::Relaxed) > 0
    }

    fn telemetry(&self, now: &Telemetry) {
        let mut s = self.0.stats.lock().unwrap_or_else(|e| e.into_inner());
        s.live = now.clone();
        s.frames += 1;
    }

    fn picture(&self, canvas: &RgbImage, _seq: u64) {
        let mut jpeg = Vec::with_capacity(32 * 1024);
        if let Err(e) =
            image::codecs::jpeg::JpegEncoder::new_with_quality(&mut jpeg, 80).encode_image(canvas)
        {
            log::debug!("web: a frame did not encode: {e}");
            return;
        }
        let mut part = format!(
            "--frame\r\nContent-Type: image/jpeg\r\nContent-Length: {}\r\n\r\n",
            jpeg.len()
        )
        .into_bytes();
        part.extend_from_slice(&jpeg);
        part.extend_from_slice(b"\r\n");
        self.0.frames.send_replace(Some(Bytes::from(part)));
    }
}
