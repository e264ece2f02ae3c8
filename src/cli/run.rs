//! `ign-edge run`

use anyhow::{bail, Result};
use clap::Args;
use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use crate::app::model_spec::ModelSpec;
use crate::backend::select::BackendArgs;
use crate::backend::Backend;
use crate::pipeline::{self, preprocess::Preprocess, preprocess::Rect, sink, source};

/// The live loop: camera (or file) -> projection -> display, with an overlay.
///
/// Reads frames from a source, projects each onto the model's manifold (f, and f^k with
/// --steps), shows camera | f | f^k with an overlay on a sink. Ctrl-C stops it and prints a
/// summary (frames, fps, end-to-end latency, drops).
///
/// Sources: test (a synthetic moving scene), file:<image|folder|video.y4m>, y4m:- (stdin,
/// e.g. `ffmpeg ... -f yuv4mpegpipe -`), v4l2:/dev/videoN (USB webcams: YUYV or MJPEG; if the
/// camera goes away the loop waits for it), rpicam[:<extra rpicam-vid args>] (Pi camera modules),
/// gst:<pipeline> (any GStreamer source, gst-launch syntax without the sink; feature gstreamer).
/// Sinks: null, png:<dir>, gif:<file.gif>, fb[:/dev/fbN] (--fb-geometry WxH:bpp for a file),
/// drm[:/dev/dri/cardN] (KMS, where /dev/fb0 is absent: Pi 5, RK3588), lcd:/dev/spidevB.C[,...]
/// (SPI LCDs, ST7789/ILI9341, feature lcd; options in `src/pipeline/sink/lcd.rs`),
/// http[:addr:port] (a web page with the stream, controls and a drawing pad; default
/// 127.0.0.1:8080). Give --sink several times to show on several.
///
/// Examples:
///   ign-edge run --source test --sink gif:live.gif --frames 60
///   ign-edge run --source file:drawings/ --paper --sink png:out --steps 2
///   ign-edge run --source test --sink fb:/dev/fb0
///   ign-edge run --source v4l2:/dev/video0 --camera-size 640x480 --paper --sink fb:/dev/fb0
///   ign-edge run --source rpicam --sink fb:/dev/fb0 --steps 2
///   ign-edge run --source 'gst:libcamerasrc ! video/x-raw,width=640,height=480' --sink drm
///   ign-edge run --source v4l2:/dev/video0 --sink fb:/dev/fb0 --sink http:0.0.0.0:8080 --http-token-file /etc/ign-edge/http-token
#[derive(Args, Debug)]
#[command(verbatim_doc_comment)]
pub struct RunCmd {
    #[command(flatten)]
    pub model: ModelSpec,
    #[command(flatten)]
    pub backend: BackendArgs,
    /// Frame source (default: test, or the board profile's).
    #[arg(long)]
    pub source: Option<String>,
    /// Display sink, repeat for several (default: null, or the board profile's).
    #[arg(long = "sink")]
    pub sinks: Vec<String>,
    /// Board profile whose defaults (source, sink, precision, threads, cores) fill what is not
    /// given: rpi4, rpi5, rk3588, auto (from /proc/device-tree/model) or a board.toml.
    #[arg(long)]
    pub board: Option<String>,
    /// http sink: require this token on every request (?token=... or Authorization: Bearer).
    /// Visible in `ps`: prefer --http-token-file or the IGN_EDGE_HTTP_TOKEN variable.
    #[arg(long)]
    pub http_token: Option<String>,
    /// http sink: read the token from this file's first line (keep it mode 0640 or tighter).
    #[arg(long, conflicts_with = "http_token")]
    pub http_token_file: Option<PathBuf>,
    /// http sink: most MJPEG stream clients at once (then 503).
    #[arg(long, default_value_t = 8)]
    pub http_max_clients: usize,
    /// Applications of f per frame (2 or more adds an f^k panel).
    #[arg(long, short = 'k', default_value_t = 1)]
    pub steps: usize,
    /// Stop after N frames (default: run until the source ends or Ctrl-C).
    #[arg(long)]
    pub frames: Option<u64>,
    /// Start files and folders again at their end.
    #[arg(long = "loop")]
    pub looping: bool,
    /// Dark ink on white paper: invert and stretch so a drawing looks like the training data.
    #[arg(long)]
    pub paper: bool,
    /// Region of the frame fed to the model, x,y,w,h in pixels (default: centered square).
    #[arg(long)]
    pub roi: Option<Rect>,
    /// Canvas size for png/gif/null sinks, WxH.
    #[arg(long, default_value = "480x200")]
    pub size: String,
    /// png sink: write every Nth frame.
    #[arg(long, default_value_t = 1)]
    pub every: u64,
    /// fb sink on a plain file: WxH:bpp (16, 24 or 32).
    #[arg(long)]
    pub fb_geometry: Option<String>,
    /// Frame rate of the test source (0: as fast as the loop takes them).
    #[arg(long, default_value_t = 30.0)]
    pub fps: f64,
    /// Camera resolution for v4l2 and rpicam, WxH.
    #[arg(long, default_value = "640x480")]
    pub camera_size: String,
    /// Camera frame rate for v4l2 and rpicam (0: the camera's default; rpicam: 30).
    #[arg(long, default_value_t = 0.0)]
    pub camera_fps: f64,
    /// Camera pixel format for v4l2.
    #[arg(long, value_enum, default_value_t)]
    pub camera_format: source::CameraFormat,
    /// Write the summary as JSON.
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// Pin to these CPU cores: all, big (e.g. RK3588's Cortex-A76 4-7), little, or a list.
    #[arg(long)]
    pub cores: Option<String>,
}

