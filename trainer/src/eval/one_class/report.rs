//! The report of `ign-train eval --one-class`: each class's result (`result.json` in its run
//! folder), the means per method and score, the published anchors beside them, the table.

use ign_core::anomaly::ScoreKind;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt::Write;

use super::{Method, OneClassConfig};

/// The version of the `--json` schema.
pub const SCHEMA: u32 = 1;

/// One class trained by one method and scored on the whole test split.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ClassResult {
    /// The normal class.
    pub class: u8,
    pub method: Method,
    /// The training budget in minutes.
    pub minutes: f64,
    /// The steps trained in the budget (all stages).
    pub steps: u64,
    /// The step where the reconstruction warm-up handed over to the IGN terms (the
    /// autoencoder trains on reconstruction in both stages).
    pub warm_up_steps: u64,
    /// The training images of the class.
    pub train_images: usize,
    /// The test images of the class (normal) and of the others (anomalous).
    pub normal: usize,
    pub anomalous: usize,
    /// AUROC by score kind (`mean`, `smooth-max`, `idem`, `sum`).
    pub auroc: BTreeMap<String, f64>,
    /// Seconds spent scoring the test split.
    pub score_seconds: f64,
}

impl ClassResult {
    /// The AUROC of the `kind` score (NaN when it was not measured).
    pub fn auroc_of(&self, kind: ScoreKind) -> f64 {
        self.auroc.get(kind.as_str()).copied().unwrap_or(f64::NAN)
    }
}

/// A published mean AUROC of the one-class protocol.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Anchor {
    pub method: &'static str,
    pub dataset: &'static str,
    pub mean_auroc: f64,
    pub source: &'static str,
}

/// The published figures the report sets beside its means (docs/FIELD-NOTES.md of the
/// shared docs, section 8).
pub const ANCHORS: &[Anchor] = &[
    Anchor {
        method: "Deep SVDD",
        dataset: "MNIST",
        mean_auroc: 0.948,
        source: "Ruff et al. 2018",
    },
    Anchor {
        method: "OCGAN",
        dataset: "MNIST",
        mean_auroc: 0.975,
        source: "Perera et al. 2019",
    },
    Anchor {
        method: "Deep SVDD",
        dataset: "Fashion-MNIST",
        mean_auroc: 0.848,
        source: "as Golan & El-Yaniv 2018 report it",
    },
    Anchor {
        method: "GEOM",
        dataset: "Fashion-MNIST",
        mean_auroc: 0.935,
        source: "Golan & El-Yaniv 2018",
    },
];

/// The project's targets for the mean AUROC (issue 29): MNIST 0.95, Fashion-MNIST 0.90.
pub fn target(dataset: &str) -> Option<f64> {
    match dataset {
        "MNIST" => Some(0.95),
        "Fashion-MNIST" => Some(0.90),
        _ => None,
    }
}

/// The dataset a data path holds, by its name: `Fashion-MNIST`, `MNIST`, or the last part
/// of the path.
pub fn dataset_name(data: &str) -> String {
    let lower = data.to_lowercase();
    if lower.contains("fashion") {
        "Fashion-MNIST".into()
    } else if lower.contains("mnist") {
        "MNIST".into()
    } else {
        std::path::Path::new(data)
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| data.to_string())
    }
}

/// The figures of `eval --one-class` (the `--json` schema).
#[derive(Clone, Debug, Serialize)]
pub struct OneClassReport {
    pub schema: u32,
    pub data: String,
    pub dataset: String,
    /// The train/test split the runs used.
    pub split: String,
    /// The recipe that trained each class (`one-class@HASH`).
    pub recipe: String,
    pub minutes_per_class: f64,
    /// The threads of training and scoring (`--threads`; `None`: all cores).
    pub threads: Option<usize>,
    /// The score of the headline means.
    pub score: String,
    pub classes: Vec<u8>,
    pub methods: Vec<Method>,
    /// The mean AUROC over the classes, by method and score kind.
    pub mean_auroc: BTreeMap<String, BTreeMap<String, f64>>,
    /// The project's target for the mean AUROC on this dataset.
    pub target: Option<f64>,
    /// The published means on this dataset.
    pub anchors: Vec<Anchor>,
    pub results: Vec<ClassResult>,
}

