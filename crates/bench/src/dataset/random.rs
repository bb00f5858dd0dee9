//! vLLM's `RandomDataset`: synthetic prompts of chosen token lengths.
//!
//! Per request: input length uniform in `[⌊L·(1−r)⌋, ⌈L·(1+r)⌉]` (L = `--random-input-len`
//! minus the special tokens the tokenizer adds), output length likewise around
//! `--random-output-len` (at least 1), and an offset in `[0, vocab)`; the prompt is a shared
//! random prefix of `--random-prefix-len` tokens followed by the non-special tokens
//! `allowed[(offset + i + k) mod |allowed|]`, decoded to text and re-encoded until its length
//! is the target (vLLM's `gen_prompt_decode_to_target_len`, 10 tries). The structure is vLLM's;
//! the random draws come from a seeded PCG64 rather than numpy's `default_rng`, so lengths and
//! prompts are distributed as in vLLM but not identical to its sample for the same seed.

use super::{DatasetError, Prompt, SampleRequest};
use crate::tokenizer::Tokenizer;
use rand::{Rng, SeedableRng};
use rand_pcg::Pcg64;

pub struct RandomOptions<'a> {
    pub num_requests: usize,
    pub seed: i64,
    pub input_len: usize,
    pub output_len: usize,
    pub range_ratio: f64,
    pub prefix_len: usize,
    pub request_id_prefix: &'a str,
}

/// Decodes `tokens`, re-encodes, and pads with random ids or truncates until the re-encoded
/// length is `target` or the tries run out. Returns (prompt, final token count).
fn decode_to_target_len(
    tok: &dyn Tokenizer,
    mut tokens: Vec<u32>,
    target: usize,
    rng: &mut Pcg64,
) -> Result<(String, Vec<u32>), DatasetError> {
    let vocab = tok.vocab_size() as u32;
    let mut tries_left = 10;
    loop {
        let prompt = tok.decode(&tokens).map_err(DatasetError::Tokenizer)?;
        tokens = tok
            .encode(&prompt, false)
            .map_err(DatasetError::Tokenizer)?;
        if tries_left == 0 || tokens.len() == target {
            return Ok((prompt, tokens));
        }
        if tokens.len() < target {
            let missing = target - tokens.len();
            tokens.extend((0..missing).map(|_| rng.random_range(0..vocab)));
        } else {
            tokens.truncate(target);
        }
        tries_left -= 1;
    }
}

pub fn sample(
    tok: &dyn Tokenizer,
    o: &RandomOptions<'_>,
) -> Result<Vec<SampleRequest>, DatasetError> {
    if !(0.0..1.0).contains(&o.range_ratio) {
        return Err(DatasetError::Invalid(format!(
            "--random-range-ratio must be in [0, 1), got {}",
            o.range_ratio
        )));
    }
    let vocab = tok.vocab_size();
    if vocab == 0 {
        return Err(DatasetError::Tokenizer("empty vocabulary".into()));
    }
    let num_special = tok.num_special_tokens_to_add();
    let real_input_len = o.input_len.saturating_sub(num_special);
    let r = o.range_ratio;
    let input_low = (real_input_len as f64 * (1.0 - r)).floor() as usize;
    let input_high = (real_input_len as f64 * (1.0 + r)).ceil() as usize;
    let output_low = ((o.output_len as f64 * (1.0 - r)).floor() as usize).max(1);
    let output_high = ((o.output_len as f64 * (1.0 + r)).ceil() as usize).max(1);
    if o.prefix_len + input_low < 1 {
        return Err(DatasetError::Invalid(format!(
            "--random-input-len is too small: with {num_special} special tokens and \
             --random-range-ratio {r}, the shortest prompt would have {} tokens",
            o.prefix_len + input_low
        )));
    }
    let mut rng = Pcg64::seed_from_u64(o.seed as u64);
    let input_lens: Vec<usize> = (0..o.num_requests)
        .map(|_| rng.random_range(input_low..=input_high))
        .collect();
    let output_lens: Vec<usize> = (0..o.num_requests)
        .map(|_| rng.random_range(output_low..=output_high))
        .collect();
    let offsets: Vec<usize> = (0..o.num_requests)
        .map(|_| rng.random_range(0..vocab))
        .collect();
    let allowed: Vec<u32> = (0..vocab as u32).filter(|&t| !tok.is_special(t)).collect();
    if allowed.is_empty() {
        return Err(DatasetError::Tokenizer("every token id is special".into()));
    }
    let prefix = if o.prefix_len > 0 {
        let p: Vec<u32> = (0..o.prefix_len)
            .map(|_| allowed[rng.random_range(0..allowed.len())])
            .collect();
        decode_to_target_len(tok, p, o.prefix_len, &mut rng)?.1
    } else {
        Vec::new()
    };
    let mut out = Vec::with_capacity(o.num_requests);
    for i in 0..o.num_requests {
        let mut seq = prefix.clone();
        seq.extend((0..input_lens[i]).map(|k| allowed[(offsets[i] + i + k) % allowed.len()]));
        let target = o.prefix_len + input_lens[i];
        let (prompt, ids) = decode_to_target_len(tok, seq, target, &mut rng)?;
        out.push(SampleRequest {
            user: None,
            prompt: Prompt::Text(prompt),
            prompt_len: ids.len(),
            expected_output_len: output_lens[i],
            request_id: format!("{}{i}", o.request_id_prefix),
            send_at: None,
        });
    }
    Ok(out)
}
