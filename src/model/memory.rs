//! Rough memory estimates, so a length or batch the machine cannot hold is a clear error up front
//! rather than an allocation failure halfway through.

/// Bytes the OS reports as available (Linux `MemAvailable`); `None` where unknown.
pub fn available_bytes() -> Option<u64> {
    let info = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = info.lines().find(|l| l.starts_with("MemAvailable:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// Reads the process's peak resident set size in MiB (Linux `VmHWM`), if available.
pub fn peak_rss_mib() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024.0)
}

/// Resets the peak RSS to the current RSS (Linux >= 4.0, `clear_refs` mode 5), so the next
/// [`peak_rss_mib`] covers only what runs in between. False where that is not possible.
pub fn reset_peak_rss() -> bool {
    std::fs::write("/proc/self/clear_refs", "5").is_ok()
}

const F32: u64 = 4;
/// Activations a training step keeps per token and layer, in units of `d_model` (residual,
/// norms, q/k/v, attention output, MLP in/out: a generous count for the backward pass).
const TRAIN_ACTS_PER_TOKEN: u64 = 16;

/// Bytes of the activations a training step keeps for its backward, both trainers alike.
fn activation_bytes(batch: usize, len: usize, layers: usize, d_model: usize, d_ff: usize) -> u64 {
    let (b, l, n) = (batch as u64, len as u64, layers as u64);
    n * b * l * (TRAIN_ACTS_PER_TOKEN * d_model as u64 + 3 * d_ff as u64) * F32
}

/// Approximate peak bytes of one training step with full attention.
pub fn train_step_bytes(
    batch: usize,
    len: usize,
    layers: usize,
    heads: usize,
    d_model: usize,
    d_ff: usize,
    vocab: usize,
) -> u64 {
    let (b, l, n, h, v) = (
        batch as u64,
        len as u64,
        layers as u64,
        heads as u64,
        vocab as u64,
    );
    // Scores, probabilities and their gradients per layer: 3 x (b, h, l, l).
    let attention = n * 3 * b * h * l * l * F32;
    let activations = activation_bytes(batch, len, layers, d_model, d_ff);
    // Logits and their gradient.
    let logits = 2 * b * l * v * F32;
    attention + activations + logits
}

/// Approximate peak bytes of one step of the fast CPU trainer (`train::fast`): the activations a
/// backward needs (as [`train_step_bytes`] counts them), one log-sum-exp per (layer, head,
/// position) instead of `(len x len)` probabilities, one block of scores per thread, the fused
/// head's slice of logits, and the parameters with their gradients and AdamW moments.
#[allow(clippy::too_many_arguments)]
pub fn fast_train_step_bytes(
    batch: usize,
    len: usize,
    layers: usize,
    heads: usize,
    d_model: usize,
    d_ff: usize,
    vocab: usize,
    params: usize,
    threads: usize,
) -> u64 {
    let (b, l, n, h, v) = (
        batch as u64,
        len as u64,
        layers as u64,
        heads as u64,
        vocab as u64,
    );
    let activations = activation_bytes(batch, len, layers, d_model, d_ff);
    let lse = n * b * h * l * F32;
    // Scores and their gradient for a block of 64 queries, per thread.
    let scratch = threads.max(1) as u64 * 2 * 64 * l * F32;
    let logits = (b * l).min(512) * v * F32;
    let state = 4 * params as u64 * F32;
    activations + lse + scratch + logits + state
}

/// Approximate peak bytes of an inference forward pass with blocked attention.
pub fn eval_bytes(
    batch: usize,
    len: usize,
    d_model: usize,
    d_ff: usize,
    dtype_bytes: usize,
) -> u64 {
    let (b, l, d, f) = (batch as u64, len as u64, d_model as u64, d_ff as u64);
    // A few residual-sized tensors, q/k/v, the MLP hidden state, plus the bounded score blocks.
    let acts = b * l * (8 * d + 2 * f) * dtype_bytes as u64;
    let scores = 3 * super::transformer::SCORE_BLOCK_ELEMENTS as u64 * F32;
    acts + scores
}

/// `Err` with a one-line message when `need` bytes exceed what is available.
pub fn check(need: u64, what: &str, hint: &str) -> Result<(), String> {
    match available_bytes() {
        Some(avail) if need > avail => Err(format!(
            "{what} needs about {:.1} GiB but only {:.1} GiB of memory is available (hint: {hint})",
            need as f64 / (1u64 << 30) as f64,
            avail as f64 / (1u64 << 30) as f64
        )),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn estimates_grow_as_expected_and_huge_requests_fail() {
        let small = train_step_bytes(16, 128, 4, 8, 128, 512, 4096);
        let long = train_step_bytes(16, 1024, 4, 8, 128, 512, 4096);
        assert!(long > 20 * small, "attention is quadratic: {small} {long}");
        assert!(eval_bytes(1, 2048, 128, 512, 4) < eval_bytes(1, 4096, 128, 512, 4));
        if available_bytes().is_some() {
            let huge = train_step_bytes(16, 1 << 20, 4, 8, 128, 512, 4096);
            assert!(
                check(huge, "training", "lower --train-len")
                    .unwrap_err()
                    .contains("GiB")
            );
            assert!(check(1024, "x", "y").is_ok());
        }
    }

    #[test]
    fn the_fast_trainer_estimate_has_no_quadratic_term() {
        // The shape: d256 x 6 layers, train_len 256, batch 16 (5.8 M parameters). Measured
        // peak RSS of the whole process: 925 MiB; the candle path's estimate is 1.6 GB.
        let fast = fast_train_step_bytes(16, 256, 6, 8, 256, 1024, 4096, 5_800_000, 2);
        let candle = train_step_bytes(16, 256, 6, 8, 256, 1024, 4096);
        let mib = fast as f64 / (1 << 20) as f64;
        assert!((700.0..1000.0).contains(&mib), "{mib} MiB");
        assert!(candle > fast * 3 / 2);
        // Doubling the length doubles it (no len x len tensors), up to the per-thread block.
        let long = fast_train_step_bytes(16, 512, 6, 8, 256, 1024, 4096, 5_800_000, 2);
        assert!(long < 2 * fast + (1 << 20), "{fast} {long}");
    }
}
