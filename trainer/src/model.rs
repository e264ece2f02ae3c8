//! The IGN network: a DCGAN encoder-decoder, image in, same-shape image out.
//!
//! Encoder = DCGAN discriminator without its head (strided convs, LeakyReLU 0.2, a normalization
//! after the first), down to a `latent × 1 × 1` code; decoder = DCGAN generator (transposed
//! convs, normalization + ReLU, Tanh at the end). Parameter names follow the module tree:
//! `enc.<i>.conv.weight`, `enc.<i>.ln.weight`, `dec.<i>.bn.running_mean`, ...
//!
//! ## Normalization
//! DCGAN uses BatchNorm, and so do the shipped models (the default). In IGN training every
//! forward pass sees a batch of one kind (real images, noise, or f(noise)), so BatchNorm's
//! batch statistics differ between passes, and its running averages match none of them: export
//! folds in the statistics of real images and writes a second model with those of noise
//! ([`crate::train::bnstats`]). The per-sample norms (`layer`, `instance`) compute the same function in
//! training and at batch 1, but with them every noise image went to one digit
//! (models/MODELS.md): nothing in the loss separates different z, and BatchNorm's batch
//! statistics do.

use anyhow::{bail, Result};
use candle_core::{ModuleT, Tensor};
use candle_nn::{BatchNorm, Conv2d, ConvTranspose2d, VarBuilder};
use serde::{Deserialize, Serialize};

use crate::ops::{ConvKernels, Kernels, NormKernels};

/// The normalization after the hidden convolutions.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Norm {
    /// Per-sample LayerNorm over (C, H, W), per-channel affine: batch-independent.
    Layer,
    /// BatchNorm (the paper's DCGAN, the shipped models'); exported with the statistics of
    /// real images, and a variant with those of noise.
    #[default]
    Batch,
    /// Per-sample, per-channel InstanceNorm over (H, W), per-channel affine: batch-independent
    /// like `layer`, and it removes each channel's own spatial mean, the part of a conv
    /// response that all noise images share (pix2pix's choice for image-to-image nets).
    Instance,
    /// No normalization.
    None,
}

named_choices!(Norm { Layer = "layer", Batch = "batch", Instance = "instance", None = "none" });

impl Norm {
    fn batch() -> Norm {
        Norm::Batch
    }
}

/// Epsilon of both normalizations (PyTorch's and candle's default).
pub const NORM_EPS: f64 = 1e-5;

/// Shape and width of a model.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModelConfig {
    /// 1 (gray) or 3 (RGB).
    pub channels: usize,
    /// Square image size: 28, 32 or 64.
    pub image_size: usize,
    /// Channels of the first layer (DCGAN's `ndf`/`ngf`; 64 in the paper).
    pub width: usize,
    /// Normalization of hidden layers (checkpoints without the key used BatchNorm).
    #[serde(default = "Norm::batch")]
    pub norm: Norm,
}

/// The activation after a layer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Act {
    LeakyRelu,
    Relu,
    Tanh,
    None,
}

/// One layer of the network, enough to build it in candle and to write it as ONNX.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LayerSpec {
    pub transpose: bool,
    pub cin: usize,
    pub cout: usize,
    pub kernel: usize,
    pub stride: usize,
    pub padding: usize,
    /// Followed by a normalization (BatchNorm or LayerNorm per the model's `norm`).
    pub norm: bool,
    pub act: Act,
}

impl LayerSpec {
    fn conv(cin: usize, cout: usize, k: usize, s: usize, p: usize, bn: bool, act: Act) -> Self {
        LayerSpec {
            transpose: false,
            cin,
            cout,
            kernel: k,
            stride: s,
            padding: p,
            norm: bn,
            act,
        }
    }
    fn convt(cin: usize, cout: usize, k: usize, s: usize, p: usize, bn: bool, act: Act) -> Self {
        LayerSpec {
            transpose: true,
            ..Self::conv(cin, cout, k, s, p, bn, act)
        }
    }
    /// Layers followed by a normalization carry no bias (its shift replaces it).
    pub fn has_bias(&self) -> bool {
        !self.norm
    }
    /// Output spatial size for input size `n`.
    pub fn out_size(&self, n: usize) -> usize {
        if self.transpose {
            (n - 1) * self.stride + self.kernel - 2 * self.padding
        } else {
            (n + 2 * self.padding - self.kernel) / self.stride + 1
        }
    }
}

