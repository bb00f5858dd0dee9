//! CUDA-graph batch padding, as vLLM 0.19's model runner does it on the CPU before each forward.
//!
//! With CUDA graphs on (vLLM's default; off with `--enforce-eager`), vLLM captures one graph per
//! batch size in `cudagraph_capture_sizes` and runs a step of `T` tokens with the smallest
//! captured size `≥ T`: the device computes the padding rows too. Steps larger than the largest
//! captured size run without a graph, unpadded. The sizes follow `VllmConfig._set_cudagraph_sizes`
//! (`vllm/config/vllm.py`): the largest is `min(2 × max_num_seqs, 512, max_num_batched_tokens)`
//! (no speculative decoding), the list `[1, 2, 4]`, then every multiple of 8 below 256, then
//! every multiple of 16 from 256, each up to the largest; the padding is
//! `CudagraphDispatcher._bs_to_padded_graph_size` (`vllm/v1/cudagraph_dispatcher.py`).
//! Versions before 0.12 had another rule ([`CaptureRule::EveryEighth`]).

/// Which of vLLM's rules gives the default capture sizes: it changed in 0.12.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum CaptureRule {
    /// vLLM 0.10 and 0.11 (`VllmConfig._set_cudagraph_sizes`, `vllm/config/__init__.py`, with
    /// `SchedulerConfig.cuda_graph_sizes` defaulting to `[min(2 × max_num_seqs, 512)]`):
    /// `[1, 2, 4]` and every multiple of 8 up to that size, then every size above
    /// `max_num_batched_tokens` dropped.
    EveryEighth,
    /// vLLM 0.12 onwards (`vllm/config/vllm.py`): multiples of 8 below 256, of 16 from 256, up
    /// to `min(2 × max_num_seqs, 512, max_num_batched_tokens)`.
    #[default]
    SixteenthsFrom256,
    /// vLLM 0.19 with `performance_mode` `interactivity`: every size from 1 to 32, then as
    /// [`CaptureRule::SixteenthsFrom256`] (multiples of 8 below 256, of 16 from 256), up to the
    /// same largest size.
    Interactivity,
}

/// The captured batch sizes (tokens), ascending; empty when graphs are off.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CudaGraphSizes {
    sizes: Vec<usize>,
}

impl CudaGraphSizes {
    /// vLLM's default capture sizes for this engine configuration (vLLM 0.12 onwards).
    pub fn for_engine(
        max_num_seqs: usize,
        max_num_batched_tokens: usize,
        enforce_eager: bool,
    ) -> CudaGraphSizes {
        Self::by_rule(
            CaptureRule::SixteenthsFrom256,
            max_num_seqs,
            max_num_batched_tokens,
            None,
            enforce_eager,
        )
    }

    /// The capture sizes of the vLLM version whose rule is `rule`, up to `largest` where the
    /// run asked for it (`--max-cudagraph-capture-size`, 0.12 on; a one-element
    /// `--cuda-graph-sizes`, before), else the rule's own `min(2 × max_num_seqs, 512)`; none
    /// above `max_num_batched_tokens`.
    pub fn by_rule(
        rule: CaptureRule,
        max_num_seqs: usize,
        max_num_batched_tokens: usize,
        largest: Option<usize>,
        enforce_eager: bool,
    ) -> CudaGraphSizes {
        if enforce_eager {
            return CudaGraphSizes::default();
        }
        let largest = largest.unwrap_or((max_num_seqs * 2).min(512));
        if rule == CaptureRule::EveryEighth {
            let sizes = [1, 2, 4]
                .into_iter()
                .chain((8..=largest).step_by(8))
                .filter(|&s| s <= max_num_batched_tokens)
                .collect();
            return CudaGraphSizes { sizes };
        }
        let max = largest.min(max_num_batched_tokens);
        let mut sizes: Vec<usize> = if rule == CaptureRule::Interactivity {
            (1..=max.min(32)).collect()
        } else {
            [1, 2, 4].into_iter().filter(|&s| s <= max).collect()
        };
        if max >= 8 {
            sizes.extend((8..(max + 1).min(256)).step_by(8));
        }
        if max >= 256 {
            sizes.extend((256..=max).step_by(16));
        }
        sizes.sort_unstable();
        sizes.dedup();
        CudaGraphSizes { sizes }
    }

    /// Sizes a run recorded (vLLM's `compilation_config.cudagraph_capture_sizes`), in any
    /// order; zeros dropped. An empty list means no graphs.
    pub fn from_sizes(mut sizes: Vec<usize>) -> CudaGraphSizes {
        sizes.retain(|&s| s > 0);
        sizes.sort_unstable();
        sizes.dedup();
        CudaGraphSizes { sizes }
    }

    /// The captured sizes, ascending.
    pub fn sizes(&self) -> &[usize] {
        &self.sizes
    }

    /// Whether a step of `num_tokens` runs with a CUDA graph (vLLM's dispatcher gives a mode
    /// other than `NONE`): graphs are on and a captured size holds the step.
    pub fn runs_graph(&self, num_tokens: usize) -> bool {
        self.sizes.last().is_some_and(|&max| num_tokens <= max)
    }

