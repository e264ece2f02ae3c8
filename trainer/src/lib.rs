//! # ign-train
//!
//! Train an Idempotent Generative Network (Shocher et al., ICLR 2024) on CPU with candle,
//! evaluate it, and export the ONNX file that `ign-edge` runs.
//!
//! The rooms: [`ops`] (the compute kernels), [`z`] (what `z` is made of), [`train`] (the run:
//! configuration, loop, loss, optimizer, checkpoints, recipes) and [`eval`] (figures and
//! pictures of a model); beside them [`data`] (with its augmentations), [`model`], [`export`]
//! with the anomaly threshold of scene models ([`calibrate`]) and the command line, [`cli`].

/// `FromStr`, `Display` and `NAMES` (the names in order, for the command line's lists) for a
/// fieldless enum, from its variants and their names.
macro_rules! named_choices {
    ($t:ty { $($variant:ident = $name:literal),+ $(,)? }) => {
        impl $t {
            /// The names of the choices, as the command line takes them.
            pub const NAMES: &'static [&'static str] = &[$($name),+];
        }

        impl std::str::FromStr for $t {
            type Err = String;

            fn from_str(s: &str) -> std::result::Result<Self, String> {
                match s {
                    $($name => Ok(Self::$variant),)+
                    _ => Err(format!("{s:?} is none of {}", Self::NAMES.join(", "))),
                }
            }
        }

        impl std::fmt::Display for $t {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(match self {
                    $(Self::$variant => $name,)+
                })
            }
        }
    };
}

pub mod calibrate;
pub mod cli;
pub mod data;
pub mod eval;
pub mod export;
pub mod model;
pub mod ops;
pub mod scene;
pub mod train;
pub mod z;

/// Use `n` CPU threads for the kernels (default: all cores). Call before any tensor work.
///
/// The heavy work (convolutions, the fused norm ops, matrix products) runs on rayon's pool of
/// `n` threads. candle's own pool for elementwise ops is kept to the calling thread (unless
/// `CANDLE_NUM_THREADS` is set): its workers spin while they wait, and beside rayon's threads
/// on a small board that spinning took a third of the cores (a BatchNorm width-32 step 0.12 s
/// with it, 0.095 s without, 2 threads on a 2-core host).
pub fn set_threads(n: Option<usize>) {
    if let Some(n) = n {
        std::env::set_var("RAYON_NUM_THREADS", n.to_string());
    }
    if std::env::var_os("CANDLE_NUM_THREADS").is_none() {
        std::env::set_var("CANDLE_NUM_THREADS", "1");
    }
}
