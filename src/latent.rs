//! The model split at its latent: `f = decoder ∘ encoder`, for interpolation and arithmetic in
//! latent space.
//!
//! `ign-train export` records the encoder's output tensor in the metadata key `ign.latent`.
//! The encoder is the graph with that tensor as its output; the decoder is the part of the
//! graph that computes the output from it (with the latent as its input). Both run in tract.

use anyhow::{anyhow, bail, Context, Result};
use prost::Message;
use std::collections::{HashMap, HashSet};
use tract_onnx::pb;
use tract_onnx::prelude::*;

use crate::model::writer::OnnxWriter;
use crate::model::{metadata::keys, Model, ModelError};
use crate::tensor::ImageBatch;

/// Latent vectors of a batch: `shape[0]` images, each `shape[1..]`.
#[derive(Clone, Debug, PartialEq)]
pub struct Latents {
    pub data: Vec<f32>,
    pub shape: Vec<usize>,
}

impl Latents {
    /// Values per image.
    pub fn per_image(&self) -> usize {
        self.shape[1..].iter().product()
    }

    /// Image `i`'s latent.
    pub fn get(&self, i: usize) -> &[f32] {
        let n = self.per_image();
        &self.data[i * n..(i + 1) * n]
    }

    /// Stack single latents (all of `like`'s per-image shape) into a batch.
    pub fn stack(items: &[Vec<f32>], like: &Latents) -> Latents {
        let mut shape = like.shape.clone();
        shape[0] = items.len();
        Latents {
            data: items.concat(),
            shape,
        }
    }
}

type Plan = Arc<TypedRunnableModel>;

/// Encoder and decoder of a model with `ign.latent`.
pub struct LatentSplit {
    encoder: pb::ModelProto,
    decoder: pb::ModelProto,
    /// Name of the latent tensor.
    pub latent: String,
    image_shape: [usize; 3],
    enc_plans: HashMap<usize, Plan>,
    dec_plans: HashMap<Vec<usize>, Plan>,
}

fn with_outputs(graph: &mut pb::GraphProto, names: &[&str]) {
    let mut w = OnnxWriter::new("outputs");
    for n in names {
        w.output_f32_any_shape(n);
    }
    graph.output = w.into_model().graph.expect("graph").output;
}

impl LatentSplit {
    /// Split `model` at its `ign.latent` tensor.
    pub fn new(model: &Model) -> Result<LatentSplit> {
        let path = &model.info.path;
        let latent = model.info.metadata.get(keys::LATENT).cloned().ok_or_else(|| {
            anyhow!(ModelError(format!(
                "{}: no `{}` metadata, so the latent tensor is unknown; models exported by ign-train have it (add the key naming the encoder's output tensor to other models)",
                path.display(),
                keys::LATENT
            )))
        })?;
        let proto = pb::ModelProto::decode(model.bytes()).context("decode")?;
        let graph = proto.graph.as_ref().context("model has no graph")?;
        if !graph.node.iter().any(|n| n.output.contains(&latent)) {
            bail!(ModelError(format!(
                "{}: `{}` names tensor '{latent}', which no node produces",
                path.display(),
                keys::LATENT
            )));
        }
        let output = graph.output[0].name.clone();
        // Encoder: the same graph, the latent as its output (tract drops the rest).
        let mut encoder = proto.clone();
        with_outputs(encoder.graph.as_mut().unwrap(), &[&latent]);
        // Decoder: the nodes the output needs, walking back from it and stopping at the latent.
        let mut needed: HashSet<String> = HashSet::from([output.clone()]);
        let mut keep = vec![false; graph.node.len()];
        for (i, n) in graph.node.iter().enumerate().rev() {
            if n.output.iter().any(|o| needed.contains(o)) {
                keep[i] = true;
                needed.extend(n.input.iter().filter(|t| **t != latent).cloned());
            }
        }
        let mut decoder = proto.clone();
        let dg = decoder.graph.as_mut().unwrap();
        let mut k = keep.iter();
        dg.node.retain(|_| *k.next().unwrap());
        dg.initializer.retain(|t| needed.contains(&t.name));
        let mut w = OnnxWriter::new("inputs");
        w.input_f32(&latent, &[]);
        let mut input = w.into_model().graph.unwrap().input.remove(0);
        if let Some(pb::type_proto::Value::TensorType(t)) =
            input.r#type.as_mut().and_then(|t| t.value.as_mut())
        {
            t.shape = None;
        }
        dg.input = vec![input];
        with_outputs(dg, &[&output]);
        Ok(LatentSplit {
            encoder,
            decoder,
            latent,
            image_shape: [model.info.channels, model.info.height, model.info.width],
            enc_plans: HashMap::new(),
            dec_plans: HashMap::new(),
        })
    }

    fn plan(proto: &pb::ModelProto, shape: &[usize]) -> Result<Plan> {
        tract_onnx::onnx()
            .model_for_proto_model(proto)?
            .with_input_fact(0, f32::fact(shape).into())?
            .into_optimized()?
            .into_runnable()
    }