impl ModelConfig {
    /// Channels of the latent code.
    pub fn latent_channels(&self) -> usize {
        self.encoder_specs().last().map(|l| l.cout).unwrap_or(0)
    }

    /// Check that the size and channels are supported.
    pub fn validate(&self) -> Result<()> {
        if ![1, 3].contains(&self.channels) {
            bail!("channels must be 1 or 3, not {}", self.channels);
        }
        if ![28, 32, 64].contains(&self.image_size) {
            bail!(
                "image size {} is not supported: use 28, 32 or 64 (--image-size)",
                self.image_size
            );
        }
        if self.width == 0 {
            bail!("width must be at least 1");
        }
        Ok(())
    }

    /// The encoder layers (image → `latent×1×1`).
    pub fn encoder_specs(&self) -> Vec<LayerSpec> {
        self.without_norm_if_none(self.encoder_specs_raw())
    }

    /// The decoder layers (`latent×1×1` → image).
    pub fn decoder_specs(&self) -> Vec<LayerSpec> {
        self.without_norm_if_none(self.decoder_specs_raw())
    }

    fn without_norm_if_none(&self, mut v: Vec<LayerSpec>) -> Vec<LayerSpec> {
        if self.norm == Norm::None {
            for l in &mut v {
                l.norm = false;
            }
        }
        v
    }

    fn encoder_specs_raw(&self) -> Vec<LayerSpec> {
        let (c, w) = (self.channels, self.width);
        use Act::*;
        match self.image_size {
            28 => vec![
                LayerSpec::conv(c, w, 4, 2, 1, false, LeakyRelu),
                LayerSpec::conv(w, 2 * w, 4, 2, 1, true, LeakyRelu),
                LayerSpec::conv(2 * w, 4 * w, 3, 2, 1, true, LeakyRelu),
                LayerSpec::conv(4 * w, 4 * w, 4, 1, 0, false, None),
            ],
            32 => vec![
                LayerSpec::conv(c, w, 4, 2, 1, false, LeakyRelu),
                LayerSpec::conv(w, 2 * w, 4, 2, 1, true, LeakyRelu),
                LayerSpec::conv(2 * w, 4 * w, 4, 2, 1, true, LeakyRelu),
                LayerSpec::conv(4 * w, 4 * w, 4, 1, 0, false, None),
            ],
            _ => vec![
                LayerSpec::conv(c, w, 4, 2, 1, false, LeakyRelu),
                LayerSpec::conv(w, 2 * w, 4, 2, 1, true, LeakyRelu),
                LayerSpec::conv(2 * w, 4 * w, 4, 2, 1, true, LeakyRelu),
                LayerSpec::conv(4 * w, 8 * w, 4, 2, 1, true, LeakyRelu),
                LayerSpec::conv(8 * w, 8 * w, 4, 1, 0, false, None),
            ],
        }
    }

