use candle_core::{Device, Tensor};
use ign_train::{checkpoint, samples};
fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let (model, _ck) = checkpoint::load_model(std::path::Path::new(&args[1]))?;
    let mode = args.get(2).cloned().unwrap_or_default();
    let dev = Device::Cpu;
    // recalibrate the running statistics on noise (momentum 0.1 per train-mode pass)
    if mode == "noise" {
        for _ in 0..60 {
            let z = Tensor::randn(0f32, 1f32, (64, 1, 28, 28), &dev)?;
            model.forward_t(&z, true)?;
        }
    }
    let z = Tensor::randn(0f32, 1f32, (64, 1, 28, 28), &dev)?;
    // batch-1 eval: image by image
    let mut outs = Vec::new();
    for i in 0..16 {
        outs.push(model.forward_t(&z.narrow(0, i, 1)?, false)?);
    }
    let fz = Tensor::cat(&outs, 0)?;
    let ffz = model.forward_t(&fz, false)?;
    let rows = vec![
        samples::tensor_tiles(&z.narrow(0, 0, 16)?)?,
        samples::tensor_tiles(&fz)?,
        samples::tensor_tiles(&ffz)?,
    ];
    let g = ign_edge::imaging::grid(&rows, 2, 2)?;
    g.save(format!("/tmp/probe-{mode}.png"))?;
    let v = fz.flatten_from(1)?;
    let mean = v.mean_keepdim(0)?;
    let spread = v
        .broadcast_sub(&mean)?
        .abs()?
        .mean_all()?
        .to_scalar::<f32>()?;
    println!("mode={mode} eval batch-1 spread of f(z): {spread}");
    Ok(())
}
