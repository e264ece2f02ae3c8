//! `run` as a plain configuration and the function that runs it: what `ign-edge run` parses
//! its command line into and what `ign-edge service` builds from its TOML file, so that both
//! run the same code (docs/ARCHITECTURE.md, "Crates and layers").

use anyhow::{bail, Result};
use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use crate::app::events::EventsConfig;
use crate::app::model_spec::ModelSpec;
use crate::backend::select::{BackendOptions, Opened};
use crate::backend::Backend;
use crate::model::{Model, ModelInfo, Precision};
use crate::pipeline::{self, preprocess::Preprocess, preprocess::Rect, sink, source, Summary};

/// The live loop's settings: model, backend, source, sinks, steps, the web page's token,
/// camera and canvas options (the options of `ign-edge run`, documented there).
#[derive(Debug, Clone)]
pub struct RunConfig {
    pub model: ModelSpec,
    pub backend: BackendOptions,
    /// Frame source (default: test, or the board profile's).
    pub source: Option<String>,
    /// Display sink, repeat for several (default: null, or the board profile's).
    pub sinks: Vec<String>,
    /// Board profile whose defaults (source, sink, precision, threads, cores) fill what is not
    /// given: rpi4, rpi5, rk3588, auto (from /proc/device-tree/model) or a board.toml.
    pub board: Option<String>,
    /// http sink: require this token on every request (?token=... or Authorization: Bearer).
    /// Visible in `ps`: prefer --http-token-file or the IGN_EDGE_HTTP_TOKEN variable.
    pub http_token: Option<String>,
    /// http sink: read the token from this file's first line (keep it mode 0640 or tighter).
    pub http_token_file: Option<PathBuf>,
    /// http sink: most MJPEG stream clients at once (then 503).
    pub http_max_clients: usize,
    /// http sink: names besides this machine's that `Host` may carry (a reverse proxy's).
    pub http_allow_hosts: Vec<String>,
    /// Applications of f per frame (2 or more adds an f^k panel).
    pub steps: usize,
    /// Stop after N frames (default: run until the source ends or Ctrl-C).
    pub frames: Option<u64>,
    /// Start files and folders again at their end.
    pub looping: bool,
    /// Dark ink on white paper: invert and stretch so a drawing looks like the training data.
    pub paper: bool,
    /// Region of the frame fed to the model, x,y,w,h in pixels (default: centered square).
    pub roi: Option<Rect>,
    /// Canvas size for png/gif/null sinks, WxH.
    pub size: String,
    /// png sink: write every Nth frame.
    pub every: u64,
    /// fb sink on a plain file: WxH:bpp (16, 24 or 32).
    pub fb_geometry: Option<String>,
    /// Frame rate of the test source (0: as fast as the loop takes them).
    pub fps: f64,
    /// Camera resolution for v4l2 and rpicam, WxH.
    pub camera_size: String,
    /// Camera frame rate for v4l2 and rpicam (0: the camera's default; rpicam: 30).
    pub camera_fps: f64,
    /// Camera pixel format for v4l2.
    pub camera_format: source::CameraFormat,
    /// Write the summary as JSON.
    pub json: Option<PathBuf>,
    /// Pin to these CPU cores: all, big (e.g. RK3588's Cortex-A76 4-7), little, or a list.
    pub cores: Option<String>,
    /// Score each frame against the model's scene and show camera | f | heatmap.
    pub anomaly: bool,
    /// With `anomaly`: overrides the model's calibrated threshold.
    pub threshold: Option<f32>,
    /// With `anomaly`: overrides the model's score.
    pub score: Option<crate::anomaly::ScoreKind>,
    /// With `anomaly`: events when the score crosses the threshold, and where they go.
    pub events: EventsConfig,
}

impl Default for RunConfig {
    /// The defaults of `ign-edge run` and of the service (the command line takes its own from
    /// here).
    fn default() -> Self {
        RunConfig {
            model: ModelSpec::default(),
            backend: BackendOptions::default(),
            source: None,
            sinks: Vec::new(),
            board: None,
            http_token: None,
            http_token_file: None,
            http_max_clients: 8,
            http_allow_hosts: Vec::new(),
            steps: 1,
            frames: None,
            looping: false,
            paper: false,
            roi: None,
            size: "480x200".into(),
            every: 1,
            fb_geometry: None,
            fps: 30.0,
            camera_size: "640x480".into(),
            camera_fps: 0.0,
            camera_format: source::CameraFormat::default(),
            json: None,
            cores: None,
            anomaly: false,
            threshold: None,
            score: None,
            events: EventsConfig::default(),
        }
    }
}

/// Whether a `--sink` spec names the web page (`http` or `http:addr:port`).
fn is_web(spec: &str) -> bool {
    spec == "http" || spec.starts_with("http:")
}

/// `WxH` (`--size`, `--camera-size`) as `(width, height)`.
pub fn parse_size(s: &str) -> Result<(u32, u32)> {
    let (w, h) = s
        .split_once('x')
        .ok_or_else(|| anyhow::anyhow!("{s}: expected WxH, e.g. 640x360"))?;
    Ok((w.trim().parse()?, h.trim().parse()?))
}