    fn decoder_specs_raw(&self) -> Vec<LayerSpec> {
        let (c, w) = (self.channels, self.width);
        use Act::*;
        match self.image_size {
            28 => vec![
                LayerSpec::convt(4 * w, 4 * w, 4, 1, 0, true, Relu),
                LayerSpec::convt(4 * w, 2 * w, 3, 2, 1, true, Relu),
                LayerSpec::convt(2 * w, w, 4, 2, 1, true, Relu),
                LayerSpec::convt(w, c, 4, 2, 1, false, Tanh),
            ],
            32 => vec![
                LayerSpec::convt(4 * w, 4 * w, 4, 1, 0, true, Relu),
                LayerSpec::convt(4 * w, 2 * w, 4, 2, 1, true, Relu),
                LayerSpec::convt(2 * w, w, 4, 2, 1, true, Relu),
                LayerSpec::convt(w, c, 4, 2, 1, false, Tanh),
            ],
            _ => vec![
                LayerSpec::convt(8 * w, 8 * w, 4, 1, 0, true, Relu),
                LayerSpec::convt(8 * w, 4 * w, 4, 2, 1, true, Relu),
                LayerSpec::convt(4 * w, 2 * w, 4, 2, 1, true, Relu),
                LayerSpec::convt(2 * w, w, 4, 2, 1, true, Relu),
                LayerSpec::convt(w, c, 4, 2, 1, false, Tanh),
            ],
        }
    }

    /// Number of trainable parameters (BN running statistics excluded).
    pub fn num_params(&self) -> usize {
        self.encoder_specs()
            .iter()
            .chain(self.decoder_specs().iter())
            .map(|l| {
                l.cin * l.cout * l.kernel * l.kernel
                    + if l.has_bias() { l.cout } else { 0 }
                    + if l.norm { 2 * l.cout } else { 0 }
            })
            .sum()
    }
}

enum ConvKind {
    Conv(Conv2d),
    Transpose(ConvTranspose2d),
}

impl ConvKind {
    /// The convolution without its bias, on `kernels`, and the bias.
    fn forward_unbiased(
        &self,
        x: &Tensor,
        kernels: ConvKernels,
    ) -> candle_core::Result<(Tensor, Option<&Tensor>)> {
        use crate::ops::fastconv::{conv2d, conv_transpose2d, reference};
        let fast = kernels == ConvKernels::Fast;
        Ok(match self {
            ConvKind::Conv(c) => {
                let cfg = c.config();
                let conv = if fast { conv2d } else { reference::conv2d };
                (conv(x, c.weight(), cfg.stride, cfg.padding)?, c.bias())
            }
            ConvKind::Transpose(c) => {
                let cfg = c.config();
                let conv = if fast {
                    conv_transpose2d
                } else {
                    reference::conv_transpose2d
                };
                (conv(x, c.weight(), cfg.stride, cfg.padding)?, c.bias())
            }
        })
    }
}

/// A per-sample norm with a per-channel scale and shift: LayerNorm over (C, H, W)
/// (`groups = 1`) or InstanceNorm over (H, W) of each channel (`groups = C`).
struct LayerNorm {
    weight: Tensor,
    bias: Tensor,
    groups: usize,
}

impl LayerNorm {
    fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        let dims = x.dims().to_vec();
        let flat = x.reshape((dims[0], self.groups, ()))?;
        let mean = flat.mean_keepdim(2)?;
        let centered = flat.broadcast_sub(&mean)?;
        let var = centered.sqr()?.mean_keepdim(2)?;
        let normed = centered
            .broadcast_div(&(var + NORM_EPS)?.sqrt()?)?
            .reshape(dims)?;
        normed
            .broadcast_mul(&self.weight.reshape((1, (), 1, 1))?)?
            .broadcast_add(&self.bias.reshape((1, (), 1, 1))?)
    }
}

enum NormLayer {
    Batch(BatchNorm),
    Layer(LayerNorm),
}

struct Block {
    conv: ConvKind,
    bn: Option<NormLayer>,
    act: Act,
}

