//! What does not belong in a frame, from a model of the scene: an IGN maps real frames to
//! themselves (`f(x) = x`), so where `f(x)` differs from `x` the frame is not like the ones it
//! was trained on. This module turns `x` and `f(x)` into a per-pixel heatmap and one score per
//! image, picks the threshold for a stated false-alarm rate, and measures separations (AUROC).
//! `ign-edge score`, the live loop's `--anomaly` and `ign-train export` share it.
//!
//! The scores ([`ScoreKind`]):
//! - `smooth-max` (default): the largest value of the heatmap after a box filter of
//!   [`SMOOTH_RADIUS`]: small objects (1–6% of a 64×64 frame) stand out against the noise of
//!   single pixels, which the filter averages away;
//! - `mean`: the mean of the heatmap (what an autoencoder's reconstruction error is);
//! - `idem`: the smoothed maximum of `|f(x) − f(f(x))|`, the idempotence gap, which needs a
//!   second application of f;
//! - `sum`: `smooth-max` + `idem`, the two distances an IGN is trained on (reconstruction and
//!   idempotence), with f applied twice. On the one-class digits and garments it leads once
//!   the IGN has trained some 1,300 steps or more (models/MODELS.md, "One-class anomaly
//!   detection"); scene models keep `smooth-max`, which the live loop gets from one
//!   application of f.

use anyhow::{bail, Result};

/// Radius of the box filter of `smooth-max` (a 5×5 window).
pub const SMOOTH_RADIUS: usize = 2;

/// How one image's heatmap becomes its score.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ScoreKind {
    #[default]
    SmoothMax,
    Mean,
    Idem,
    Sum,
}

impl ScoreKind {
    /// The names the command lines and the model's metadata use.
    pub const NAMES: [&'static str; 4] = ["smooth-max", "mean", "idem", "sum"];

    /// Every kind, in the order of [`ScoreKind::NAMES`].
    pub const ALL: [ScoreKind; 4] = [
        ScoreKind::SmoothMax,
        ScoreKind::Mean,
        ScoreKind::Idem,
        ScoreKind::Sum,
    ];

    /// The name (`smooth-max`, `mean`, `idem`, `sum`).
    pub fn as_str(self) -> &'static str {
        match self {
            ScoreKind::SmoothMax => "smooth-max",
            ScoreKind::Mean => "mean",
            ScoreKind::Idem => "idem",
            ScoreKind::Sum => "sum",
        }
    }

    /// How many times f is applied to score an image: 2 where the score needs `f(f(x))`.
    ///
    /// ```
    /// use ign_core::anomaly::ScoreKind;
    /// assert_eq!(ScoreKind::SmoothMax.applications(), 1);
    /// assert_eq!(ScoreKind::Sum.applications(), 2);
    /// ```
    pub fn applications(self) -> usize {
        match self {
            ScoreKind::SmoothMax | ScoreKind::Mean => 1,
            ScoreKind::Idem | ScoreKind::Sum => 2,
        }
    }
}

impl std::str::FromStr for ScoreKind {
    type Err = anyhow::Error;

    fn from_str(s: &str) -> Result<Self> {
        // the names are as_str's: one table, not two
        if let Some(k) = ScoreKind::ALL.into_iter().find(|k| k.as_str() == s) {
            return Ok(k);
        }
        let (last, rest) = ScoreKind::NAMES.split_last().expect("NAMES is not empty");
        bail!("{s}: not a score; use {} or {last}", rest.join(", "))
    }
}

/// The per-pixel difference of two `C×H×W` images in `[-1, 1]`: the mean over channels of
/// `|a − b|`, one value per pixel (`H×W`, in `[0, 2]`).
///
/// ```
/// use ign_core::anomaly::heatmap;
/// // 2 channels, 1×2 pixels
/// let a = [0.0, 0.0, 1.0, -1.0];
/// let b = [0.5, 0.0, 0.0, -1.0];
/// assert_eq!(heatmap(&a, &b, 2, 1, 2), vec![0.75, 0.0]);
/// ```
pub fn heatmap(a: &[f32], b: &[f32], channels: usize, h: usize, w: usize) -> Vec<f32> {
    let plane = h * w;
    assert_eq!(
        a.len(),
        channels * plane,
        "heatmap: size of the first image"
    );
    assert_eq!(
        b.len(),
        channels * plane,
        "heatmap: size of the second image"
    );
    let mut out = vec![0.0f32; plane];
    for c in 0..channels {
        let (pa, pb) = (&a[c * plane..][..plane], &b[c * plane..][..plane]);
        for (o, (x, y)) in out.iter_mut().zip(pa.iter().zip(pb)) {
            *o += (x - y).abs();
        }
    }
    let n = channels.max(1) as f32;
    out.iter_mut().for_each(|v| *v /= n);
    out
}

