//! Per-node profile of a model's optimized tract plan (a development tool for the int8 work,
//! docs/performance.md): `cargo run --release -p ign-core --example profile_nodes -- MODEL [RUNS]`.
//! Prints every node of the plan with its operator, output shape and mean time per call; int8
//! plans get the project's own ops as `ign-edge` runs them (`IGN_EDGE_TRACT_OPS=1`: tract's
//! own). `THREADS=N` runs the plan on tract's N-thread executor.

use ign_core::model::Model;
use std::path::Path;
use tract_onnx::prelude::*;

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let path = args
        .get(1)
        .map(String::as_str)
        .unwrap_or("models/ign-mnist.onnx");
    let runs: usize = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(500);
    let model = Model::load(Path::new(path))?;
    let plan = ign_core::backend::optimize(model.typed(1)?)?.into_runnable()?;
    let mut state = plan.spawn()?;
    let info = &model.info;
    let x = Tensor::from_shape(
        &[1, info.channels, info.height, info.width],
        &vec![0.1f32; info.channels * info.height * info.width],
    )?;
    let threads: usize = std::env::var("THREADS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1);
    let executor = if threads > 1 {
        tract_linalg::multithread::Executor::multithread(threads)
    } else {
        tract_linalg::multithread::Executor::SingleThread
    };
    let mut times = vec![0f64; state.model().nodes().len()];
    for i in 0..runs + 50 {
        tract_linalg::multithread::multithread_tract_scope(executor.clone(), || {
            state.run_plan_with_eval(tvec!(x.clone().into()), |ctx, st, node, inputs| {
                let t0 = std::time::Instant::now();
                let r = tract_onnx::tract_core::plan::eval(ctx, st, node, inputs);
                if i >= 50 {
                    times[node.id] += t0.elapsed().as_secs_f64() * 1e6;
                }
                r
            })
        })?;
    }
    let m = state.model();
    let mut total = 0.0;
    for id in m.eval_order()? {
        let n = m.node(id);
        let us = times[id] / runs as f64;
        total += us;
        println!(
            "{:>8.2} us  {:<22} {:<40} {:?}",
            us,
            n.op().name(),
            n.name.chars().take(40).collect::<String>(),
            n.outputs[0].fact
        );
    }
    println!("{total:>8.2} us  total");
    // Which matrix kernels tract picked (OptMatMul's own description), once each.
    let mut kernels: Vec<String> = Vec::new();
    for n in m.nodes().iter().filter(|n| n.op().name() == "OptMatMul") {
        for line in n
            .op()
            .info()?
            .into_iter()
            .filter(|l| l.starts_with("Mult:"))
        {
            if !kernels.contains(&line) {
                kernels.push(line);
            }
        }
    }
    for k in kernels {
        println!("kernel: {k}");
    }
    Ok(())
}
