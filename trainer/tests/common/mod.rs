//! What several trainer tests share.

use ign_train::train::checkpoint::Checkpoint;

/// The model weights of a checkpoint, by name (sorted), as flat vectors: two runs that trained
/// the same steps on the same data compare equal.
pub fn weights(ck: &Checkpoint) -> Vec<(String, Vec<f32>)> {
    let mut w: Vec<_> = ck
        .tensors
        .iter()
        .filter(|(k, _)| k.starts_with("model/"))
        .map(|(k, t)| (k.clone(), t.flatten_all().unwrap().to_vec1().unwrap()))
        .collect();
    w.sort_by(|a, b| a.0.cmp(&b.0));
    w
}