/// `map` (`H×W`) averaged over a `(2r+1)²` window around each pixel (the window cut at the
/// borders), with a summed-area table: O(H·W) whatever `r`.
pub fn box_smooth(map: &[f32], h: usize, w: usize, r: usize) -> Vec<f32> {
    assert_eq!(map.len(), h * w, "box_smooth: size");
    let mut sat = vec![0.0f64; (h + 1) * (w + 1)];
    for y in 0..h {
        let mut row = 0.0f64;
        for x in 0..w {
            row += map[y * w + x] as f64;
            sat[(y + 1) * (w + 1) + x + 1] = sat[y * (w + 1) + x + 1] + row;
        }
    }
    let mut out = vec![0.0f32; h * w];
    for y in 0..h {
        let (y0, y1) = (y.saturating_sub(r), (y + r + 1).min(h));
        for x in 0..w {
            let (x0, x1) = (x.saturating_sub(r), (x + r + 1).min(w));
            let s = sat[y1 * (w + 1) + x1] - sat[y0 * (w + 1) + x1] - sat[y1 * (w + 1) + x0]
                + sat[y0 * (w + 1) + x0];
            out[y * w + x] = (s / ((y1 - y0) * (x1 - x0)) as f64) as f32;
        }
    }
    out
}

/// The colour of heatmap value `v` on a scale that is full at `full`: black through red to
/// yellow, as `[red, green]` in [0, 1] (blue is always 0). `ign-edge score`'s pictures and the
/// live loop's heatmap panel both draw with it.
///
/// ```
/// use ign_core::anomaly::heat_colour;
/// assert_eq!(heat_colour(0.0, 1.0), [0.0, 0.0]);
/// assert_eq!(heat_colour(0.5, 1.0), [1.0, 0.0]);
/// assert_eq!(heat_colour(3.0, 1.0), [1.0, 1.0]);
/// ```
pub fn heat_colour(v: f32, full: f32) -> [f32; 2] {
    let v = (v / full.max(1e-6)).clamp(0.0, 1.0);
    [(v * 2.0).min(1.0), (v * 2.0 - 1.0).max(0.0)]
}

/// One image's verdict: its score and its heatmap (`H×W`, what the score was taken over).
#[derive(Clone, Debug, PartialEq)]
pub struct Scored {
    pub score: f32,
    pub map: Vec<f32>,
}

impl Scored {
    /// The pixel `(x, y)` where the map peaks (the first, in reading order).
    pub fn peak(&self, w: usize) -> (usize, usize) {
        let i = self
            .map
            .iter()
            .enumerate()
            .fold(
                (0, f32::MIN),
                |(bi, bv), (i, &v)| if v > bv { (i, v) } else { (bi, bv) },
            )
            .0;
        (i % w, i / w)
    }
}

/// The score of `kind` for one `C×H×W` image `x` with its projection `fx` (and `ffx`, f
/// applied twice, for the kinds whose [`ScoreKind::applications`] is 2).
///
/// `sum`'s score is the sum of the `smooth-max` and `idem` scores, and its map the sum of
/// their maps (whose peak can lie elsewhere than either's).
pub fn score(
    kind: ScoreKind,
    x: &[f32],
    fx: &[f32],
    ffx: Option<&[f32]>,
    (c, h, w): (usize, usize, usize),
) -> Result<Scored> {
    let smooth = |a: &[f32], b: &[f32]| box_smooth(&heatmap(a, b, c, h, w), h, w, SMOOTH_RADIUS);
    let peak = |map: &[f32]| map.iter().copied().fold(0.0f32, f32::max);
    let second = || match ffx {
        Some(ffx) => Ok(ffx),
        None => bail!("the {} score needs f applied twice", kind.as_str()),
    };
    Ok(match kind {
        ScoreKind::SmoothMax => {
            let map = smooth(x, fx);
            Scored {
                score: peak(&map),
                map,
            }
        }
        ScoreKind::Mean => {
            let map = heatmap(x, fx, c, h, w);
            Scored {
                score: map.iter().sum::<f32>() / map.len().max(1) as f32,
                map,
            }
        }
        ScoreKind::Idem => {
            let map = smooth(fx, second()?);
            Scored {
                score: peak(&map),
                map,
            }
        }
        ScoreKind::Sum => {
            let (rec, idem) = (smooth(x, fx), smooth(fx, second()?));
            Scored {
                score: peak(&rec) + peak(&idem),
                map: rec.iter().zip(&idem).map(|(a, b)| a + b).collect(),
            }
        }
    })
}

