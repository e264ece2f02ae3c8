//! `ign-edge run`: parses into [`crate::app::run::RunConfig`] and runs it.

use anyhow::Result;
use clap::Args;
use std::path::PathBuf;

use super::args::{choice, BackendArgs, ModelArgs};
use crate::app::events::EventsConfig;
use crate::app::run::RunConfig;
use crate::events::SnapshotFormat;
use crate::pipeline::preprocess::Rect;
use crate::pipeline::source::CameraFormat;

/// The live loop: camera (or file) -> projection -> display, with an overlay.
///
/// Reads frames from a source, projects each onto the model's manifold (f, and f^k with
/// --steps), shows camera | f | f^k with an overlay on a sink. Ctrl-C stops it and prints a
/// summary (frames, fps, end-to-end latency, drops).
///
/// The sources and sinks of this build are listed under --source and --sink below.
///
/// Examples:
///   ign-edge run --source test --sink gif:live.gif --frames 60
///   ign-edge run --source file:drawings/ --paper --sink png:out --steps 2
///   ign-edge run --source test --sink fb:/dev/fb0
///   ign-edge run --source v4l2:/dev/video0 --camera-size 640x480 --paper --sink fb:/dev/fb0
///   ign-edge run --source rpicam --sink fb:/dev/fb0 --steps 2
///   ign-edge run --source 'gst:libcamerasrc ! video/x-raw,width=640,height=480' --sink drm
///   ign-edge run --source v4l2:/dev/video0 --sink fb:/dev/fb0 --sink http:0.0.0.0:8080 --http-token-file /etc/ign-edge/http-token
///   ign-edge run --source v4l2:/dev/video0 --model scene.onnx --anomaly --events jsonl:events.jsonl --events webhook:http://192.168.1.10:1880/ign --events-dir /var/lib/ign-edge/events
#[derive(Args, Debug)]
#[command(verbatim_doc_comment)]
pub struct RunCmd {
    #[command(flatten)]
    pub args: RunArgs,
}

impl RunCmd {
    pub fn run(self) -> Result<()> {
        let config = RunConfig::from(self.args);
        let json = config.json.clone();
        let summary = crate::app::run::run(config)?;
        eprintln!("{}", summary.line());
        if let Some(j) = &json {
            crate::fsio::atomic_write(j, serde_json::to_string_pretty(&summary)?.as_bytes())?;
        }
        Ok(())
    }
}

/// The options of `ign-edge run`; defaults from [`RunConfig::default`], which the service
/// starts from too.
#[derive(Args, Debug, Clone)]
pub struct RunArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    #[command(flatten)]
    pub backend: BackendArgs,
    /// Frame source (default: test, or the board profile's).
    #[arg(long, long_help = source_help())]
    pub source: Option<String>,
    /// Display sink, repeat for several (default: null, or the board profile's); http: for
    /// the web page.
    #[arg(long = "sink", long_help = sink_help())]
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
    #[arg(long, default_value_t = RunConfig::default().http_max_clients)]
    pub http_max_clients: usize,
    /// http sink: a name besides this machine's (localhost, its hostname, hostname.local, IP
    /// addresses) that browsers may use to reach it, e.g. a reverse proxy's; repeat for
    /// several. Other names get 403, which stops DNS-rebinding pages.
    #[arg(long = "http-allow-host", value_name = "NAME")]
    pub http_allow_hosts: Vec<String>,
    /// Applications of f per frame (2 or more adds an f^k panel).
    #[arg(long, short = 'k', default_value_t = RunConfig::default().steps)]
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
    #[arg(long, default_value_t = RunConfig::default().size)]
    pub size: String,
    /// png sink: write every Nth frame.
    #[arg(long, default_value_t = RunConfig::default().every)]
    pub every: u64,
    /// fb sink on a plain file: WxH:bpp (16, 24 or 32).
    #[arg(long)]
    pub fb_geometry: Option<String>,
    /// Frame rate of the test source (0: as fast as the loop takes them).
    #[arg(long, default_value_t = RunConfig::default().fps)]
    pub fps: f64,
    /// Camera resolution for v4l2 and rpicam, WxH.
    #[arg(long, default_value_t = RunConfig::default().camera_size)]
    pub camera_size: String,
    /// Camera frame rate for v4l2 and rpicam (0: the camera's default; rpicam: 30).
    #[arg(long, default_value_t = RunConfig::default().camera_fps)]
    pub camera_fps: f64,
    /// Camera pixel format for v4l2.
    #[arg(long, default_value = "auto", value_parser = choice::<CameraFormat>(&CameraFormat::NAMES))]
    pub camera_format: CameraFormat,
    /// Write the summary as JSON.
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// Pin to these CPU cores: all, big (e.g. RK3588's Cortex-A76 4-7), little, or a list.
    #[arg(long)]
    pub cores: Option<String>,
    /// Score each frame against the scene the model learnt (a scene model: `ign-train train
    /// --recipe scene`) and show camera | f | heatmap, with the score in the overlay,
    /// /stats.json and /metrics.
    #[arg(long)]
    pub anomaly: bool,
    /// With --anomaly: a score above this is anomalous (default: the model's calibrated one).
    #[arg(long)]
    pub threshold: Option<f32>,
    /// With --anomaly: smooth-max (default), mean, idem or sum (idem and sum need --steps 2).
    #[arg(long, value_parser = choice::<crate::anomaly::ScoreKind>(&crate::anomaly::ScoreKind::NAMES))]
    pub score: Option<crate::anomaly::ScoreKind>,
    #[command(flatten)]
    pub events: EventsArgs,
}