fn parse_size(s: &str) -> Result<(u32, u32)> {
    let (w, h) = s
        .split_once('x')
        .ok_or_else(|| anyhow::anyhow!("{s}: expected --size WxH, e.g. 640x360"))?;
    Ok((w.trim().parse()?, h.trim().parse()?))
}

impl RunCmd {
    pub fn run(mut self) -> Result<()> {
        if self.steps == 0 {
            bail!("--steps must be at least 1");
        }
        if let Some(name) = &self.board {
            let b = crate::board::load(name)?;
            eprintln!("board {}: {}", b.name, b.description);
            self.model.apply_board(&b);
            self.backend.apply_board(&b);
            self.source.get_or_insert(b.defaults.source.clone());
            if self.sinks.is_empty() {
                self.sinks.push(b.defaults.sink.clone());
            }
            self.cores.get_or_insert(b.defaults.cores.clone());
        }
        let source_spec = self.source.clone().unwrap_or_else(|| "test".into());
        if self.sinks.is_empty() {
            self.sinks.push("null".into());
        }
        // With a web page, the variants beside the model can be switched while running.
        let web = self.sinks.iter().any(|s| s.starts_with("http"));
        // Checked before anything loads: an empty or unreadable token ends the run at once.
        let http_token = if web {
            sink::http::resolve_token(
                self.http_token.as_deref(),
                self.http_token_file.as_deref(),
                std::env::var_os(sink::http::TOKEN_ENV),
            )?
        } else {
            None
        };
        if let Some(spec) = &self.cores {
            let cores = crate::cores::pin_spec(spec)?;
            eprintln!("pinned to cores {cores:?}");
        }
        let opened = self.backend.open(&self.model)?;
        let info = opened.info.clone();
        let mut backend = opened.backend;
        // Until the source is open, a signal ends the process (opening it may wait for a
        // camera or a pipe); from then on it asks the loop to stop.
        let stop = Arc::new(AtomicBool::new(false));
        let src = source::open(
            &source_spec,
            &source::SourceOptions {
                looping: self.looping,
                fps: self.fps,
                camera_size: Some(parse_size(&self.camera_size)?),
                camera_fps: self.camera_fps,
                camera_format: self.camera_format,
                stop: Some(stop.clone()),
            },
        )?;
        // From here a signal asks the loop to stop (before the sinks print where they serve
        // and "running" is printed, so whoever waits for those lines can stop it cleanly).
        crate::signals::stop_on_signals(&stop)?;
        // The web pad runs its own CPU backend on the ONNX model (beside a .rknn one).
        let web_model = match (&opened.model, web) {
            (_, false) => None,
            (Some(m), true) => Some(m.clone()),
            (None, true) => {
                let onnx = info.path.with_extension("onnx");
                Some(crate::model::Model::load(&onnx).map_err(|e| {
                    anyhow::anyhow!(
                        "the web sink needs the ONNX model beside {}: {e}",
                        info.path.display()
                    )
                })?)
            }
        };
        let mut variants = vec![(info.precision, None)];
        if let Some(model) = opened.model.as_ref().filter(|_| web) {
            if model.info.precision == crate::model::Precision::Fp32 && model.info.path.exists() {
                for p in [crate::model::Precision::Fp16, crate::model::Precision::Int8] {
                    let vp = crate::quantize::variant_path(&model.info.path, p);
                    if vp.exists() {
                        variants.push((p, Some(crate::model::Model::load(&vp)?)));
                    }
                }
            }
        }
        let controls = web.then(|| {
            sink::http::Controls::new(
                self.steps,
                self.paper,
                variants.iter().map(|v| v.0).collect(),
            )
        });
        let web_noise = match &web_model {
            Some(m) => self.model.noise_variant(m)?,
            None => None,
        };
        let sink_opts = sink::SinkOptions {
            size: parse_size(&self.size)?,
            every: self.every,
            fb_geometry: self
                .fb_geometry
                .as_deref()
                .map(sink::parse_geometry)
                .transpose()?,
            http: controls.as_ref().map(|c| sink::http::HttpOptions {
                model: web_model.clone().expect("loaded for the web sink"),
                noise_model: web_noise.clone(),
                token: http_token.clone(),
                max_clients: self.http_max_clients.max(1),
                controls: c.clone(),
            }),
        };
        let snk = sink::open_all(&self.sinks, &sink_opts)?;
        let pre = Preprocess {
            channels: info.channels,
            height: info.height,
            width: info.width,
            roi: self.roi,
            paper: self.paper,
        };
        let name = info
            .path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        eprintln!(
            "running {} -> {} ({}, k={}){}",
            src.describe(),
            snk.describe(),
            name,
            self.steps,
            self.frames
                .map(|n| format!(", {n} frames"))
                .unwrap_or_else(|| ", Ctrl-C to stop".into())
        );
        let opts = pipeline::LoopOptions {
            frames: self.frames,
            steps: self.steps,
            stop: stop.clone(),
            model_name: name,
            precision: info.precision.to_string(),
            controls,
        };
        let summary = match &opts.controls {
            Some(c) if variants.len() > 1 => {
                let mut backends = vec![backend];
                for m in variants[1..].iter().filter_map(|v| v.1.as_ref()) {
                    backends.push(Box::new(self.model.backend(m)?) as Box<dyn Backend>);
                }
                let mut switch = sink::http::SwitchBackend {
                    backends,
                    controls: c.clone(),
                };
                pipeline::run_loop(src, &mut switch, &pre, snk, &opts)?
            }
            _ => pipeline::run_loop(src, backend.as_mut(), &pre, snk, &opts)?,
        };
        eprintln!("{}", summary.line());
        if let Some(j) = &self.json {
            crate::fsio::atomic_write(j, serde_json::to_string_pretty(&summary)?.as_bytes())?;
        }
        Ok(())
    }
}