/// The threshold above which a score is anomalous, such that a *new* normal frame lies above
/// it with probability at most `false_alarm_rate`: the split-conformal quantile of the
/// held-out `normal` scores.
///
/// Of n held-out scores, the threshold is the j-th largest with j = ⌊rate · (n + 1)⌋: a new
/// score from the same distribution exceeds it with probability j / (n + 1) ≤ rate, whatever
/// that distribution is (the held-out frames and the new one are exchangeable). The share of
/// the held-out scores above it is (j − 1) / n, a little under the rate: the plain empirical
/// quantile would match the held-out frames exactly and overshoot on new ones.
///
/// Fewer than [`frames_for_rate`] frames cannot promise the rate: the threshold is then their
/// maximum, and [`expected_false_alarm_rate`] says what it gives (1 / (n + 1)).
///
/// ```
/// use ign_core::anomaly::{expected_false_alarm_rate, threshold_for};
/// let normal: Vec<f32> = (1..=199).map(|i| i as f32).collect();
/// // j = ⌊0.05 · 200⌋ = 10: the 10th largest, 190, with 9 of the 199 above it
/// let t = threshold_for(&normal, 0.05).unwrap();
/// assert_eq!(t, 190.0);
/// assert_eq!(expected_false_alarm_rate(199, 0.05), 0.05);
/// ```
pub fn threshold_for(normal: &[f32], false_alarm_rate: f64) -> Result<f32> {
    if normal.is_empty() {
        bail!("no normal frames to calibrate the threshold on");
    }
    if !(0.0..1.0).contains(&false_alarm_rate) {
        bail!("the false-alarm rate {false_alarm_rate} must be at least 0 and below 1");
    }
    let mut s: Vec<f32> = normal.iter().copied().filter(|v| v.is_finite()).collect();
    if s.is_empty() {
        bail!("every normal score is NaN or infinite: the model's outputs are broken");
    }
    s.sort_by(f32::total_cmp);
    let j = conformal_rank(s.len(), false_alarm_rate);
    Ok(s[s.len() - j])
}

/// The rank from the top, j ≥ 1, of the conformal threshold among `n` held-out scores.
fn conformal_rank(n: usize, false_alarm_rate: f64) -> usize {
    // a hair of slack so that 0.05 · 200 counts as 10 despite binary fractions
    let j = (false_alarm_rate * (n + 1) as f64 + 1e-9).floor() as usize;
    j.clamp(1, n.max(1))
}

/// The false-alarm rate on new normal frames that [`threshold_for`] gives when it calibrates
/// `false_alarm_rate` on `n` held-out frames: at most the rate, or 1 / (n + 1) when `n` is
/// under [`frames_for_rate`].
pub fn expected_false_alarm_rate(n: usize, false_alarm_rate: f64) -> f64 {
    conformal_rank(n, false_alarm_rate) as f64 / (n + 1) as f64
}

/// The fewest held-out frames that let [`threshold_for`] promise `false_alarm_rate`
/// (99 for 1%); `None` for a rate of 0, which no finite count promises.
pub fn frames_for_rate(false_alarm_rate: f64) -> Option<usize> {
    (false_alarm_rate > 0.0).then(|| ((1.0 / false_alarm_rate) - 1.0 - 1e-9).ceil() as usize)
}