/// The events' options (`--events` and the rest): what makes an event and where it goes.
#[derive(Args, Debug, Clone)]
pub struct EventsArgs {
    /// With --anomaly: send events (the score above the threshold for --event-min-seconds,
    /// until it stays below it for --event-clear-seconds) to this output; repeat for several.
    #[arg(long = "events", value_name = "SPEC", long_help = events_help())]
    pub outputs: Vec<String>,
    /// Keep each event's snapshot (camera | f | heatmap) in this folder.
    #[arg(long, value_name = "DIR")]
    pub events_dir: Option<PathBuf>,
    /// Most megabytes of snapshots in --events-dir; the oldest are deleted first.
    #[arg(long, value_name = "N", default_value_t = EventsConfig::default().max_mb)]
    pub events_max_mb: u64,
    /// How snapshots are encoded (none: events without pictures).
    #[arg(long, default_value = "jpeg", value_parser = choice::<SnapshotFormat>(SnapshotFormat::NAMES))]
    pub events_snapshot: SnapshotFormat,
    /// Seconds the score must stay above the threshold before an event starts.
    #[arg(long, value_name = "S", default_value_t = EventsConfig::default().min_seconds)]
    pub event_min_seconds: f64,
    /// Seconds the score must stay below the clear level before the event ends.
    #[arg(long, value_name = "S", default_value_t = EventsConfig::default().clear_seconds)]
    pub event_clear_seconds: f64,
    /// The clear level is threshold x (1 - this): a score that flickers around the threshold
    /// stays one event.
    #[arg(long, value_name = "F", default_value_t = EventsConfig::default().hysteresis)]
    pub event_hysteresis: f32,
    /// Longest a network output (webhook) waits for an answer, seconds; then it retries with
    /// backoff.
    #[arg(long, value_name = "S", default_value_t = EventsConfig::default().timeout)]
    pub events_timeout: f64,
}

impl From<EventsArgs> for EventsConfig {
    fn from(a: EventsArgs) -> Self {
        EventsConfig {
            outputs: a.outputs,
            dir: a.events_dir,
            max_mb: a.events_max_mb,
            snapshot: a.events_snapshot,
            min_seconds: a.event_min_seconds,
            clear_seconds: a.event_clear_seconds,
            hysteresis: a.event_hysteresis,
            timeout: a.events_timeout,
        }
    }
}

/// `--events`' long help: the outputs of this build, from their table, and an example.
fn events_help() -> String {
    format!(
        "With --anomaly: send events to this output, repeat for several. An event starts when \
         the score stays above the threshold for --event-min-seconds and ends when it stays \
         below threshold x (1 - --event-hysteresis) for --event-clear-seconds; each phase \
         (start, end) goes out as JSON (id, start, end, peak_score, threshold, peak [x, y], \
         model, snapshot), a start with its snapshot. An output that is down or slow never \
         slows the loop: each has its own thread, a bounded queue, retries with backoff, and \
         counters in /stats.json and /metrics.\n{}\n\nExample:\n  ign-edge run --source \
         v4l2:/dev/video0 --model scene.onnx --anomaly --events jsonl:events.jsonl --events \
         webhook:http://192.168.1.10:1880/ign --events-dir events --events-max-mb 200",
        crate::events::sink::help()
    )
}

/// `--source`'s long help: the sources of this build, from their table.
fn source_help() -> String {
    format!(
        "Frame source (default: test, or the board profile's):\n{}",
        crate::pipeline::source::help()
    )
}

/// `--sink`'s long help: the sinks of this build, from their table, and the web page.
fn sink_help() -> String {
    format!(
        "Display sink, repeat for several (default: null, or the board profile's):\n{}\n  {:<38} {}",
        crate::pipeline::sink::help(),
        "http[:addr:port]",
        "the web page: stream, controls, drawing pad (default 127.0.0.1:8080)"
    )
}

impl From<RunArgs> for RunConfig {
    fn from(a: RunArgs) -> Self {
        RunConfig {
            model: a.model.into(),
            backend: a.backend.into(),
            source: a.source,
            sinks: a.sinks,
            board: a.board,
            http_token: a.http_token,
            http_token_file: a.http_token_file,
            http_max_clients: a.http_max_clients,
            http_allow_hosts: a.http_allow_hosts,
            steps: a.steps,
            frames: a.frames,
            looping: a.looping,
            paper: a.paper,
            roi: a.roi,
            size: a.size,
            every: a.every,
            fb_geometry: a.fb_geometry,
            fps: a.fps,
            camera_size: a.camera_size,
            camera_fps: a.camera_fps,
            camera_format: a.camera_format,
            json: a.json,
            cores: a.cores,
            anomaly: a.anomaly,
            threshold: a.threshold,
            score: a.score,
            events: a.events.into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Wrap {
        #[command(flatten)]
        args: RunArgs,
    }

    /// `RunConfig::default()` (what the service starts from) is what the command line gives
    /// with no option.
    #[test]
    fn defaults_agree_with_the_command_line() {
        let parsed = RunConfig::from(Wrap::try_parse_from(["run"]).unwrap().args);
        assert_eq!(format!("{:?}", RunConfig::default()), format!("{parsed:?}"));
    }
}