impl OneClassReport {
    /// The report of `results`, run as `cfg` says on data split as `split` describes.
    pub fn new(cfg: &OneClassConfig, split: &str, results: Vec<ClassResult>) -> Self {
        let data = cfg.data.display().to_string();
        let dataset = dataset_name(&data);
        let mut classes: Vec<u8> = results.iter().map(|r| r.class).collect();
        classes.sort();
        classes.dedup();
        let mut mean_auroc = BTreeMap::new();
        for m in &cfg.methods {
            let rs: Vec<&ClassResult> = results.iter().filter(|r| r.method == *m).collect();
            let mut by_kind = BTreeMap::new();
            for kind in ScoreKind::NAMES {
                let v: Vec<f64> = rs
                    .iter()
                    .filter_map(|r| r.auroc.get(kind))
                    .copied()
                    .collect();
                if !v.is_empty() {
                    by_kind.insert(kind.to_string(), v.iter().sum::<f64>() / v.len() as f64);
                }
            }
            mean_auroc.insert(m.to_string(), by_kind);
        }
        let recipe = crate::train::recipe::Recipe::load(&cfg.recipe)
            .map(|r| format!("{}@{}", r.name, r.hash))
            .unwrap_or_default();
        OneClassReport {
            schema: SCHEMA,
            target: target(&dataset),
            anchors: ANCHORS
                .iter()
                .filter(|a| a.dataset == dataset)
                .cloned()
                .collect(),
            dataset,
            data,
            split: split.to_string(),
            recipe,
            minutes_per_class: cfg.minutes,
            threads: std::env::var("RAYON_NUM_THREADS")
                .ok()
                .and_then(|t| t.parse().ok()),
            score: cfg.score.as_str().to_string(),
            classes,
            methods: cfg.methods.clone(),
            mean_auroc,
            results,
        }
    }

    /// The result of `class` by `method`, if it ran.
    pub fn result(&self, method: Method, class: u8) -> Option<&ClassResult> {
        self.results
            .iter()
            .find(|r| r.method == method && r.class == class)
    }

    /// The mean AUROC of `method` on the headline score.
    pub fn mean(&self, method: Method) -> Option<f64> {
        self.mean_auroc
            .get(&method.to_string())
            .and_then(|m| m.get(&self.score))
            .copied()
    }
}

/// The report as a table: AUROC per class and method on the headline score (with the IGN's
/// lead over the autoencoder when both ran), the means, the target, the anchors, and the means
/// of the other scores.
pub fn table(r: &OneClassReport) -> String {
    let kind: ScoreKind = r.score.parse().unwrap_or_default();
    let threads = r
        .threads
        .map_or("all cores".to_string(), |t| format!("{t} thread(s)"));
    let mut s = format!(
        "one-class AUROC on {} ({}), score {}, {} minutes of training per class and method, {threads}\n",
        r.dataset, r.split, r.score, r.minutes_per_class
    );
    let both = r.methods.len() == 2;
    let mut head = format!("{:>5}", "class");
    for m in &r.methods {
        let _ = write!(head, " {:>12} {:>6}", m.to_string(), "steps");
    }
    if both {
        let _ = write!(head, " {:>9}", "ign - ae");
    }
    s += &head;
    s += "\n";
    for &c in &r.classes {
        let _ = write!(s, "{c:>5}");
        let mut v = Vec::new();
        for &m in &r.methods {
            match r.result(m, c) {
                Some(x) => {
                    let _ = write!(s, " {:>12.4} {:>6}", x.auroc_of(kind), x.steps);
                    v.push(x.auroc_of(kind));
                }
                None => {
                    let _ = write!(s, " {:>12} {:>6}", "-", "-");
                }
            }
        }
        if let ([a, b], true) = (v.as_slice(), both) {
            let _ = write!(s, " {:>+9.4}", a - b);
        }
        s += "\n";
    }
    let _ = write!(s, "{:>5}", "mean");
    let means: Vec<Option<f64>> = r.methods.iter().map(|&m| r.mean(m)).collect();
    for m in &means {
        match m {
            Some(v) => {
                let _ = write!(s, " {v:>12.4} {:>6}", "");
            }
            None => {
                let _ = write!(s, " {:>12} {:>6}", "-", "");
            }
        }
    }
    if let ([Some(a), Some(b)], true) = (means.as_slice(), both) {
        let _ = write!(s, " {:>+9.4}", a - b);
    }
    s += "\n";
    if let Some(t) = r.target {
        let _ = writeln!(s, "target (mean): {t}");
    }
    for a in &r.anchors {
        let _ = writeln!(
            s,
            "published mean: {} {:.3} ({})",
            a.method, a.mean_auroc, a.source
        );
    }
    for (m, by_kind) in &r.mean_auroc {
        let all: Vec<String> = by_kind.iter().map(|(k, v)| format!("{k} {v:.4}")).collect();
        let _ = writeln!(s, "mean by score, {m}: {}", all.join(", "));
    }
    s
}