/// The area under the ROC curve of separating `anomal` (positive) from `normal` scores: the
/// chance that a random anomalous score is above a random normal one (ties count half).
///
/// ```
/// use ign_core::anomaly::auroc;
/// assert_eq!(auroc(&[0.1, 0.2], &[0.3, 0.4]), 1.0);
/// assert_eq!(auroc(&[0.5], &[0.5]), 0.5);
/// ```
pub fn auroc(normal: &[f32], anomal: &[f32]) -> f64 {
    if normal.is_empty() || anomal.is_empty() {
        return f64::NAN;
    }
    let mut all: Vec<(f32, bool)> = normal
        .iter()
        .map(|&s| (s, false))
        .chain(anomal.iter().map(|&s| (s, true)))
        .collect();
    all.sort_by(|a, b| a.0.total_cmp(&b.0));
    // rank sum of the positives (average ranks for ties), Mann-Whitney U
    let mut rank_sum = 0.0f64;
    let mut i = 0;
    while i < all.len() {
        let mut j = i;
        while j + 1 < all.len() && all[j + 1].0 == all[i].0 {
            j += 1;
        }
        let rank = (i + j) as f64 / 2.0 + 1.0;
        rank_sum += all[i..=j].iter().filter(|p| p.1).count() as f64 * rank;
        i = j + 1;
    }
    let (p, n) = (anomal.len() as f64, normal.len() as f64);
    (rank_sum - p * (p + 1.0) / 2.0) / (p * n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn box_smooth_averages_the_window_and_keeps_a_flat_map() {
        let flat = vec![3.0f32; 6 * 5];
        assert!(box_smooth(&flat, 6, 5, 2)
            .iter()
            .all(|&v| (v - 3.0).abs() < 1e-6));
        // one hot pixel spreads over its 3x3 window at r = 1, a ninth each inside
        let mut m = vec![0.0f32; 25];
        m[12] = 9.0;
        let s = box_smooth(&m, 5, 5, 1);
        assert!(
            (s[12] - 1.0).abs() < 1e-6 && (s[6] - 1.0).abs() < 1e-6,
            "{s:?}"
        );
        assert_eq!(s[0], 0.0);
        // at a corner the window is cut: the mean of 4 pixels
        let mut c = vec![0.0f32; 25];
        c[0] = 4.0;
        assert!((box_smooth(&c, 5, 5, 1)[0] - 1.0).abs() < 1e-6);
    }

    #[test]
    fn a_patch_raises_smooth_max_more_than_mean_and_peaks_inside() {
        let (c, h, w) = (3, 16, 16);
        let x = vec![0.0f32; c * h * w];
        let mut fx = x.clone();
        // a 3x3 patch that f "removed", at (10..13, 4..7)
        for ch in 0..c {
            for y in 4..7 {
                for xx in 10..13 {
                    fx[ch * h * w + y * w + xx] = 1.0;
                }
            }
        }
        let sm = score(ScoreKind::SmoothMax, &x, &fx, None, (c, h, w)).unwrap();
        let mean = score(ScoreKind::Mean, &x, &fx, None, (c, h, w)).unwrap();
        let (px, py) = sm.peak(w);
        assert!((10..13).contains(&px) && (4..7).contains(&py), "{px},{py}");
        assert!(sm.score > 5.0 * mean.score, "{} {}", sm.score, mean.score);
        assert!(score(ScoreKind::Idem, &x, &fx, None, (c, h, w)).is_err());
        assert!(score(ScoreKind::Sum, &x, &fx, None, (c, h, w)).is_err());
    }

    #[test]
    fn sum_adds_the_reconstruction_and_idempotence_scores_and_maps() {
        let (c, h, w) = (1, 16, 16);
        let x = vec![0.0f32; h * w];
        // f moved a pixel at (4, 5); f applied again moved one at (11, 10)
        let mut fx = x.clone();
        fx[5 * w + 4] = 1.0;
        let mut ffx = fx.clone();
        ffx[10 * w + 11] = -0.5;
        let get = |k| score(k, &x, &fx, Some(&ffx), (c, h, w)).unwrap();
        let (rec, idem, sum) = (
            get(ScoreKind::SmoothMax),
            get(ScoreKind::Idem),
            get(ScoreKind::Sum),
        );
        assert!(rec.score > 0.0 && idem.score > 0.0);
        assert_eq!(sum.score, rec.score + idem.score);
        for i in 0..h * w {
            assert_eq!(sum.map[i], rec.map[i] + idem.map[i]);
        }
        // the two bumps are apart: each half of the map peaks within the filter's radius of its
        // own pixel (on the first cell of the 5×5 plateau)
        let near = |(px, py): (usize, usize), (x, y): (usize, usize)| {
            px.abs_diff(x) <= SMOOTH_RADIUS && py.abs_diff(y) <= SMOOTH_RADIUS
        };
        assert!(near(rec.peak(w), (4, 5)), "{:?}", rec.peak(w));
        assert!(near(idem.peak(w), (11, 10)), "{:?}", idem.peak(w));
        assert!(!near(rec.peak(w), (11, 10)));
        for (k, name) in ScoreKind::ALL.iter().zip(ScoreKind::NAMES) {
            assert_eq!(k.as_str(), name);
            assert_eq!(name.parse::<ScoreKind>().unwrap(), *k);
        }
        assert_eq!(
            "max".parse::<ScoreKind>().unwrap_err().to_string(),
            "max: not a score; use smooth-max, mean, idem or sum"
        );
    }

    #[test]
    fn the_threshold_gives_the_stated_false_alarm_rate_on_its_own_frames() {
        let normal: Vec<f32> = (0..1000)
            .map(|i| ((i * 7919) % 1000) as f32 / 10.0)
            .collect();
        for rate in [0.0, 0.01, 0.05, 0.2] {
            let t = threshold_for(&normal, rate).unwrap();
            let above = normal.iter().filter(|&&s| s > t).count() as f64 / 1000.0;
            assert!(
                above <= rate + 1e-9 && above > rate - 0.002,
                "{rate}: {above}"
            );
        }
        assert!(threshold_for(&[], 0.01).is_err());
        assert!(threshold_for(&[1.0], 1.0).is_err());
        assert_eq!(frames_for_rate(0.01), Some(99));
        assert_eq!(frames_for_rate(0.05), Some(19));
        assert_eq!(frames_for_rate(0.0), None);
        assert_eq!(expected_false_alarm_rate(80, 0.01), 1.0 / 81.0);
        assert_eq!(expected_false_alarm_rate(99, 0.01), 0.01);
    }

    /// Calibrated on 250 of a pool of scores and judged on the rest, again and again: the
    /// share of new normal scores above the threshold is at most the rate on average (the
    /// empirical quantile of the 250 would give 3 / 251 = 1.2% for 1%).
    #[test]
    fn the_threshold_keeps_the_rate_on_new_frames() {
        let mut state = 0x2545_f491_4f6c_dd1d_u64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 11) as f64 / (1u64 << 53) as f64
        };
        // a skewed distribution, like reconstruction errors: the exponential of a normal-ish sum
        let pool: Vec<f32> = (0..5000)
            .map(|_| ((next() + next() + next() - 1.5) * 0.8).exp() as f32)
            .collect();
        let (n, trials) = (250, 400);
        let mut sum = 0.0;
        for _ in 0..trials {
            let mut idx: Vec<usize> = (0..pool.len()).collect();
            for i in 0..n {
                let j = i + (next() * (pool.len() - i) as f64) as usize;
                idx.swap(i, j.min(pool.len() - 1));
            }
            let cal: Vec<f32> = idx[..n].iter().map(|&i| pool[i]).collect();
            let t = threshold_for(&cal, 0.01).unwrap();
            let rest = &idx[n..];
            sum += rest.iter().filter(|&&i| pool[i] > t).count() as f64 / rest.len() as f64;
        }
        let mean = sum / trials as f64;
        let promised = expected_false_alarm_rate(n, 0.01);
        assert!((promised - 2.0 / 251.0).abs() < 1e-12);
        assert!(
            mean <= 0.01 && (mean - promised).abs() < 0.002,
            "mean false-alarm rate on new frames {mean}, promised {promised}"
        );
    }

    #[test]
    fn auroc_counts_ordered_pairs() {
        assert_eq!(auroc(&[0.4, 0.3], &[0.1, 0.2]), 0.0);
        // one of the four pairs is out of order
        assert_eq!(auroc(&[0.1, 0.3], &[0.2, 0.4]), 0.75);
    }
}
