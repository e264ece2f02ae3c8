//! `http:[addr:port]`: the live loop in a browser, for headless boards.
//!
//! Routes (every one behind `--http-token` when given, as `?token=` or `Authorization: Bearer`):
//! - `/`: the live page (stream, overlay figures, controls for k and paper mode);
//! - `/stream.mjpg`: MJPEG (`multipart/x-mixed-replace`) of the composed frames; each client
//!   gets the newest frame or skips, so slow clients never slow the loop; at most
//!   `--http-max-clients` streams, then 503;
//! - `/pad`: draw with mouse or touch and see f(drawing) and f(f(drawing)); `/api/project`
//!   (POST an image, at most 1 MB: 413 beyond, 400 if it does not decode) and `/api/noise`
//!   answer with a PNG of f and f∘f side by side, computed on the server's own backend so the
//!   loop never waits for them;
//! - `/api/interpolate` (POST two drawings: a 4-byte big-endian length, the first image, the
//!   second): a PNG strip of 8 points decoded between their latents (models with `ign.latent`);
//! - `/api/control?steps=K&paper=0|1&precision=P` (POST): change the running loop (P among
//!   the model's variants: fp32 and the `.fp16.onnx` / `.int8.onnx` files beside it);
//! - `/stats.json` and `/metrics` (Prometheus text format).
//!
//! The page and pad are embedded in the binary (no build step, no CDN).

use anyhow::{anyhow, Result};
use image::RgbImage;
use serde::Serialize;
use std::io::{Read, Write};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};
use tiny_http::{Header, Method, Request, Response, Server};

use super::Sink;
use crate::backend::{cpu::CpuBackend, Backend};
use crate::model::{Model, Precision};
use crate::pipeline::overlay::Hud;
use crate::tensor::ImageBatch;

const INDEX: &str = include_str!("web/index.html");
const PAD: &str = include_str!("web/pad.html");
/// Largest pad upload.
pub const MAX_UPLOAD: usize = 1 << 20;

/// Settings of the running loop that the page can change.
#[derive(Debug)]
pub struct Controls {
    pub steps: AtomicUsize,
    pub paper: AtomicBool,
    /// Index into `precisions` of the variant the loop runs.
    pub precision: AtomicUsize,
    /// The model variants the loop can switch between (fp32 and the files beside it).
    pub precisions: Vec<Precision>,
}

impl Controls {
    pub fn new(steps: usize, paper: bool, precisions: Vec<Precision>) -> Arc<Controls> {
        Arc::new(Controls {
            steps: AtomicUsize::new(steps.max(1)),
            paper: AtomicBool::new(paper),
            precision: AtomicUsize::new(0),
            precisions,
        })
    }

    /// The variant the loop runs now.
    pub fn precision(&self) -> Option<Precision> {
        self.precisions
            .get(self.precision.load(Ordering::Relaxed))
            .copied()
    }
}

/// Several variants of one model behind one [`Backend`]; [`Controls`] says which one runs.
pub struct SwitchBackend {
    pub backends: Vec<Box<dyn Backend>>,
    pub controls: Arc<Controls>,
}

impl Backend for SwitchBackend {
    fn name(&self) -> String {
        let i = self
            .controls
            .precision
            .load(Ordering::Relaxed)
            .min(self.backends.len() - 1);
        self.backends[i].name()
    }
    fn run(&mut self, input: &ImageBatch) -> Result<ImageBatch> {
        let i = self
            .controls
            .precision
            .load(Ordering::Relaxed)
            .min(self.backends.len() - 1);
        self.backends[i].run(input)
    }
}

/// What the http sink needs beyond a canvas size.
#[derive(Clone)]
pub struct HttpOptions {
    /// The model, for the pad (run on the server's own backend).
    pub model: Model,
    /// Its noise variant, for `/api/noise` (BatchNorm models).
    pub noise_model: Option<Model>,
    pub token: Option<String>,
    pub max_clients: usize,
    pub controls: Arc<Controls>,
}

#[derive(Default)]
struct Latest {
    seq: Option<u64>,
    jpeg: Arc<Vec<u8>>,
}

