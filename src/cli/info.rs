//! `ign-edge info`

use anyhow::Result;
use clap::Args;
use std::path::PathBuf;

use crate::model::Model;

/// Show a model's shapes, parameters, FLOPs, operators, precision and metadata.
#[derive(Args, Debug)]
pub struct InfoCmd {
    /// ONNX model file.
    pub model: PathBuf,
    /// Print JSON (stable keys) instead of text.
    #[arg(long)]
    pub json: bool,
}

impl InfoCmd {
    pub fn run(self) -> Result<()> {
        let m = Model::load(&self.model)?;
        let i = &m.info;
        if self.json {
            println!("{}", serde_json::to_string_pretty(i)?);
            return Ok(());
        }
        let batch = i
            .fixed_batch
            .map(|b| b.to_string())
            .unwrap_or_else(|| "N".into());
        println!(
            "model      {} ({:.1} KB)",
            i.path.display(),
            i.file_bytes as f64 / 1024.0
        );
        println!(
            "input      {} [{batch}, {}, {}, {}] float32",
            i.input_name, i.channels, i.height, i.width
        );
        println!(
            "output     {} [{batch}, {}, {}, {}] float32",
            i.output_name, i.channels, i.height, i.width
        );
        println!("precision  {}", i.precision);
        println!("params     {} ({:.2} M)", i.params, i.params as f64 / 1e6);
        println!(
            "flops      {:.1} MFLOP per image per application of f",
            i.flops as f64 / 1e6
        );
        let ops: Vec<String> = i.ops.iter().map(|(k, v)| format!("{k}x{v}")).collect();
        println!("ops        {}", ops.join(" "));
        println!(
            "opset      {}{}",
            i.opset,
            if i.producer.is_empty() {
                String::new()
            } else {
                format!(" (producer {})", i.producer)
            }
        );
        for (k, v) in &i.metadata {
            println!("meta       {k} = {v}");
        }
        Ok(())
    }
}