impl RunConfig {
    /// Check the settings and fill what is not given, once: the board profile's defaults
    /// (model, backend, source, sink, cores), then a `test` source and a `null` sink.
    pub fn resolve_defaults(&mut self) -> Result<()> {
        if self.steps == 0 {
            bail!("--steps must be at least 1");
        }
        if let Some(name) = &self.board {
            let b = crate::board::load(name)?;
            log::info!("board {}: {}", b.name, b.description);
            self.model.apply_board(&b);
            crate::app::model_spec::apply_board_to_backend(&mut self.backend, &b);
            self.source.get_or_insert(b.defaults.source.clone());
            if self.sinks.is_empty() {
                self.sinks.push(b.defaults.sink.clone());
            }
            self.cores.get_or_insert(b.defaults.cores.clone());
        }
        self.source.get_or_insert_with(|| "test".into());
        if self.sinks.is_empty() {
            self.sinks.push("null".into());
        }
        Ok(())
    }

    /// Whether a web page is among the sinks (its controls can then switch the variants
    /// beside the model while running).
    fn web(&self) -> bool {
        self.sinks.iter().any(|s| is_web(s))
    }

    /// The web page's address (`http:[addr:port]` among the sinks: `""` for the default),
    /// and the sinks proper; more than one page is refused.
    fn split_sinks(&self) -> Result<(Option<String>, Vec<String>)> {
        let (web, sinks): (Vec<&String>, Vec<&String>) = self.sinks.iter().partition(|s| is_web(s));
        if web.len() > 1 {
            bail!("give --sink http: once: one web page serves every browser");
        }
        let addr = web
            .first()
            .map(|s| s.split_once(':').map_or("", |(_, a)| a).to_string());
        let mut sinks: Vec<String> = sinks.into_iter().cloned().collect();
        if sinks.is_empty() {
            sinks.push("null".into());
        }
        Ok((addr, sinks))
    }

    fn sink_options(&self) -> Result<sink::SinkOptions> {
        Ok(sink::SinkOptions {
            size: parse_size(&self.size)?,
            every: self.every,
            fb_geometry: self
                .fb_geometry
                .as_deref()
                .map(sink::parse_geometry)
                .transpose()?,
        })
    }

    fn source_options(&self, stop: &Arc<AtomicBool>) -> Result<source::SourceOptions> {
        Ok(source::SourceOptions {
            looping: self.looping,
            fps: self.fps,
            camera_size: Some(parse_size(&self.camera_size)?),
            camera_fps: self.camera_fps,
            camera_format: self.camera_format,
            stop: Some(stop.clone()),
        })
    }
}

/// The ONNX model the web pad runs on its own CPU backend (beside a .rknn one).
fn web_model(opened: &Opened, info: &ModelInfo, web: bool) -> Result<Option<Model>> {
    Ok(match (&opened.model, web) {
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
    })
}

/// The precisions the web page may switch between: the model's own, and the fp16 and int8
/// variant files beside an fp32 model.
fn precision_variants(
    opened: &Opened,
    info: &ModelInfo,
    web: bool,
) -> Result<Vec<(Precision, Option<Model>)>> {
    let mut variants = vec![(info.precision, None)];
    if let Some(model) = opened.model.as_ref().filter(|_| web) {
        if model.info.precision == Precision::Fp32 && model.info.path.exists() {
            for p in [Precision::Fp16, Precision::Int8] {
                let vp = crate::quantize::variant_path(&model.info.path, p);
                if vp.exists() {
                    variants.push((p, Some(Model::load(&vp)?)));
                }
            }
        }
    }
    Ok(variants)
}