#[derive(Clone, Debug, Default, Serialize)]
struct Stats {
    model: String,
    precision: String,
    steps: usize,
    paper: bool,
    /// The variants the page can switch between.
    precisions: Vec<Precision>,
    fps: f64,
    capture_ms: f64,
    preprocess_ms: f64,
    inference_ms: f64,
    display_ms: f64,
    e2e_ms: f64,
    dropped: u64,
    frames: u64,
    clients: usize,
    pad_requests: u64,
}

struct Shared {
    latest: Mutex<Latest>,
    fresh: Condvar,
    stats: Mutex<Stats>,
    clients: AtomicUsize,
    closed: AtomicBool,
}

/// Serves the live loop over HTTP.
pub struct HttpSink {
    addr: SocketAddr,
    size: (u32, u32),
    shared: Arc<Shared>,
    server: Arc<Server>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl HttpSink {
    /// Bind `addr` (`""` → 127.0.0.1:8080) and start serving.
    pub fn start(addr: &str, size: (u32, u32), opts: HttpOptions) -> Result<HttpSink> {
        let addr = if addr.is_empty() {
            "127.0.0.1:8080"
        } else {
            addr
        };
        let server = Server::http(addr).map_err(|e| {
            anyhow!("http:{addr}: cannot listen ({e}); pick another port, e.g. --sink http:127.0.0.1:8081")
        })?;
        let bound = server
            .server_addr()
            .to_ip()
            .ok_or_else(|| anyhow!("http:{addr}: not an IP address"))?;
        if !bound.ip().is_loopback() {
            eprintln!(
                "warning: serving on {bound}: the stream and the pad are visible on the network{}",
                if opts.token.is_some() {
                    " (token required)"
                } else {
                    "; consider --http-token"
                }
            );
        }
        eprintln!("serving the live view on http://{bound}/ (pad: http://{bound}/pad)");
        let shared = Arc::new(Shared {
            latest: Mutex::default(),
            fresh: Condvar::new(),
            stats: Mutex::new(Stats {
                model: opts
                    .model
                    .info
                    .path
                    .file_stem()
                    .map(|s| s.to_string_lossy().into_owned())
                    .unwrap_or_default(),
                precision: opts.model.info.precision.to_string(),
                ..Default::default()
            }),
            clients: AtomicUsize::new(0),
            closed: AtomicBool::new(false),
        });
        let server = Arc::new(server);
        let thread = {
            let (server, shared) = (server.clone(), shared.clone());
            let backend = CpuBackend::new(&opts.model, Some(1))?;
            let noise = opts
                .noise_model
                .as_ref()
                .map(|m| CpuBackend::new(m, Some(1)))
                .transpose()?;
            std::thread::Builder::new()
                .name("http".into())
                .spawn(move || serve(&server, &shared, opts, backend, noise))?
        };
        Ok(HttpSink {
            addr: bound,
            size,
            shared,
            server,
            thread: Some(thread),
        })
    }

    /// The bound address (useful with port 0).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }
}

fn header(k: &str, v: &str) -> Header {
    Header::from_bytes(k.as_bytes(), v.as_bytes()).expect("valid header")
}

fn text(code: u16, body: &str) -> Response<std::io::Cursor<Vec<u8>>> {
    Response::from_string(body)
        .with_status_code(code)
        .with_header(header("Content-Type", "text/plain; charset=utf-8"))
}

fn query(url: &str, key: &str) -> Option<String> {
    let q = url.split_once('?')?.1;
    q.split('&').find_map(|kv| {
        let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
        (k == key).then(|| v.to_string())
    })
}

fn authorized(req: &Request, token: &Option<String>) -> bool {
    let Some(t) = token else { return true };
    if query(req.url(), "token").as_deref() == Some(t.as_str()) {
        return true;
    }
    req.headers()
        .iter()
        .any(|h| h.field.equiv("Authorization") && h.value.as_str() == format!("Bearer {t}"))
}

/// f and f∘f of one image, side by side, as PNG bytes.
fn projection_png(backend: &mut CpuBackend, x: &ImageBatch) -> Result<Vec<u8>> {
    let ys = backend.project(x, 2)?;
    strip_png(ys.iter().flat_map(crate::imaging::batch_tiles).collect())
}

/// Tiles side by side at their own size, as PNG bytes.
fn strip_png(tiles: Vec<RgbImage>) -> Result<Vec<u8>> {
    crate::fsio::png_bytes(&crate::imaging::grid(&[tiles], 1, 0)?)
}

/// The request body, at most [`MAX_UPLOAD`] bytes: `Err(status, message)` otherwise.
fn read_upload(req: &mut Request) -> std::result::Result<Vec<u8>, (u16, String)> {
    if req.body_length().is_some_and(|n| n > MAX_UPLOAD) {
        return Err((413, "upload larger than 1 MB".into()));
    }
    let mut body = Vec::new();
    req.as_reader()
        .take(MAX_UPLOAD as u64 + 1)
        .read_to_end(&mut body)
        .map_err(|_| (400, "cannot read the upload".to_string()))?;
    if body.len() > MAX_UPLOAD {
        return Err((413, "upload larger than 1 MB".into()));
    }
    Ok(body)
}

/// A drawing decoded and shaped for the model.
fn drawing(
    bytes: &[u8],
    info: &crate::model::ModelInfo,
) -> std::result::Result<ImageBatch, (u16, String)> {
    let img = image::load_from_memory(bytes).map_err(|e| (400, format!("not an image: {e}")))?;
    let x = crate::imaging::image_to_chw(&img, info.channels, info.height, info.width);
    ImageBatch::new(x, [1, info.channels, info.height, info.width])
        .map_err(|e| (400, e.to_string()))
}

/// 8 points between the latents of two drawings, as one PNG strip.
fn interpolation_png(
    split: &mut crate::latent::LatentSplit,
    info: &crate::model::ModelInfo,
    body: &[u8],
) -> std::result::Result<Vec<u8>, (u16, String)> {
    let bad = || {
        (
            400,
            "expected a 4-byte big-endian length, the first image, then the second".to_string(),
        )
    };
    if body.len() < 4 {
        return Err(bad());
    }
    let n = u32::from_be_bytes([body[0], body[1], body[2], body[3]]) as usize;
    if body.len() < 4 + n {
        return Err(bad());
    }
    let (a, b) = (
        drawing(&body[4..4 + n], info)?,
        drawing(&body[4 + n..], info)?,
    );
    let internal = |e: anyhow::Error| (500, format!("{e:#}"));
    let (la, lb) = (
        split.encode(&a).map_err(internal)?,
        split.encode(&b).map_err(internal)?,
    );
    let points: Vec<Vec<f32>> = (0..8)
        .map(|i| crate::latent::slerp(la.get(0), lb.get(0), i as f32 / 7.0))
        .collect();
    let ys = split
        .decode(&crate::latent::Latents::stack(&points, &la))
        .map_err(internal)?;
    strip_png(crate::imaging::batch_tiles(&ys)).map_err(internal)
}

fn serve(
    server: &Server,
    shared: &Arc<Shared>,
    opts: HttpOptions,
    mut backend: CpuBackend,
    mut noise: Option<CpuBackend>,
) {
    let info = opts.model.info.clone();
    let mut split = crate::latent::LatentSplit::new(&opts.model).ok();
    while !shared.closed.load(Ordering::Relaxed) {
        let Ok(Some(mut req)) = server.recv_timeout(Duration::from_millis(200)) else {
            continue;
        };
        if !authorized(&req, &opts.token) {
            let _ = req.respond(text(
                401,
                "token required: add ?token=... or Authorization: Bearer ...",
            ));
            continue;
        }
        let path = req.url().split('?').next().unwrap_or("/").to_string();
        let r = match (req.method(), path.as_str()) {
            (Method::Get, "/") => req.respond(
                Response::from_string(INDEX)
                    .with_header(header("Content-Type", "text/html; charset=utf-8")),
            ),
            (Method::Get, "/pad") => req.respond(
                Response::from_string(PAD)
                    .with_header(header("Content-Type", "text/html; charset=utf-8")),
            ),
            (Method::Get, "/stream.mjpg") => {
                if shared.clients.load(Ordering::Relaxed) >= opts.max_clients {
                    req.respond(text(503, "too many stream clients; try again later"))
                } else {
                    shared.clients.fetch_add(1, Ordering::Relaxed);
                    let shared = shared.clone();
                    let _ = std::thread::Builder::new()
                        .name("http-stream".into())
                        .spawn(move || {
                            stream(req.into_writer(), &shared);
                            shared.clients.fetch_sub(1, Ordering::Relaxed);
                        });
                    Ok(())
                }
            }
            (Method::Get, "/stats.json") => {
                let s = stats_now(shared, &opts.controls);
                req.respond(
                    Response::from_string(serde_json::to_string(&s).unwrap_or_default())
                        .with_header(header("Content-Type", "application/json")),
                )
            }
            (Method::Get, "/metrics") => {
                let s = stats_now(shared, &opts.controls);
                req.respond(
                    Response::from_string(metrics(&s))
                        .with_header(header("Content-Type", "text/plain; version=0.0.4")),
                )
            }
            (Method::Post, "/api/control") => {
                if let Some(k) = query(req.url(), "steps").and_then(|v| v.parse::<usize>().ok()) {
                    opts.controls.steps.store(k.clamp(1, 8), Ordering::Relaxed);
                }
                if let Some(p) = query(req.url(), "paper") {
                    opts.controls
                        .paper
                        .store(p == "1" || p == "true", Ordering::Relaxed);
                }
                let wanted = query(req.url(), "precision");
                if let Some(i) = wanted.as_deref().and_then(|v| {
                    opts.controls
                        .precisions
                        .iter()
                        .position(|p| p.as_str() == v)
                }) {
                    opts.controls.precision.store(i, Ordering::Relaxed);
                }
                let s = stats_now(shared, &opts.controls);
                req.respond(
                    Response::from_string(serde_json::to_string(&s).unwrap_or_default())
                        .with_header(header("Content-Type", "application/json")),
                )
            }
            (Method::Post, "/api/project") => {
                shared.stats.lock().unwrap().pad_requests += 1;
                let r = read_upload(&mut req)
                    .and_then(|body| drawing(&body, &info))
                    .and_then(|x| {
                        projection_png(&mut backend, &x).map_err(|e| (500, format!("{e:#}")))
                    });
                match r {
                    Ok(png) => req.respond(
                        Response::from_data(png).with_header(header("Content-Type", "image/png")),
                    ),
                    Err((code, msg)) => req.respond(text(code, &msg)),
                }
            }
            (Method::Post, "/api/interpolate") => {
                let r = match split.as_mut() {
                    None => Err((
                        400,
                        format!(
                            "{}: the model has no ign.latent metadata, so it cannot interpolate",
                            info.path.display()
                        ),
                    )),
                    Some(sp) => {
                        read_upload(&mut req).and_then(|body| interpolation_png(sp, &info, &body))
                    }
                };
                match r {
                    Ok(png) => req.respond(
                        Response::from_data(png).with_header(header("Content-Type", "image/png")),
                    ),
                    Err((code, msg)) => req.respond(text(code, &msg)),
                }
            }
            (Method::Get, "/api/noise") => {
                let seed = query(req.url(), "seed")
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(0);
                let z = crate::inputs::noise_batch(&info, 1, seed);
                let ys = crate::backend::project_noise(
                    &mut backend,
                    noise.as_mut().map(|b| b as &mut dyn Backend),
                    &z,
                    2,
                );
                match ys.and_then(|ys| {
                    strip_png(ys.iter().flat_map(crate::imaging::batch_tiles).collect())
                }) {
                    Ok(png) => req.respond(
                        Response::from_data(png).with_header(header("Content-Type", "image/png")),
                    ),
                    Err(e) => req.respond(text(500, &format!("{e:#}"))),
                }
            }
            _ => req.respond(text(404, "not found: try / or /pad")),
        };
        let _ = r;
    }
}

fn stats_now(shared: &Shared, controls: &Controls) -> Stats {
    let mut s = shared.stats.lock().unwrap().clone();
    s.clients = shared.clients.load(Ordering::Relaxed);
    s.steps = controls.steps.load(Ordering::Relaxed);
    s.paper = controls.paper.load(Ordering::Relaxed);
    s.precisions = controls.precisions.clone();
    if let Some(p) = controls.precision() {
        s.precision = p.to_string();
    }
    s
}

fn metrics(s: &Stats) -> String {
    let mut m = String::new();
    let mut g = |name: &str, help: &str, v: f64| {
        m += &format!(
            "# HELP ign_edge_{name} {help}\n# TYPE ign_edge_{name} gauge\nign_edge_{name} {v}\n"
        );
    };
    g(
        "fps",
        "Frames per second shown over the last second.",
        s.fps,
    );
    g(
        "end_to_end_ms",
        "Capture-to-display latency of the last frame, ms.",
        s.e2e_ms,
    );
    g(
        "capture_ms",
        "Mean capture time per frame, ms.",
        s.capture_ms,
    );
    g(
        "preprocess_ms",
        "Mean preprocessing time per frame, ms.",
        s.preprocess_ms,
    );
    g(
        "inference_ms",
        "Mean inference time per frame (f applied k times), ms.",
        s.inference_ms,
    );
    g(
        "display_ms",
        "Mean display time per frame, ms.",
        s.display_ms,
    );
    g(
        "dropped_frames",
        "Frames dropped so far (capture and display).",
        s.dropped as f64,
    );
    g("frames", "Frames shown so far.", s.frames as f64);
    g(
        "stream_clients",
        "Connected MJPEG clients.",
        s.clients as f64,
    );
    g("steps", "Applications of f per frame.", s.steps as f64);
    m
}

/// Write the MJPEG stream: the newest frame each time one arrives, until the client leaves.
fn stream(mut w: Box<dyn Write + Send>, shared: &Shared) {
    let head = "HTTP/1.1 200 OK\r\nContent-Type: multipart/x-mixed-replace; boundary=frame\r\nCache-Control: no-cache\r\nConnection: close\r\n\r\n";
    if w.write_all(head.as_bytes())
        .and_then(|_| w.flush())
        .is_err()
    {
        return;
    }
    let mut last: Option<u64> = None;
    loop {
        let jpeg = {
            let mut l = shared.latest.lock().unwrap();
            let deadline = Instant::now() + Duration::from_secs(1);
            while l.seq == last
                && !shared.closed.load(Ordering::Relaxed)
                && Instant::now() < deadline
            {
                l = shared
                    .fresh
                    .wait_timeout(l, Duration::from_millis(250))
                    .unwrap()
                    .0;
            }
            if shared.closed.load(Ordering::Relaxed) {
                return;
            }
            if l.seq == last {
                continue;
            }
            last = l.seq;
            l.jpeg.clone()
        };
        let part = format!(
            "--frame\r\nContent-Type: image/jpeg\r\nContent-Length: {}\r\n\r\n",
            jpeg.len()
        );
        let ok = w
            .write_all(part.as_bytes())
            .and_then(|_| w.write_all(&jpeg))
            .and_then(|_| w.write_all(b"\r\n"))
            .and_then(|_| w.flush());
        if ok.is_err() {
            return;
        }
    }
}

impl Sink for HttpSink {
    fn describe(&self) -> String {
        format!("http http://{}/", self.addr)
    }