    /// The latents of `x`.
    pub fn encode(&mut self, x: &ImageBatch) -> Result<Latents> {
        let n = x.len();
        if !self.enc_plans.contains_key(&n) {
            let p = Self::plan(&self.encoder, &x.shape).context("building the encoder")?;
            self.enc_plans.insert(n, p);
        }
        let out = self.enc_plans[&n].run(tvec!(Tensor::from_shape(&x.shape, &x.data)?.into()))?;
        let t = out[0].to_plain_array_view::<f32>()?;
        Ok(Latents {
            data: t.iter().copied().collect(),
            shape: t.shape().to_vec(),
        })
    }

    /// The images the decoder makes of `z`.
    pub fn decode(&mut self, z: &Latents) -> Result<ImageBatch> {
        if !self.dec_plans.contains_key(&z.shape) {
            let p = Self::plan(&self.decoder, &z.shape).context("building the decoder")?;
            self.dec_plans.insert(z.shape.clone(), p);
        }
        let out =
            self.dec_plans[&z.shape].run(tvec!(Tensor::from_shape(&z.shape, &z.data)?.into()))?;
        let t = out[0].to_plain_array_view::<f32>()?;
        let [c, h, w] = self.image_shape;
        ImageBatch::new(t.iter().copied().collect(), [z.shape[0], c, h, w])
    }
}

/// `a + t (b − a)`.
pub fn lerp(a: &[f32], b: &[f32], t: f32) -> Vec<f32> {
    a.iter().zip(b).map(|(x, y)| x + t * (y - x)).collect()
}

/// Spherical interpolation between `a` and `b` (the angle between them, with lengths
/// interpolated linearly); plain `lerp` when they are (anti)parallel.
///
/// ```
/// let m = ign_edge::latent::slerp(&[1.0, 0.0], &[0.0, 1.0], 0.5);
/// assert!((m[0] - m[1]).abs() < 1e-6 && (m[0] * m[0] + m[1] * m[1] - 1.0).abs() < 1e-5);
/// ```
pub fn slerp(a: &[f32], b: &[f32], t: f32) -> Vec<f32> {
    let norm = |v: &[f32]| v.iter().map(|x| (*x as f64).powi(2)).sum::<f64>().sqrt();
    let (na, nb) = (norm(a), norm(b));
    if na < 1e-12 || nb < 1e-12 {
        return lerp(a, b, t);
    }
    let dot = a
        .iter()
        .zip(b)
        .map(|(x, y)| *x as f64 * *y as f64)
        .sum::<f64>()
        / (na * nb);
    let omega = dot.clamp(-1.0, 1.0).acos();
    if omega.sin().abs() < 1e-6 {
        return lerp(a, b, t);
    }
    let t = t as f64;
    let (wa, wb) = (
        ((1.0 - t) * omega).sin() / omega.sin(),
        (t * omega).sin() / omega.sin(),
    );
    let len = na + t * (nb - na);
    a.iter()
        .zip(b)
        .map(|(x, y)| ((wa * *x as f64 / na + wb * *y as f64 / nb) * len) as f32)
        .collect()
}

/// How to walk between two latents.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Path2 {
    Linear,
    Slerp,
}

/// The decoded images between the latents of `a` and `b` (`frames` of them, ends included).
pub fn interpolate(
    split: &mut LatentSplit,
    a: &ImageBatch,
    b: &ImageBatch,
    frames: usize,
    how: Path2,
) -> Result<ImageBatch> {
    let (la, lb) = (split.encode(a)?, split.encode(b)?);
    let n = frames.max(2);
    let points: Vec<Vec<f32>> = (0..n)
        .map(|i| {
            let t = i as f32 / (n - 1) as f32;
            match how {
                Path2::Linear => lerp(la.get(0), lb.get(0), t),
                Path2::Slerp => slerp(la.get(0), lb.get(0), t),
            }
        })
        .collect();
    split.decode(&Latents::stack(&points, &la))
}

/// `(f(A−B+C)` in input space, `decoder(enc(A)−enc(B)+enc(C))` in latent space).
pub fn arith(
    split: &mut LatentSplit,
    backend: &mut dyn crate::backend::Backend,
    a: &ImageBatch,
    b: &ImageBatch,
    c: &ImageBatch,
) -> Result<(ImageBatch, ImageBatch, ImageBatch)> {
    let x: Vec<f32> = a
        .data
        .iter()
        .zip(&b.data)
        .zip(&c.data)
        .map(|((p, q), r)| p - q + r)
        .collect();
    let x = ImageBatch::new(x, a.shape)?;
    let input_space = backend.run(&x)?;
    let (la, lb, lc) = (split.encode(a)?, split.encode(b)?, split.encode(c)?);
    let z: Vec<f32> = la
        .data
        .iter()
        .zip(&lb.data)
        .zip(&lc.data)
        .map(|((p, q), r)| p - q + r)
        .collect();
    let latent_space = split.decode(&Latents {
        data: z,
        shape: la.shape.clone(),
    })?;
    Ok((x, input_space, latent_space))
}