/// Run the live loop as `config` says, until the source ends, the frames are shown or a
/// signal stops it.
pub fn run(mut config: RunConfig) -> Result<Summary> {
    config.resolve_defaults()?;
    let c = &config;
    let web = c.web();
    // Checked before anything loads: an empty or unreadable token ends the run at once.
    let http_token = if web {
        crate::web::resolve_token(
            c.http_token.as_deref(),
            c.http_token_file.as_deref(),
            std::env::var_os(crate::web::TOKEN_ENV),
        )?
    } else {
        None
    };
    if let Some(spec) = &c.cores {
        let cores = crate::cores::pin_spec(spec)?;
        log::info!("pinned to cores {cores:?}");
    }
    let opened = c.model.open(&c.backend)?;
    let info = opened.info.clone();
    let name = info
        .path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    let anomaly = anomaly_settings(c, &info)?;
    let events = c
        .events
        .start(c.anomaly, anomaly.and_then(|a| a.threshold), &name)?;
    // Until the source is open, a signal ends the process (opening it may wait for a
    // camera or a pipe); from then on it asks the loop to stop.
    let stop = Arc::new(AtomicBool::new(false));
    let source_spec = c.source.clone().unwrap_or_else(|| "test".into());
    let src = source::open(&source_spec, &c.source_options(&stop)?)?;
    // From here a signal asks the loop to stop (before the sinks print where they serve
    // and "running" is printed, so whoever waits for those lines can stop it cleanly).
    crate::signals::stop_on_signals(&stop)?;
    let variants = precision_variants(&opened, &info, web)?;
    let controls = web.then(|| {
        pipeline::controls::Controls::new(c.steps, c.paper, variants.iter().map(|v| v.0).collect())
    });
    let (web_addr, sink_specs) = c.split_sinks()?;
    let snk = sink::open_all(&sink_specs, &c.sink_options()?)?;
    let page = match (&web_addr, &controls) {
        (Some(addr), Some(ctl)) => {
            let status = events.as_ref().map(|e| e.status());
            Some(start_page(c, addr, &opened, ctl, http_token, status)?)
        }
        _ => None,
    };
    let watchers: Vec<Arc<dyn pipeline::feed::Watcher>> = page
        .iter()
        .map(|p| p.watcher())
        .chain(events.iter().map(|e| e.watcher()))
        .collect();
    let pre = Preprocess {
        channels: info.channels,
        height: info.height,
        width: info.width,
        roi: c.roi,
        paper: c.paper,
    };
    let mut shown_on = snk.describe();
    for extra in page
        .iter()
        .map(|p| p.describe())
        .chain(events.iter().map(|e| e.describe()))
    {
        shown_on = format!("{shown_on} + {extra}");
    }
    log::info!(
        "running {} -> {} ({}, k={}){}",
        src.describe(),
        shown_on,
        name,
        c.steps,
        c.frames
            .map(|n| format!(", {n} frames"))
            .unwrap_or_else(|| ", Ctrl-C to stop".into())
    );
    let opts = pipeline::LoopOptions {
        frames: c.frames,
        steps: c.steps,
        stop: stop.clone(),
        model_name: name,
        precision: info.precision.to_string(),
        controls,
        watchers,
        anomaly,
    };
    let result = run_variants(c, opened.backend, &variants, src, &pre, snk, &opts);
    // the event under way ends with the loop; its last phases get a bounded grace
    if let Some(mut e) = events {
        e.stop();
    }
    drop(page); // the page stops serving once the loop has ended
    result
}

/// The web page at `addr`, serving the loop's stream and figures, with the pad on its own
/// copy of the ONNX model (beside a `.rknn` one too) and the loop's `controls`.
fn start_page(
    c: &RunConfig,
    addr: &str,
    opened: &Opened,
    controls: &Arc<pipeline::controls::Controls>,
    token: Option<String>,
    events: Option<crate::events::EventsStatus>,
) -> Result<crate::web::WebServer> {
    let model = web_model(opened, &opened.info, true)?.expect("loaded for the web page");
    let noise_model = c.model.noise_variant(&model)?;
    crate::web::WebServer::start(
        addr,
        crate::web::WebOptions {
            model,
            noise_model,
            token,
            max_clients: c.http_max_clients.max(1),
            controls: controls.clone(),
            allow_hosts: c.http_allow_hosts.clone(),
            events,
        },
    )
}

/// The loop on `backend`, or, when the page may switch between precision `variants`, on a
/// backend that switches between them.
fn run_variants(
    c: &RunConfig,
    backend: Box<dyn Backend>,
    variants: &[(Precision, Option<Model>)],
    src: Box<dyn source::Source>,
    pre: &Preprocess,
    snk: Box<dyn sink::Sink>,
    opts: &pipeline::LoopOptions,
) -> Result<Summary> {
    match &opts.controls {
        Some(ctl) if variants.len() > 1 => {
            let mut backends = vec![backend];
            for m in variants[1..].iter().filter_map(|v| v.1.as_ref()) {
                backends.push(Box::new(c.model.backend(m)?) as Box<dyn Backend>);
            }
            let mut switch = pipeline::controls::SwitchBackend {
                backends,
                controls: ctl.clone(),
            };
            pipeline::run_loop(src, &mut switch, pre, snk, opts)
        }
        _ => {
            let mut backend = backend;
            pipeline::run_loop(src, backend.as_mut(), pre, snk, opts)
        }
    }
}

/// What `--anomaly` scores with: the model's calibrated score and threshold, as the options
/// override them; a warning when there is no threshold (scores, no verdicts).
fn anomaly_settings(c: &RunConfig, info: &ModelInfo) -> Result<Option<pipeline::AnomalySettings>> {
    if !c.anomaly {
        if c.threshold.is_some() || c.score.is_some() {
            bail!("--threshold and --score apply to --anomaly: add --anomaly");
        }
        return Ok(None);
    }
    let (threshold, _, kind) = crate::app::score::calibration(c.threshold, c.score, info)?;
    if kind.applications() > c.steps {
        bail!("the {} score needs f(f(x)): add --steps 2", kind.as_str());
    }
    if threshold.is_none() {
        log::warn!(
            "{}: no anomaly threshold (ign-train export calibrates one for scene models): scores without verdicts; give --threshold",
            info.path.display()
        );
    }
    Ok(Some(pipeline::AnomalySettings { kind, threshold }))
}
