//! Log-probabilities of the synthetic output tokens, in vLLM's response shapes.
//!
//! There is no model, so the values are synthetic: the sampled token is the most likely one
//! (rank 1) with a log-probability in [−1.5, −0.05], and the alternatives that follow it are
//! words of the vocabulary with log-probabilities falling by 0.2–2.0 per rank. Everything else
//! follows vLLM 0.19: the per-position dictionary holds the sampled token first, then the top
//! tokens by rank (`v1/engine/logprobs.py::_make_logprob_dict`; the sampled token being rank 1,
//! it is also the first top token, so `n` top log-probs give `max(n, 1)` entries); tokens are
//! shown as `tokenizer.decode([id])`; completions list `n` of them per position
//! (`_create_completion_logprobs`), chat `top_logprobs` of them (`_get_top_logprobs`), both
//! floored at −9999.

use serde::ser::{SerializeMap, Serializer};
use serde::Serialize;
use std::sync::Arc;

/// The log-probabilities of one output position: `(token id, logprob)`, the sampled token
/// first, then the next ranks.
#[derive(Clone, Debug, PartialEq)]
pub struct PositionLogprobs {
    pub entries: Vec<(u32, f64)>,
}

impl PositionLogprobs {
    /// The sampled token's id and log-probability.
    pub fn sampled(&self) -> (u32, f64) {
        self.entries[0]
    }

    /// The log-probability of `id` at this position (the sampled token's if `id` is not
    /// listed).
    pub fn of(&self, id: u32) -> f64 {
        self.entries
            .iter()
            .find(|(t, _)| *t == id)
            .map_or(self.sampled().1, |&(_, v)| v)
    }
}

/// A 64-bit mix (SplitMix64's finaliser): the same inputs give the same values.
fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// A uniform draw in [0, 1) from a hash.
fn unit(h: u64) -> f64 {
    (h >> 11) as f64 / (1u64 << 53) as f64
}

/// Synthetic log-probabilities for `sampled` at `position` of a request whose draws are keyed
/// by `salt`, with `num_top` top tokens asked for. `alternative(k)` names the k-th candidate
/// for the other ranks (candidates equal to the sampled token or already listed are skipped).
pub fn synthesize(
    sampled: u32,
    position: usize,
    num_top: usize,
    salt: u64,
    mut alternative: impl FnMut(u64) -> u32,
) -> PositionLogprobs {
    let key = mix(salt ^ mix(position as u64) ^ (u64::from(sampled) << 32));
    let mut lp = -(0.05 + 1.45 * unit(mix(key)));
    let mut entries = vec![(sampled, lp)];
    let mut k = 0u64;
    while entries.len() < num_top.max(1) && k < 64 * num_top as u64 + 64 {
        let id = alternative(mix(key ^ k.wrapping_mul(0xA24B_AED4_963E_E407)));
        k += 1;
        if entries.iter().any(|&(t, _)| t == id) {
            continue;
        }
        lp -= 0.2 + 1.8 * unit(mix(key.wrapping_add(k)));
        entries.push((id, lp));
    }
    PositionLogprobs { entries }
}

/// vLLM's floor for log-probabilities in responses (`max(logprob, -9999.0)`).
fn floored(lp: f64) -> f64 {
    lp.max(-9999.0)
}

/// A JSON object that keeps insertion order and, as a Python dict built key by key, keeps a
/// repeated key at its first place with its last value.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct OrderedFloats(pub Vec<(String, f64)>);

impl OrderedFloats {
    fn insert(&mut self, k: String, v: f64) {
        match self.0.iter_mut().find(|(key, _)| *key == k) {
            Some(slot) => slot.1 = v,
            None => self.0.push((k, v)),
        }
    }
}

impl Serialize for OrderedFloats {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(Some(self.0.len()))?;
        for (k, v) in &self.0 {
            m.serialize_entry(k, v)?;
        }
        m.end()
    }
}

/// `CompletionLogProbs`.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct CompletionLogprobs {
    pub text_offset: Vec<usize>,
    pub token_logprobs: Vec<Option<f64>>,
    pub tokens: Vec<String>,
    pub top_logprobs: Vec<Option<OrderedFloats>>,
}