    /// Tokens the device computes for a step of `num_tokens`: the smallest captured size that
    /// holds them, or `num_tokens` itself above the largest (or with graphs off).
    pub fn padded_tokens(&self, num_tokens: usize) -> usize {
        match self.sizes.partition_point(|&s| s < num_tokens) {
            i if i < self.sizes.len() => self.sizes[i],
            _ => num_tokens,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_follow_vllm_rule() {
        // max_num_seqs 128, 2048 batched tokens: largest size min(256, 512, 2048) = 256.
        let g = CudaGraphSizes::for_engine(128, 2048, false);
        let mut want = vec![1, 2, 4];
        want.extend((8..256).step_by(8));
        want.push(256);
        assert_eq!(g.sizes(), &want[..]);
        // vLLM's default max_num_seqs 1024 caps at 512, with 16-steps above 256.
        let g = CudaGraphSizes::for_engine(1024, 8192, false);
        assert_eq!(*g.sizes().last().unwrap(), 512);
        assert!(g.sizes().contains(&272) && !g.sizes().contains(&264));
        // A small token budget caps the largest size.
        let g = CudaGraphSizes::for_engine(256, 100, false);
        assert_eq!(*g.sizes().last().unwrap(), 96);
        assert!(CudaGraphSizes::for_engine(128, 2048, true)
            .sizes()
            .is_empty());
    }

    #[test]
    fn sizes_before_vllm_0_12_step_by_eight() {
        // 0.10/0.11 with max_num_seqs 1024: every multiple of 8 to 512, 264 included.
        let g = CudaGraphSizes::by_rule(CaptureRule::EveryEighth, 1024, 8192, None, false);
        assert_eq!(g.sizes().len(), 3 + 64);
        assert!(g.sizes().contains(&264) && g.sizes().contains(&512));
        // The token budget drops the sizes above it; below 256 both rules agree.
        let g = CudaGraphSizes::by_rule(CaptureRule::EveryEighth, 256, 100, None, false);
        assert_eq!(*g.sizes().last().unwrap(), 96);
        assert_eq!(
            CudaGraphSizes::by_rule(CaptureRule::EveryEighth, 64, 2048, None, false),
            CudaGraphSizes::for_engine(64, 2048, false)
        );
        assert!(
            CudaGraphSizes::by_rule(CaptureRule::EveryEighth, 64, 2048, None, true)
                .sizes()
                .is_empty()
        );
    }

    #[test]
    fn interactivity_captures_every_size_to_32() {
        // max_num_seqs 128: 1..=32, then 40, 48, ... 248, then 256.
        let g = CudaGraphSizes::by_rule(CaptureRule::Interactivity, 128, 2048, None, false);
        let mut want: Vec<usize> = (1..=32).collect();
        want.extend((40..256).step_by(8));
        want.push(256);
        assert_eq!(g.sizes(), &want[..]);
        // A budget of 20 tokens: 1..=20.
        let g = CudaGraphSizes::by_rule(CaptureRule::Interactivity, 128, 20, None, false);
        assert_eq!(g.sizes(), &(1..=20).collect::<Vec<_>>()[..]);
    }

    #[test]
    fn an_asked_largest_size_bounds_either_rule() {
        // --max-cudagraph-capture-size 64 (0.12 on): the rule up to 64.
        let g = CudaGraphSizes::by_rule(CaptureRule::SixteenthsFrom256, 256, 8192, Some(64), false);
        assert_eq!(*g.sizes().last().unwrap(), 64);
        assert_eq!(g.sizes().len(), 3 + 8);
        // Above 256 the 16-steps, and never above the token budget.
        let g = CudaGraphSizes::by_rule(CaptureRule::SixteenthsFrom256, 8, 300, Some(1024), false);
        assert_eq!(*g.sizes().last().unwrap(), 288);
        // --cuda-graph-sizes 40 (0.10/0.11): every multiple of 8 up to 40.
        let g = CudaGraphSizes::by_rule(CaptureRule::EveryEighth, 256, 8192, Some(40), false);
        assert_eq!(g.sizes(), &[1, 2, 4, 8, 16, 24, 32, 40]);
    }

    #[test]
    fn padding_rounds_up_within_captured_range() {
        let g = CudaGraphSizes::for_engine(128, 2048, false);
        assert_eq!(g.padded_tokens(1), 1);
        assert_eq!(g.padded_tokens(3), 4);
        assert_eq!(g.padded_tokens(5), 8);
        assert_eq!(g.padded_tokens(121), 128);
        assert_eq!(g.padded_tokens(256), 256);
        assert_eq!(g.padded_tokens(257), 257);
        assert_eq!(g.padded_tokens(2048), 2048);
        let eager = CudaGraphSizes::for_engine(128, 2048, true);
        assert_eq!(eager.padded_tokens(121), 121);
        assert!(!eager.runs_graph(1));
        assert!(g.runs_graph(256) && !g.runs_graph(257));
        // Recorded sizes replace the rule: 5 pads to 16 with only [1, 16, 64] captured.
        let rec = CudaGraphSizes::from_sizes(vec![64, 16, 1, 0, 16]);
        assert_eq!(rec.sizes(), &[1, 16, 64]);
        assert_eq!(rec.padded_tokens(5), 16);
        assert_eq!(rec.padded_tokens(65), 65);
    }
}
