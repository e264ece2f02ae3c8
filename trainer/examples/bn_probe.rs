use candle_core::{Device, Tensor};
use ign_train::{checkpoint, samples};
fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let (model, ck) = checkpoint::load_model(std::path::Path::new(&args[1]))?;
    let _ = ck;
    let z = Tensor::randn(0f32, 1f32, (64, 1, 28, 28), &Device::Cpu)?;
    for train in [true, false] {
        let fz = model.forward_t(&z, train)?;
        let ffz = model.forward_t(&fz, train)?;
        let rows = vec![
            samples::tensor_tiles(&z.narrow(0, 0, 16)?)?,
            samples::tensor_tiles(&fz.narrow(0, 0, 16)?)?,
            samples::tensor_tiles(&ffz.narrow(0, 0, 16)?)?,
        ];
        let g = ign_edge::imaging::grid(&rows, 2, 2)?;
        g.save(format!("/tmp/probe-{}.png", train))?;
        let v = fz.flatten_from(1)?;
        let mean = v.mean_keepdim(0)?;
        let spread = v
            .broadcast_sub(&mean)?
            .abs()?
            .mean_all()?
            .to_scalar::<f32>()?;
        println!("train={train} spread of f(z) across batch: {spread}");
    }
    Ok(())
}