impl Block {
    fn new(spec: &LayerSpec, norm: Norm, vb: VarBuilder) -> Result<Self> {
        let vbc = vb.pp("conv");
        let conv = if spec.transpose {
            let cfg = candle_nn::ConvTranspose2dConfig {
                padding: spec.padding,
                stride: spec.stride,
                ..Default::default()
            };
            let t = if spec.has_bias() {
                candle_nn::conv_transpose2d(spec.cin, spec.cout, spec.kernel, cfg, vbc)?
            } else {
                candle_nn::conv_transpose2d_no_bias(spec.cin, spec.cout, spec.kernel, cfg, vbc)?
            };
            ConvKind::Transpose(t)
        } else {
            let cfg = candle_nn::Conv2dConfig {
                padding: spec.padding,
                stride: spec.stride,
                ..Default::default()
            };
            let c = if spec.has_bias() {
                candle_nn::conv2d(spec.cin, spec.cout, spec.kernel, cfg, vbc)?
            } else {
                candle_nn::conv2d_no_bias(spec.cin, spec.cout, spec.kernel, cfg, vbc)?
            };
            ConvKind::Conv(c)
        };
        let bn = match (spec.norm, norm) {
            (false, _) | (_, Norm::None) => None,
            (true, Norm::Batch) => Some(NormLayer::Batch(candle_nn::batch_norm(
                spec.cout,
                candle_nn::BatchNormConfig {
                    eps: NORM_EPS,
                    ..Default::default()
                },
                vb.pp("bn"),
            )?)),
            (true, Norm::Layer | Norm::Instance) => {
                let vb = vb.pp("ln");
                Some(NormLayer::Layer(LayerNorm {
                    weight: vb.get_with_hints(spec.cout, "weight", candle_nn::Init::Const(1.0))?,
                    bias: vb.get_with_hints(spec.cout, "bias", candle_nn::Init::Const(0.0))?,
                    groups: if norm == Norm::Instance { spec.cout } else { 1 },
                }))
            }
        };
        Ok(Block {
            conv,
            bn,
            act: spec.act,
        })
    }

    fn forward_t(&self, x: &Tensor, train: bool, kernels: Kernels) -> candle_core::Result<Tensor> {
        let (y, bias) = self.conv.forward_unbiased(x, kernels.conv)?;
        let fused = kernels.norm == NormKernels::Fused;
        // Without a norm: bias and activation as one fused op.
        if let (None, Some(bias), true) = (&self.bn, bias, fused) {
            use crate::ops::fused::{bias_act, BiasActivation};
            let act = match self.act {
                Act::LeakyRelu => BiasActivation::Leaky(0.2),
                Act::Relu => BiasActivation::Leaky(0.0),
                Act::Tanh => BiasActivation::Tanh,
                Act::None => BiasActivation::Identity,
            };
            return bias_act(&y, bias, act);
        }
        let mut y = crate::ops::fastconv::add_bias(y, bias)?;
        match &self.bn {
            // training form: the fused op (batch statistics, affine, activation in one pass);
            // running statistics updated as candle's BatchNorm does
            Some(NormLayer::Batch(bn)) if train && fused && self.act != Act::Tanh => {
                let Some((w, b)) = bn.weight_and_bias() else {
                    candle_core::bail!("batch norm without scale and shift");
                };
                let act = match self.act {
                    Act::LeakyRelu => crate::ops::fused::NormActivation::Leaky(0.2),
                    Act::Relu => crate::ops::fused::NormActivation::Leaky(0.0),
                    _ => crate::ops::fused::NormActivation::Identity,
                };
                let (y, stats) = crate::ops::fused_bn::batch_norm_act(&y, w, b, NORM_EPS, act)?;
                crate::ops::fused_bn::update_running(
                    bn.running_mean(),
                    bn.running_var(),
                    &stats,
                    bn.momentum(),
                )?;
                return Ok(y);
            }
            Some(NormLayer::Batch(bn)) => y = bn.forward_t(&y, train)?,
            // the fused op (norm, affine and activation in one pass)
            Some(NormLayer::Layer(ln)) if fused => {
                let act = match self.act {
                    Act::LeakyRelu => crate::ops::fused::NormActivation::Leaky(0.2),
                    Act::Relu => crate::ops::fused::NormActivation::Leaky(0.0),
                    Act::None => crate::ops::fused::NormActivation::Identity,
                    Act::Tanh => return ln.forward(&y)?.tanh(),
                };
                return crate::ops::fused::group_norm_act(&y, &ln.weight, &ln.bias, ln.groups, act);
            }
            Some(NormLayer::Layer(ln)) => y = ln.forward(&y)?,
            None => {}
        }
        match self.act {
            Act::LeakyRelu => candle_nn::ops::leaky_relu(&y, 0.2),
            Act::Relu => y.relu(),
            Act::Tanh => y.tanh(),
            Act::None => Ok(y),
        }
    }
}

