//! `ign-train eval --one-class`: the options of the one-class protocol, flattened into
//! `eval`'s.

use anyhow::{bail, Result};
use clap::Args;
use ign_core::anomaly::ScoreKind;
use std::path::PathBuf;

use crate::cli::choice;
use crate::eval::one_class::{self, Method, OneClassConfig};

/// `--method`: one method or both.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Methods {
    Ign,
    Autoencoder,
    Both,
}

named_choices!(Methods { Ign = "ign", Autoencoder = "autoencoder", Both = "both" });

impl Methods {
    /// The methods to run, in order.
    pub fn list(self) -> Vec<Method> {
        match self {
            Methods::Ign => vec![Method::Ign],
            Methods::Autoencoder => vec![Method::Autoencoder],
            Methods::Both => vec![Method::Ign, Method::Autoencoder],
        }
    }
}

/// The one-class protocol's options.
#[derive(Args, Debug)]
pub struct OneClassArgs {
    /// Run the one-class protocol on --data (IDX images with labels, e.g. MNIST or
    /// Fashion-MNIST): for each class, train the recipe `one-class` on its training images
    /// alone for --minutes-per-class, score the whole test split (anomaly: any other class)
    /// and report the AUROC per class and the mean, beside the published means. Runs go to
    /// --out-dir (one folder per method and class); a rerun skips finished classes and
    /// resumes an interrupted one. Data without a split of its own is split 80/20.
    #[arg(long, conflicts_with_all = ["checkpoint", "model", "ood", "reference"])]
    pub one_class: bool,
    /// With --one-class: the normal classes, each run on its own (default: all), e.g. 0,1,2.
    #[arg(long, value_delimiter = ',', requires = "one_class")]
    pub classes: Option<Vec<u8>>,
    /// With --one-class: the training budget of each class and method, in minutes.
    #[arg(long, requires = "one_class", default_value_t = OneClassConfig::default().minutes)]
    pub minutes_per_class: f64,
    /// With --one-class: the IGN (the recipe as it is), the autoencoder baseline (the same
    /// recipe with both IGN weights 0: reconstruction alone, for the same time) or both.
    #[arg(long, requires = "one_class", value_parser = choice::<Methods>(Methods::NAMES), default_value = "both")]
    pub method: Methods,
    /// With --one-class: the recipe that trains each class, a built-in name or a TOML file
    /// (models/recipes/one-class.toml is the built-in one; copy it to try another width or
    /// schedule). The autoencoder baseline is the same recipe with both IGN weights 0.
    #[arg(long, requires = "one_class", default_value = one_class::RECIPE)]
    pub one_class_recipe: String,
    /// With --one-class: the score of the table's figures (sum: smooth-max + idem, the two
    /// distances an IGN is trained on; smooth-max: the 5×5-smoothed maximum of |x − f(x)|, as
    /// ign-edge score; mean: its mean; idem: the smoothed maximum of |f(x) − f(f(x))|). Every
    /// score is measured and kept in the JSON. sum was picked on one set of runs and then led
    /// on all 20 classes of MNIST and Fashion-MNIST in runs trained after the choice
    /// (models/MODELS.md, "One-class anomaly detection").
    #[arg(long, requires = "one_class", value_parser = choice::<ScoreKind>(&ScoreKind::NAMES), default_value = "sum")]
    pub score: ScoreKind,
}

impl OneClassArgs {
    /// Run the protocol on `data` with runs in `out` (default `runs/one-class-<data name>`),
    /// print the table, write the JSON.
    pub fn run(
        &self,
        data: PathBuf,
        out: Option<PathBuf>,
        json: Option<&std::path::Path>,
    ) -> Result<()> {
        if !data.exists() {
            bail!(
                "{}: no such file or folder; pass --data with MNIST or Fashion-MNIST in IDX form",
                data.display()
            );
        }
        let name = data
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "data".into());
        let cfg = OneClassConfig {
            out: out.unwrap_or_else(|| PathBuf::from(format!("runs/one-class-{name}"))),
            data,
            classes: self.classes.clone(),
            minutes: self.minutes_per_class,
            methods: self.method.list(),
            recipe: self.one_class_recipe.clone(),
            score: self.score,
            ..Default::default()
        };
        let report = one_class::run(&cfg)?;
        print!("{}", one_class::table(&report));
        if let Some(j) = json {
            ign_core::fsio::atomic_write(j, serde_json::to_string_pretty(&report)?.as_bytes())?;
        }
        Ok(())
    }
}