    fn size(&self) -> (u32, u32) {
        self.size
    }

    fn status(&mut self, hud: &Hud) {
        let mut s = self.shared.stats.lock().unwrap();
        s.fps = hud.fps;
        s.capture_ms = hud.capture_ms;
        s.preprocess_ms = hud.preprocess_ms;
        s.inference_ms = hud.inference_ms;
        s.display_ms = hud.display_ms;
        s.e2e_ms = hud.e2e_ms;
        s.dropped = hud.dropped;
    }

    fn show(&mut self, canvas: &RgbImage, seq: u64) -> Result<()> {
        self.shared.stats.lock().unwrap().frames += 1;
        // Encode only for someone: with no stream client the loop pays nothing.
        if self.shared.clients.load(Ordering::Relaxed) == 0 {
            return Ok(());
        }
        let mut jpeg = Vec::with_capacity(32 * 1024);
        image::codecs::jpeg::JpegEncoder::new_with_quality(&mut jpeg, 80).encode_image(canvas)?;
        let mut l = self.shared.latest.lock().unwrap();
        l.seq = Some(seq);
        l.jpeg = Arc::new(jpeg);
        drop(l);
        self.shared.fresh.notify_all();
        Ok(())
    }

    fn finish(&mut self) -> Result<()> {
        self.shared.closed.store(true, Ordering::Relaxed);
        self.shared.fresh.notify_all();
        self.server.unblock();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        Ok(())
    }
}
