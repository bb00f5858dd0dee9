//! A recorded workload replayed at its own arrival times: the LLMServingSim JSONL
//! (`arrival_time_ns`, `input_tok_ids`, `output_toks`), the plain format `llm-emu simulate`
//! reads or a Mooncake trace (`timestamp`, `input_length`, `output_length`, `hash_ids`),
//! through the same reader. Prompts go out as token ids (completions) or, for chat,
//! as their decoded text; each request asks for exactly its recorded output length. Generated
//! scenarios ([`llm_emu_sim::scenario`]) go out the same way ([`from_items`]).

use super::{DatasetError, DatasetReport, Prompt, SampleRequest};
use crate::tokenizer::Tokenizer;
use llm_emu_sim::{LineError, WorkloadItem, WorkloadReader};

pub struct WorkloadOptions<'a> {
    /// At most this many requests, from the start of the file; `None` for all.
    pub num_requests: Option<usize>,
    pub seed: u64,
    pub request_id_prefix: &'a str,
    /// Chat requests carry text: decode the token ids.
    pub decode_prompts: bool,
    /// Tokens per `hash_ids` entry of a Mooncake trace
    /// ([`llm_emu_sim::mooncake_trace::MOONCAKE_HASH_BLOCK_TOKENS`] in the published traces).
    pub hash_block_tokens: usize,
}

pub fn load(
    path: &std::path::Path,
    tok: Option<&dyn Tokenizer>,
    o: &WorkloadOptions<'_>,
    report: &mut DatasetReport,
) -> Result<Vec<SampleRequest>, DatasetError> {
    let reader = WorkloadReader::open(path, o.seed)
        .map_err(|e| DatasetError::Io {
            path: path.display().to_string(),
            source: e,
        })?
        .with_hash_block_tokens(o.hash_block_tokens);
    from_items(reader, &path.display().to_string(), tok, o, report)
}

/// The requests of workload items (a file's, or a generated scenario's `Ok` items), sent at
/// their arrival times counted from the first; each item's `tenant` goes out as `user`.
/// `source` names them in errors.
pub fn from_items(
    items: impl Iterator<Item = Result<WorkloadItem, LineError>>,
    source: &str,
    tok: Option<&dyn Tokenizer>,
    o: &WorkloadOptions<'_>,
    report: &mut DatasetReport,
) -> Result<Vec<SampleRequest>, DatasetError> {
    let mut out = Vec::new();
    for item in items {
        if o.num_requests.is_some_and(|n| out.len() >= n) {
            break;
        }
        let item = match item {
            Ok(i) => i,
            Err(e) => {
                report.malformed(e.to_string());
                continue;
            }
        };
        report.entries += 1;
        let ids: Vec<u32> = item.prompt_token_ids.ids().into_owned();
        let prompt_len = ids.len();
        let prompt = if o.decode_prompts {
            let tok = tok.ok_or_else(|| {
                DatasetError::Invalid("chat requests need a tokenizer to decode prompts".into())
            })?;
            Prompt::Text(tok.decode(&ids).map_err(DatasetError::Tokenizer)?)
        } else {
            Prompt::Tokens(ids)
        };
        out.push(SampleRequest {
            prompt,
            prompt_len,
            expected_output_len: item.output_len as usize,
            request_id: format!("{}{}", o.request_id_prefix, out.len()),
            send_at: Some(item.arrival.as_secs_f64()),
            user: item.tenant.as_deref().map(str::to_string),
        });
    }
    if out.is_empty() {
        // Every line was refused: say why, as the lines' own messages do.
        let why = match report.malformed_samples.as_slice() {
            [] => String::new(),
            first => format!(
                " ({} lines refused; the first: {})",
                report.malformed,
                first.iter().take(3).cloned().collect::<Vec<_>>().join("; ")
            ),
        };
        return Err(DatasetError::Invalid(format!(
            "{source}: no usable request{why}"
        )));
    }
    // Times are offsets from the first request.
    let t0 = out[0].send_at.unwrap_or(0.0);
    for r in &mut out {
        r.send_at = r.send_at.map(|t| t - t0);
    }
    report.sampled = out.len();
    Ok(out)
}
