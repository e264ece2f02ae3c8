//! What `z` is made of: the inputs `f` learns to make real. Noise ([`noise`]); corruptions of
//! real images ([`corrupt`], the one module that training, `eval` and `eval --ood` draw them
//! from); printed digits ([`fonts`], the catalogue of faces, and [`glyphs`], their rendering);
//! digits sketched as on the pad ([`sketch`]) and photos of ink on paper ([`photo`]); and the
//! batch of a training step that mixes them ([`batch`]).

pub mod batch;
pub mod corrupt;
pub mod fonts;
pub mod glyphs;
pub mod noise;
pub mod photo;
pub mod sketch;
