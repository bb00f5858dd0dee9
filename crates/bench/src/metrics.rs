//! `calculate_metrics` of `vllm bench serve`, with numpy's statistics: `np.mean`, `np.std`
//! (population), `np.median` and `np.percentile` (linear interpolation), each 0 for an empty
//! list (vLLM passes `xs or 0`).

use crate::client::RequestOutput;
use crate::tokenizer::Tokenizer;
use llm_emu_sim::{median, percentile};

/// Mean, population standard deviation, median and the chosen percentiles, in ms.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Summary {
    pub mean_ms: f64,
    pub median_ms: f64,
    pub std_ms: f64,
    pub percentiles_ms: Vec<(f64, f64)>,
}

impl Summary {
    /// From values in seconds.
    pub fn of(xs: &[f64], percentiles: &[f64]) -> Summary {
        let mut v = xs.to_vec();
        v.sort_by(f64::total_cmp);
        let n = v.len() as f64;
        let (mean, std) = if v.is_empty() {
            (0.0, 0.0)
        } else {
            let m = v.iter().sum::<f64>() / n;
            let var = v.iter().map(|x| (x - m) * (x - m)).sum::<f64>() / n;
            (m, var.sqrt())
        };
        Summary {
            mean_ms: mean * 1000.0,
            median_ms: median(&v) * 1000.0,
            std_ms: std * 1000.0,
            percentiles_ms: percentiles
                .iter()
                .map(|&p| (p, percentile(&v, p) * 1000.0))
                .collect(),
        }
    }
}

/// Service-level objectives for goodput, ms (`--goodput ttft:500 tpot:50 e2el:...`).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Goodput {
    pub ttft_ms: Option<f64>,
    pub tpot_ms: Option<f64>,
    pub e2el_ms: Option<f64>,
}

impl Goodput {
    pub fn is_set(&self) -> bool {
        self.ttft_ms.is_some() || self.tpot_ms.is_some() || self.e2el_ms.is_some()
    }

    /// Parses vLLM's `KEY:VALUE` pairs.
    pub fn parse(pairs: &[String]) -> Result<Goodput, String> {
        let mut g = Goodput::default();
        for pair in pairs {
            let (k, v) = pair
                .split_once(':')
                .filter(|(_, v)| !v.contains(':'))
                .ok_or_else(|| {
                    format!(
                        "invalid --goodput `{pair}`: specify service level objectives as \
                         KEY:VALUE pairs, the key a metric name and the value in milliseconds"
                    )
                })?;
            let val: f64 = v
                .trim()
                .parse()
                .map_err(|_| format!("invalid --goodput `{pair}`: `{v}` is not a number"))?;
            if val.is_nan() || val < 0.0 {
                return Err(format!(
                    "invalid --goodput `{pair}`: the value must be non-negative"
                ));
            }
            match k {
                "ttft" => g.ttft_ms = Some(val),
                "tpot" => g.tpot_ms = Some(val),
                "e2el" => g.e2el_ms = Some(val),
                _ => {
                    return Err(format!(
                        "invalid --goodput metric `{k}`: should be one of ttft, tpot, e2el"
                    ))
                }
            }
        }
        Ok(g)
    }
}

/// vLLM's `BenchmarkMetrics`.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Metrics {
    pub completed: usize,
    pub failed: usize,
    pub total_input: usize,
    pub total_output: u64,
    pub request_throughput: f64,
    pub request_goodput: f64,
    pub output_throughput: f64,
    pub total_token_throughput: f64,
    pub ttft: Summary,
    pub tpot: Summary,
    pub itl: Summary,
    pub e2el: Summary,
    pub max_output_tokens_per_s: f64,
    pub max_concurrent_requests: u64,
    /// Per request: output tokens counted (0 for a failed request).
    pub actual_output_lens: Vec<u64>,
}

/// Computes the metrics of a run of `dur_s` seconds. Output tokens come from the usage chunk;
/// without one, from tokenizing the generated text (1 without a tokenizer), as vLLM does.
pub fn calculate(
    outputs: &[RequestOutput],
    dur_s: f64,
    tokenizer: Option<&dyn Tokenizer>,
    percentiles: &[f64],
    goodput: &Goodput,
) -> Metrics {
    let mut m = Metrics::default();
    let (mut itls, mut tpots, mut all_tpots, mut ttfts, mut e2els) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for o in outputs {
        if !o.success {
            m.actual_output_lens.push(0);
            continue;
        }
        let mut output_len = o.output_tokens;
        if output_len == 0 {
            output_len = match tokenizer {
                None => 1,
                Some(t) => t
                    .encode(&o.generated_text, false)
                    .map(|ids| ids.len() as u64)
                    .unwrap_or(0),
            };
        }
        m.actual_output_lens.push(output_len);
        m.total_input += o.prompt_len;
        let mut tpot = 0.0;
        if output_len > 1 {
            tpot = (o.latency - o.ttft) / (output_len - 1) as f64;
            tpots.push(tpot);
        }
        all_tpots.push(tpot);
        itls.extend_from_slice(&o.itl);
        ttfts.push(o.ttft);
        e2els.push(o.latency);
        m.completed += 1;
    }
    let mut good = 0usize;
    if goodput.is_set() {
        for i in 0..ttfts.len() {
            let ok = goodput.ttft_ms.is_none_or(|s| s / 1000.0 >= ttfts[i])
                && goodput.tpot_ms.is_none_or(|s| s / 1000.0 >= all_tpots[i])
                && goodput.e2el_ms.is_none_or(|s| s / 1000.0 >= e2els[i]);
            if ok {
                good += 1;
            }
        }
    }
    m.failed = outputs.len() - m.completed;
    m.total_output = m.actual_output_lens.iter().sum();
    let per_s = |x: f64| x / dur_s;
    m.request_throughput = per_s(m.completed as f64);
    m.request_goodput = per_s(good as f64);
    m.output_throughput = per_s(m.total_output as f64);
    m.total_token_throughput = per_s((m.total_input as u64 + m.total_output) as f64);
    m.ttft = Summary::of(&ttfts, percentiles);
    m.tpot = Summary::of(&tpots, percentiles);
    m.itl = Summary::of(&itls, percentiles);
    m.e2el = Summary::of(&e2els, percentiles);
    let (peak_tokens, peak_conc) = peaks(outputs);
    m.max_output_tokens_per_s = peak_tokens;
    m.max_concurrent_requests = peak_conc;
    m
}

