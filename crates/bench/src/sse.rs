//! Server-sent events as `vllm bench serve`'s `StreamedResponseHandler` splits them: messages
//! end at a blank line (`\n\n`); a trailing `data: ` message without its blank line is taken
//! as soon as its payload is `[DONE]` or complete JSON. Bytes are buffered once per response
//! and messages are handed out as slices, so a token costs no allocation here.

/// Splits a response body into SSE messages.
#[derive(Default)]
pub struct SseSplitter {
    buf: Vec<u8>,
    /// Bytes of `buf` already handed out.
    start: usize,
}

/// One message, trimmed of surrounding whitespace.
#[derive(Debug, PartialEq, Eq)]
pub enum SseMessage<'a> {
    /// `data: [DONE]`.
    Done,
    /// The payload after `data: ` (or the whole message when it lacks the prefix, as vLLM
    /// then tries to parse it whole).
    Data(&'a [u8]),
}

fn trim(mut s: &[u8]) -> &[u8] {
    while let [first, rest @ ..] = s {
        if first.is_ascii_whitespace() {
            s = rest;
        } else {
            break;
        }
    }
    while let [rest @ .., last] = s {
        if last.is_ascii_whitespace() {
            s = rest;
        } else {
            break;
        }
    }
    s
}

fn find_blank_line(s: &[u8]) -> Option<usize> {
    s.windows(2).position(|w| w == b"\n\n")
}

/// Classifies one trimmed, non-empty message; `None` for SSE comments (`:` pings).
fn classify(msg: &[u8]) -> Option<SseMessage<'_>> {
    if msg.first() == Some(&b':') {
        return None;
    }
    let payload = msg.strip_prefix(b"data: ").unwrap_or(msg);
    if payload == b"[DONE]" {
        Some(SseMessage::Done)
    } else {
        Some(SseMessage::Data(payload))
    }
}

impl SseSplitter {
    /// Adds received bytes and calls `on_message` for each message now complete. Stops at
    /// the first error `on_message` returns.
    pub fn feed<E>(
        &mut self,
        bytes: &[u8],
        mut on_message: impl FnMut(SseMessage<'_>) -> Result<(), E>,
    ) -> Result<(), E> {
        if self.start > 0 && self.start == self.buf.len() {
            self.buf.clear();
            self.start = 0;
        }
        self.buf.extend_from_slice(bytes);
        while let Some(pos) = find_blank_line(&self.buf[self.start..]) {
            let end = self.start + pos;
            let msg = trim(&self.buf[self.start..end]);
            self.start = end + 2;
            if msg.is_empty() {
                continue;
            }
            if let Some(m) = classify(msg) {
                on_message(m)?;
            }
        }
        // vLLM's leniency: a last `data: ` message whose payload is already whole.
        let rest = &self.buf[self.start..];
        if let Some(payload) = rest.strip_prefix(b"data: ") {
            let payload = trim(payload);
            let whole = payload == b"[DONE]"
                || (!payload.is_empty()
                    && serde_json::from_slice::<serde::de::IgnoredAny>(payload).is_ok());
            if whole {
                let msg = trim(rest);
                self.start = self.buf.len();
                if let Some(m) = classify(msg) {
                    on_message(m)?;
                }
            }
        }
        if self.start > 0 && self.start * 2 > self.buf.len() {
            self.buf.drain(..self.start);
            self.start = 0;
        }
        Ok(())
    }

    /// Bytes received but not yet part of a complete message (an incomplete last event).
    pub fn pending(&self) -> &[u8] {
        trim(&self.buf[self.start..])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split(chunks: &[&str]) -> (Vec<String>, String) {
        let mut s = SseSplitter::default();
        let mut out = Vec::new();
        for c in chunks {
            s.feed(c.as_bytes(), |m| {
                out.push(match m {
                    SseMessage::Done => "DONE".to_string(),
                    SseMessage::Data(d) => String::from_utf8(d.to_vec()).unwrap(),
                });
                Ok::<(), ()>(())
            })
            .unwrap();
        }
        (out, String::from_utf8(s.pending().to_vec()).unwrap())
    }

    #[test]
    fn splits_like_vllm() {
        let (m, rest) = split(&[
            "data: {\"a\":1}\n\ndata: {\"b\"",
            ":2}\n\n: ping\n\n",
            "data: {\"c\":3}",
            "\n\ndata: [DONE]",
        ]);
        assert_eq!(m, ["{\"a\":1}", "{\"b\":2}", "{\"c\":3}", "DONE"]);
        assert_eq!(rest, "");
    }

    #[test]
    fn incomplete_tail_stays_pending() {
        let (m, rest) = split(&["data: {\"a\":1}\n\ndata: {\"b\":"]);
        assert_eq!(m, ["{\"a\":1}"]);
        assert_eq!(rest, "data: {\"b\":");
    }

    #[test]
    fn message_without_prefix_is_passed_whole() {
        let (m, _) = split(&["event: x\ndata: {}\n\n"]);
        assert_eq!(m, ["event: x\ndata: {}"]);
    }
}
