//! Flags on how a workload file is read, shared by the commands that read one.

use clap::Args;
use llm_emu_sim::mooncake_trace::MOONCAKE_HASH_BLOCK_TOKENS;
use llm_emu_sim::WorkloadReader;

#[derive(Args, Clone, Debug)]
pub struct WorkloadFlags {
    /// Tokens per `hash_ids` entry in a Mooncake trace workload (`timestamp`, `input_length`,
    /// `output_length`, `hash_ids`): each hash id stands for a block of this many prompt
    /// tokens, shared by every request that lists it. The published Mooncake traces use 512.
    #[arg(long, value_name = "TOKENS", default_value_t = MOONCAKE_HASH_BLOCK_TOKENS as u32,
          value_parser = clap::value_parser!(u32).range(1..))]
    pub hash_block_size: u32,
}

impl WorkloadFlags {
    /// The reader, told these flags.
    pub fn apply<R: std::io::BufRead>(&self, reader: WorkloadReader<R>) -> WorkloadReader<R> {
        reader.with_hash_block_tokens(self.hash_block_size as usize)
    }
}