/// `_create_completion_logprobs`: `positions` pairs each token id with its log-probabilities
/// (`None`: none were computed, e.g. the first prompt token of an echo); offsets count
/// characters from `initial_text_offset`.
pub fn completion_logprobs(
    positions: &[(u32, Option<&PositionLogprobs>)],
    num_top: usize,
    initial_text_offset: usize,
    decode: &dyn Fn(u32) -> String,
) -> CompletionLogprobs {
    let mut out = CompletionLogprobs::default();
    let mut last_len = 0;
    for (id, lp) in positions {
        let token = decode(*id);
        match lp {
            None => {
                out.token_logprobs.push(None);
                out.top_logprobs.push(None);
            }
            Some(lp) => {
                out.token_logprobs.push(Some(floored(lp.of(*id))));
                let mut top = OrderedFloats::default();
                for (i, &(t, v)) in lp.entries.iter().enumerate() {
                    if num_top >= i {
                        top.insert(decode(t), floored(v));
                    }
                }
                out.top_logprobs.push(Some(top));
            }
        }
        let offset = match out.text_offset.last() {
            None => initial_text_offset,
            Some(prev) => prev + last_len,
        };
        out.text_offset.push(offset);
        last_len = token.chars().count();
        out.tokens.push(token);
    }
    out
}

/// The `echo`ed prompt's part of a completion's `logprobs`: the same for every choice of the
/// prompt (vLLM computes prompt log-probabilities once per prompt), so it is built once per
/// request, off the HTTP workers, and shared.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct EchoLogprobs {
    /// Offsets count from 0 (the echoed prompt starts the choice's text).
    pub logprobs: CompletionLogprobs,
    /// Characters of all the prompt's token strings: where the output's offsets start.
    pub chars: usize,
}

/// The echoed prompt's log-probabilities: the first token has none (vLLM's prompt
/// log-probabilities start at the second token), each other is synthesized with `num_top` top
/// tokens, keyed by `salt`.
pub fn echo_logprobs(
    prompt: &[u32],
    num_top: usize,
    salt: u64,
    alternative: &dyn Fn(u64) -> u32,
    decode: &dyn Fn(u32) -> String,
) -> EchoLogprobs {
    let lps: Vec<PositionLogprobs> = prompt
        .iter()
        .enumerate()
        .skip(1)
        .map(|(j, &t)| synthesize(t, j, num_top, salt, alternative))
        .collect();
    let positions: Vec<(u32, Option<&PositionLogprobs>)> = prompt
        .iter()
        .enumerate()
        .map(|(j, &t)| (t, j.checked_sub(1).map(|k| &lps[k])))
        .collect();
    let logprobs = completion_logprobs(&positions, num_top, 0, decode);
    let chars = match (logprobs.text_offset.last(), logprobs.tokens.last()) {
        (Some(&offset), Some(token)) => offset + token.chars().count(),
        _ => 0,
    };
    EchoLogprobs { logprobs, chars }
}

/// A choice's completion `logprobs`: the shared echoed prompt part (if any), then the choice's
/// own output part, serialized as one `CompletionLogProbs` without copying the shared part.
#[derive(Clone, Debug, Default)]
pub struct ChoiceLogprobs {
    pub echo: Option<Arc<EchoLogprobs>>,
    pub output: CompletionLogprobs,
}

impl ChoiceLogprobs {
    /// The two parts as one (tests and callers that need the whole lists).
    pub fn joined(&self) -> CompletionLogprobs {
        let mut out = self
            .echo
            .as_ref()
            .map(|e| e.logprobs.clone())
            .unwrap_or_default();
        out.text_offset.extend_from_slice(&self.output.text_offset);
        out.token_logprobs
            .extend_from_slice(&self.output.token_logprobs);
        out.tokens.extend_from_slice(&self.output.tokens);
        out.top_logprobs
            .extend_from_slice(&self.output.top_logprobs);
        out
    }
}

/// A list serialized as the shared part's items, then the choice's own.
struct Chained<'a, T>(&'a [T], &'a [T]);

impl<T: Serialize> Serialize for Chained<'_, T> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.0.iter().chain(self.1))
    }
}

impl Serialize for ChoiceLogprobs {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let empty = CompletionLogprobs::default();
        let e = self.echo.as_ref().map_or(&empty, |e| &e.logprobs);
        let o = &self.output;
        let mut m = s.serialize_map(Some(4))?;
        m.serialize_entry("text_offset", &Chained(&e.text_offset, &o.text_offset))?;
        m.serialize_entry(
            "token_logprobs",
            &Chained(&e.token_logprobs, &o.token_logprobs),
        )?;
        m.serialize_entry("tokens", &Chained(&e.tokens, &o.tokens))?;
        m.serialize_entry("top_logprobs", &Chained(&e.top_logprobs, &o.top_logprobs))?;
        m.end()
    }
}

/// `ChatCompletionLogProb`.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ChatTopLogprob {
    pub token: String,
    pub logprob: f64,
    pub bytes: Option<Vec<u8>>,
}