/// The network `f`.
pub struct Ign {
    pub config: ModelConfig,
    enc: Vec<Block>,
    dec: Vec<Block>,
    /// The kernels it runs on (default: the fast and fused ones).
    kernels: Kernels,
}

impl Ign {
    /// Build the network, creating or fetching parameters through `vb`.
    pub fn new(config: &ModelConfig, vb: VarBuilder) -> Result<Self> {
        config.validate()?;
        let enc = config
            .encoder_specs()
            .iter()
            .enumerate()
            .map(|(i, s)| Block::new(s, config.norm, vb.pp("enc").pp(i)))
            .collect::<Result<_>>()?;
        let dec = config
            .decoder_specs()
            .iter()
            .enumerate()
            .map(|(i, s)| Block::new(s, config.norm, vb.pp("dec").pp(i)))
            .collect::<Result<_>>()?;
        Ok(Ign {
            config: config.clone(),
            enc,
            dec,
            kernels: Kernels::default(),
        })
    }

    /// Run on `kernels` from now on (candle's own ops to compare or time against).
    pub fn set_kernels(&mut self, kernels: Kernels) {
        self.kernels = kernels;
    }

    /// The kernels it runs on.
    pub fn kernels(&self) -> Kernels {
        self.kernels
    }

    /// Image → latent (`[B, latent, 1, 1]`).
    pub fn encode(&self, x: &Tensor, train: bool) -> candle_core::Result<Tensor> {
        self.enc
            .iter()
            .try_fold(x.clone(), |h, b| b.forward_t(&h, train, self.kernels))
    }

    /// Latent → image.
    pub fn decode(&self, z: &Tensor, train: bool) -> candle_core::Result<Tensor> {
        self.dec
            .iter()
            .try_fold(z.clone(), |h, b| b.forward_t(&h, train, self.kernels))
    }

    /// `f(x)`. With BatchNorm, `train` selects batch statistics (true) or running statistics
    /// (false); LayerNorm computes the same either way.
    pub fn forward_t(&self, x: &Tensor, train: bool) -> candle_core::Result<Tensor> {
        self.decode(&self.encode(x, train)?, train)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn specs_produce_the_right_sizes() {
        for (size, lat) in [(28, 256), (32, 256), (64, 512)] {
            let cfg = ModelConfig {
                channels: 1,
                image_size: size,
                width: 64,
                norm: Norm::Batch,
            };
            let mut n = size;
            for l in cfg.encoder_specs() {
                n = l.out_size(n);
            }
            assert_eq!(n, 1, "size {size}: latent is 1x1");
            assert_eq!(cfg.latent_channels(), lat);
            for l in cfg.decoder_specs() {
                n = l.out_size(n);
            }
            assert_eq!(n, size);
        }
    }

    #[test]
    fn paper_sized_mnist_model_has_about_2_95m_params() {
        let cfg = ModelConfig {
            channels: 1,
            image_size: 28,
            width: 64,
            norm: Norm::Batch,
        };
        let p = cfg.num_params();
        assert!((2_900_000..3_000_000).contains(&p), "{p}");
        let faces = ModelConfig {
            channels: 3,
            image_size: 64,
            width: 64,
            norm: Norm::Batch,
        };
        let p = faces.num_params();
        assert!((13_500_000..14_300_000).contains(&p), "{p}");
    }
}
