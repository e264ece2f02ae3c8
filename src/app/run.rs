//! `run` as a plain configuration and the function that runs it: what `ign-edge run` parses
//! its command line into and what `ign-edge service` builds from its TOML file, so that both
//! run the same code (docs/ARCHITECTURE.md, "Crates and layers").

use anyhow::{bail, Result};
use clap::Args;
use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use crate::app::model_spec::ModelSpec;
use crate::backend::select::{BackendArgs, Opened};
use crate::backend::Backend;
use crate::model::{Model, ModelInfo, Precision};
use crate::pipeline::{self, preprocess::Preprocess, preprocess::Rect, sink, source, Summary};

/// The live loop's settings: model, backend, source, sinks, steps, the web page's token,
/// camera and canvas options (the options of `ign-edge run`, documented there).
#[derive(Args, Debug, Clone)]
pub struct RunConfig {
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

impl Default for RunConfig {
    /// The command line's defaults (a test checks that they agree).
    fn default() -> Self {
        RunConfig {
            model: ModelSpec::default(),
            backend: BackendArgs::default(),
            source: None,
            sinks: Vec::new(),
            board: None,
            http_token: None,
            http_token_file: None,
            http_max_clients: 8,
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
        }
    }
}

fn parse_size(s: &str) -> Result<(u32, u32)> {
    let (w, h) = s
        .split_once('x')
        .ok_or_else(|| anyhow::anyhow!("{s}: expected --size WxH, e.g. 640x360"))?;
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
            self.backend.apply_board(&b);
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
        self.sinks.iter().any(|s| s.starts_with("http"))
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
        sink::http::resolve_token(
            c.http_token.as_deref(),
            c.http_token_file.as_deref(),
            std::env::var_os(sink::http::TOKEN_ENV),
        )?
    } else {
        None
    };
    if let Some(spec) = &c.cores {
        let cores = crate::cores::pin_spec(spec)?;
        log::info!("pinned to cores {cores:?}");
    }
    let opened = c.backend.open(&c.model)?;
    let info = opened.info.clone();
    // Until the source is open, a signal ends the process (opening it may wait for a
    // camera or a pipe); from then on it asks the loop to stop.
    let stop = Arc::new(AtomicBool::new(false));
    let source_spec = c.source.clone().unwrap_or_else(|| "test".into());
    let src = source::open(&source_spec, &c.source_options(&stop)?)?;
    // From here a signal asks the loop to stop (before the sinks print where they serve
    // and "running" is printed, so whoever waits for those lines can stop it cleanly).
    crate::signals::stop_on_signals(&stop)?;
    let web_model = web_model(&opened, &info, web)?;
    let variants = precision_variants(&opened, &info, web)?;
    let controls = web.then(|| {
        pipeline::controls::Controls::new(c.steps, c.paper, variants.iter().map(|v| v.0).collect())
    });
    let web_noise = match &web_model {
        Some(m) => c.model.noise_variant(m)?,
        None => None,
    };
    let sink_opts = sink::SinkOptions {
        size: parse_size(&c.size)?,
        every: c.every,
        fb_geometry: c
            .fb_geometry
            .as_deref()
            .map(sink::parse_geometry)
            .transpose()?,
        http: controls.as_ref().map(|ctl| sink::http::HttpOptions {
            model: web_model.clone().expect("loaded for the web sink"),
            noise_model: web_noise.clone(),
            token: http_token.clone(),
            max_clients: c.http_max_clients.max(1),
            controls: ctl.clone(),
        }),
    };
    let snk = sink::open_all(&c.sinks, &sink_opts)?;
    let pre = Preprocess {
        channels: info.channels,
        height: info.height,
        width: info.width,
        roi: c.roi,
        paper: c.paper,
    };
    let name = info
        .path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    log::info!(
        "running {} -> {} ({}, k={}){}",
        src.describe(),
        snk.describe(),
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
    };
    let mut backend = opened.backend;
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
            pipeline::run_loop(src, &mut switch, &pre, snk, &opts)
        }
        _ => pipeline::run_loop(src, backend.as_mut(), &pre, snk, &opts),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Wrap {
        #[command(flatten)]
        config: RunConfig,
    }

    /// `RunConfig::default()` (what the service starts from) is what the command line gives
    /// with no option.
    #[test]
    fn defaults_agree_with_the_command_line() {
        let parsed = Wrap::try_parse_from(["run"]).unwrap().config;
        assert_eq!(format!("{:?}", RunConfig::default()), format!("{parsed:?}"));
    }
}