/// vLLM's per-second buckets over the successful requests: the most output tokens received in
/// one second, and the most requests active in one second.
fn peaks(outputs: &[RequestOutput]) -> (f64, u64) {
    let ok: Vec<&RequestOutput> = outputs.iter().filter(|o| o.success).collect();
    if ok.is_empty() {
        return (0.0, 0);
    }
    let min_start = ok
        .iter()
        .map(|o| o.start_time)
        .fold(f64::INFINITY, f64::min);
    let max_end = ok
        .iter()
        .map(|o| o.start_time + o.latency)
        .fold(f64::NEG_INFINITY, f64::max);
    let n = (max_end - min_start).ceil() as usize + 1;
    let mut tokens = vec![0u64; n];
    let mut conc = vec![0u64; n];
    for o in &ok {
        let mut t = o.start_time + o.ttft;
        let mut bump = |t: f64| {
            let b = (t - min_start) as i64;
            if b >= 0 && (b as usize) < n {
                tokens[b as usize] += 1;
            }
        };
        bump(t);
        for gap in &o.itl {
            t += gap;
            bump(t);
        }
        let s = (o.start_time - min_start) as usize;
        let e = ((o.start_time + o.latency) - min_start) as usize;
        for c in conc.iter_mut().take(e.min(n - 1) + 1).skip(s) {
            *c += 1;
        }
    }
    (
        tokens.iter().copied().max().unwrap_or(0) as f64,
        conc.iter().copied().max().unwrap_or(0),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numpy_statistics() {
        // np.percentile([1,2,3,4,10], 99) = 9.76; np.percentile([3,1,2], 25) = 1.5;
        // np.std([1,2,4]) = 1.247219128924647.
        assert!((percentile(&[1.0, 2.0, 3.0, 4.0, 10.0], 99.0) - 9.76).abs() < 1e-12);
        assert_eq!(percentile(&[1.0, 2.0, 3.0], 25.0), 1.5);
        let s = Summary::of(&[0.001, 0.002, 0.004], &[50.0]);
        assert!((s.std_ms - 1.247219128924647).abs() < 1e-12);
        assert_eq!(s.median_ms, 2.0);
        assert_eq!(Summary::of(&[], &[99.0]).percentiles_ms, vec![(99.0, 0.0)]);
    }

    fn out(start: f64, ttft: f64, itl: &[f64], tokens: u64) -> RequestOutput {
        RequestOutput {
            success: true,
            start_time: start,
            ttft,
            latency: ttft + itl.iter().sum::<f64>(),
            itl: itl.to_vec(),
            output_tokens: tokens,
            prompt_len: 10,
            ..Default::default()
        }
    }

    #[test]
    fn vllm_definitions() {
        let outputs = vec![
            out(0.0, 0.1, &[0.05, 0.05, 0.05], 4),
            out(0.5, 0.2, &[], 1),
            RequestOutput {
                error: "boom".into(),
                prompt_len: 7,
                ..Default::default()
            },
        ];
        let g = Goodput {
            ttft_ms: Some(150.0),
            ..Default::default()
        };
        let m = calculate(&outputs, 2.0, None, &[99.0], &g);
        assert_eq!((m.completed, m.failed), (2, 1));
        assert_eq!(m.total_input, 20);
        assert_eq!(m.total_output, 5);
        assert_eq!(m.actual_output_lens, vec![4, 1, 0]);
        assert_eq!(m.request_throughput, 1.0);
        assert_eq!(m.request_goodput, 0.5);
        assert_eq!(m.output_throughput, 2.5);
        assert!((m.tpot.mean_ms - 50.0).abs() < 1e-9);
        assert!((m.ttft.mean_ms - 150.0).abs() < 1e-9);
        assert_eq!(m.max_output_tokens_per_s, 5.0);
        assert_eq!(m.max_concurrent_requests, 2);
    }

    #[test]
    fn goodput_parsing() {
        let g = Goodput::parse(&["ttft:500".into(), "e2el:2000.5".into()]).unwrap();
        assert_eq!(g.ttft_ms, Some(500.0));
        assert_eq!(g.e2el_ms, Some(2000.5));
        assert!(Goodput::parse(&["ttft".into()]).is_err());
        assert!(Goodput::parse(&["itl:5".into()]).is_err());
        assert!(Goodput::parse(&["ttft:-1".into()]).is_err());
        assert!(Goodput::parse(&["ttft:x".into()]).is_err());
    }
}