/// `ChatCompletionLogProbsContent`.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ChatLogprobContent {
    pub token: String,
    pub logprob: f64,
    pub bytes: Option<Vec<u8>>,
    pub top_logprobs: Vec<ChatTopLogprob>,
}

/// `ChatCompletionLogProbs`.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct ChatLogprobs {
    pub content: Vec<ChatLogprobContent>,
}

/// `_create_chat_logprobs` with `_get_top_logprobs`: `top_logprobs` entries per position (the
/// sampled token first), all of them for −1.
pub fn chat_logprobs(
    positions: &[(u32, &PositionLogprobs)],
    top_logprobs: i64,
    decode: &dyn Fn(u32) -> String,
) -> ChatLogprobs {
    let content = positions
        .iter()
        .map(|(id, lp)| {
            let own = lp.of(*id);
            let token = decode(*id);
            let top = lp
                .entries
                .iter()
                .enumerate()
                .filter(|(i, _)| top_logprobs == -1 || (*i as i64) < top_logprobs)
                .map(|(_, &(t, v))| {
                    let s = decode(t);
                    ChatTopLogprob {
                        bytes: Some(s.as_bytes().to_vec()),
                        token: s,
                        logprob: floored(v),
                    }
                })
                .collect();
            ChatLogprobContent {
                bytes: Some(token.as_bytes().to_vec()),
                token,
                logprob: floored(own),
                top_logprobs: top,
            }
        })
        .collect();
    ChatLogprobs { content }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn alt(h: u64) -> u32 {
        (h % 1000) as u32
    }

    fn word(id: u32) -> String {
        format!(" w{id}")
    }

    #[test]
    fn the_sampled_token_comes_first_and_ranks_fall() {
        let lp = synthesize(7, 3, 5, 42, alt);
        assert_eq!(lp.entries.len(), 5);
        assert_eq!(lp.sampled().0, 7);
        assert!(lp.entries.windows(2).all(|w| w[0].1 > w[1].1));
        assert!(lp.entries.iter().all(|&(_, v)| v < 0.0));
        let mut ids: Vec<u32> = lp.entries.iter().map(|e| e.0).collect();
        ids.sort();
        ids.dedup();
        assert_eq!(ids.len(), 5, "distinct tokens");
        assert_eq!(synthesize(7, 3, 5, 42, alt), lp, "deterministic");
        assert_eq!(synthesize(7, 0, 0, 42, alt).entries.len(), 1);
    }

    #[test]
    fn completion_shape_follows_vllm() {
        let a = synthesize(1, 0, 2, 9, alt);
        let b = synthesize(2, 1, 2, 9, alt);
        let out = completion_logprobs(&[(5, None), (1, Some(&a)), (2, Some(&b))], 2, 10, &word);
        assert_eq!(out.tokens, vec![" w5", " w1", " w2"]);
        // Offsets advance by each token's length in characters.
        assert_eq!(out.text_offset, vec![10, 13, 16]);
        assert_eq!(out.token_logprobs[0], None);
        assert_eq!(out.token_logprobs[1], Some(a.sampled().1));
        assert_eq!(out.top_logprobs[0], None);
        let top = out.top_logprobs[1].as_ref().unwrap();
        assert_eq!(top.0.len(), 2);
        assert_eq!(top.0[0].0, " w1");
        let json = serde_json::to_string(&out).unwrap();
        assert!(json.starts_with(r#"{"text_offset":[10,13,16],"token_logprobs":[null,"#));
    }

    #[test]
    fn a_repeated_key_keeps_its_first_place_and_last_value() {
        let mut m = OrderedFloats::default();
        m.insert("a".into(), -1.0);
        m.insert("b".into(), -2.0);
        m.insert("a".into(), -3.0);
        assert_eq!(serde_json::to_string(&m).unwrap(), r#"{"a":-3.0,"b":-2.0}"#);
    }

    #[test]
    fn chat_lists_top_logprobs_entries_with_bytes() {
        let a = synthesize(1, 0, 3, 9, alt);
        let out = chat_logprobs(&[(1, &a)], 2, &word);
        let c = &out.content[0];
        assert_eq!(c.token, " w1");
        assert_eq!(c.bytes.as_deref(), Some(" w1".as_bytes()));
        assert_eq!(c.top_logprobs.len(), 2);
        assert_eq!(c.top_logprobs[0].token, " w1");
        assert!(chat_logprobs(&[(1, &a)], 0, &word).content[0]
            .top_logprobs
            .is_empty());
        assert_eq!(
            chat_logprobs(&[(1, &a)], -1, &word).content[0]
                .top_logprobs
                .len(),
            3
        );
    }
}
