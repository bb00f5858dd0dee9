//! Chat templates that requests bring (`--trust-request-chat-template`) rendered in a child
//! process under hard limits.
//!
//! minijinja's fuel counts template instructions, and the output and the filters are bounded
//! (`llm_emu_text`), but an operator builds its value with no hook to stop it: `s ~ s` doubled
//! a few dozen times, or `[1] * 10**9 ~ ''`, asks for gigabytes in one instruction. So a
//! template a request brought is rendered by another process — `llm-emu render-template`, the
//! program of [`SandboxConfig`] — with its address space, CPU time and output capped; if it
//! is killed or goes over a limit the request gets a 400 (as vLLM answers any exception
//! raised while applying a chat template) and the server goes on. The tokenizer's own
//! templates render in the server process, as before.
//!
//! Protocol: the child reads a JSON [`RenderRequest`] (template and variables) on stdin and
//! writes one reply on stdout: a tag byte ([`REPLY_TEXT`], [`REPLY_ERROR`], [`REPLY_LIMIT`])
//! followed by the rendered text or the error's message. [`render_request`] is the child's
//! side; [`TemplateSandbox`] the server's.
//!
//! At most [`SandboxLimits::max_parallel`] children run at once; requests beyond that wait
//! (asynchronously, before taking a text-work slot) for one to end, so a flood of
//! trusted-template requests cannot fork the machine to its knees.

use llm_emu_text::{TemplateRenderer, TextError, TEMPLATE_OUTPUT_LIMIT_BYTES};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::borrow::Cow;
use std::ffi::OsString;
use std::os::unix::process::ExitStatusExt as _;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWriteExt as _};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// The reply tag of a rendered prompt (the text follows).
pub const REPLY_TEXT: u8 = b'=';
/// The reply tag of a template error (the message follows).
pub const REPLY_ERROR: u8 = b'!';
/// The reply tag of a bound the render hit (the message follows).
pub const REPLY_LIMIT: u8 = b'#';

/// The hidden `llm-emu` subcommand that renders one template ([`render_request`]).
pub const RENDER_TEMPLATE_SUBCOMMAND: &str = "render-template";

/// Bytes of stderr kept from a child that failed (the first line goes into the error).
const STDERR_KEPT_BYTES: usize = 4096;

/// What the server sends the child.
#[derive(Debug, Serialize, Deserialize)]
pub struct RenderRequest<'a> {
    #[serde(borrow)]
    pub template: Cow<'a, str>,
    pub context: Cow<'a, Value>,
}

/// The hard limits on one render's process.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SandboxLimits {
    /// Address space (`RLIMIT_AS`) and data segment (`RLIMIT_DATA`), bytes. A render of the
    /// largest prompt the output limit allows, from a request at the body limit, needs a few
    /// hundred MiB.
    pub memory_bytes: u64,
    /// CPU time (`RLIMIT_CPU`), seconds: SIGXCPU then, SIGKILL a second later. Above the
    /// fuel limit's cost (about 1–2 s for 10 M instructions), so fuel stops a loop first.
    pub cpu_seconds: u64,
    /// Wall-clock bound on one render, spawn to exit; the child is killed past it.
    pub wall_timeout: Duration,
    /// Bytes of reply read; a child that writes more is killed. The rendered text is at most
    /// `TEMPLATE_OUTPUT_LIMIT_BYTES`, plus the tag byte.
    pub max_reply_bytes: usize,
    /// Children running at once.
    pub max_parallel: usize,
}

impl Default for SandboxLimits {
    fn default() -> Self {
        SandboxLimits {
            memory_bytes: 512 << 20,
            cpu_seconds: 3,
            wall_timeout: Duration::from_secs(6),
            max_reply_bytes: TEMPLATE_OUTPUT_LIMIT_BYTES + 1,
            max_parallel: std::thread::available_parallelism()
                .map_or(1, |n| n.get())
                .min(4),
        }
    }
}

/// The program that renders a template (`llm-emu render-template`), and its limits.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SandboxConfig {
    pub program: PathBuf,
    pub args: Vec<OsString>,
    pub limits: SandboxLimits,
}

impl SandboxConfig {
    /// `program args…` with the default limits.
    pub fn new(
        program: impl Into<PathBuf>,
        args: impl IntoIterator<Item = impl Into<OsString>>,
    ) -> Self {
        SandboxConfig {
            program: program.into(),
            args: args.into_iter().map(Into::into).collect(),
            limits: SandboxLimits::default(),
        }
    }

    /// The `llm-emu` binary at `exe` (`std::env::current_exe()`), run as
    /// `exe render-template`.
    pub fn llm_emu(exe: impl Into<PathBuf>) -> Self {
        SandboxConfig::new(exe, [RENDER_TEMPLATE_SUBCOMMAND])
    }
}

/// Renders request templates in child processes, at most `max_parallel` at once.
#[derive(Debug)]
pub struct TemplateSandbox {
    config: SandboxConfig,
    slots: Arc<Semaphore>,
}

impl TemplateSandbox {
    pub fn new(config: SandboxConfig) -> Arc<Self> {
        let slots = Arc::new(Semaphore::new(config.limits.max_parallel.max(1)));
        Arc::new(TemplateSandbox { config, slots })
    }

    /// Waits for a free child slot; the ticket renders (in a blocking context) while it lives.
    pub async fn ticket(self: &Arc<Self>) -> SandboxTicket {
        let slot = self
            .slots
            .clone()
            .acquire_owned()
            .await
            .expect("the sandbox's semaphore is never closed");
        SandboxTicket {
            sandbox: self.clone(),
            _slot: slot,
        }
    }

    /// Renders in a child: spawn, feed, read the reply and wait, all within the wall timeout.
    async fn render(&self, template: &str, context: &Value) -> Result<String, TextError> {
        let limits = &self.config.limits;
        let input = serde_json::to_vec(&RenderRequest {
            template: Cow::Borrowed(template),
            context: Cow::Borrowed(context),
        })
        .map_err(|e| TextError::Template(format!("the template's variables: {e}")))?;
        let mut cmd = tokio::process::Command::new(&self.config.program);
        cmd.args(&self.config.args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let (memory, cpu) = (limits.memory_bytes, limits.cpu_seconds);
        // SAFETY: the closure runs between fork and exec and only calls getrlimit/setrlimit,
        // which are async-signal-safe; it allocates nothing.
        unsafe {
            cmd.pre_exec(move || apply_limits(memory, cpu));
        }
        let mut child = cmd.spawn().map_err(|source| TextError::Io {
            path: self.config.program.clone(),
            source,
        })?;
        let (Some(mut stdin), Some(stdout), Some(stderr)) =
            (child.stdin.take(), child.stdout.take(), child.stderr.take())
        else {
            return Err(stopped("its pipes could not be opened".into()));
        };
        let max_reply = limits.max_reply_bytes;
        let exchange = async {
            let feed = async {
                // A child that dies early closes its stdin: its exit status tells why.
                let _ = stdin.write_all(&input).await;
                drop(stdin);
                Ok::<(), ()>(())
            };
            let (_, reply, err) = tokio::try_join!(
                feed,
                read_capped(stdout, max_reply, true),
                read_capped(stderr, STDERR_KEPT_BYTES, false)
            )?;
            let status = child.wait().await.map_err(|_| ())?;
            Ok::<_, ()>((reply, err, status))
        };
        match tokio::time::timeout(limits.wall_timeout, exchange).await {
            Err(_) => {
                let _ = child.kill().await;
                Err(stopped(format!(
                    "it did not finish within {} s",
                    limits.wall_timeout.as_secs_f64()
                )))
            }
            Ok(Err(())) => {
                let _ = child.kill().await;
                Err(TextError::TemplateLimit(format!(
                    "the chat template's output exceeds {TEMPLATE_OUTPUT_LIMIT_BYTES} bytes"
                )))
            }
            Ok(Ok((reply, err, status))) => {
                if status.success() {
                    return parse_reply(reply);
                }
                Err(self.failure(status, &err))
            }
        }
    }

    /// Why a child that did not exit cleanly failed, as the client is told.
    fn failure(&self, status: std::process::ExitStatus, stderr: &[u8]) -> TextError {
        let limits = &self.config.limits;
        let first_line = String::from_utf8_lossy(stderr)
            .lines()
            .next()
            .unwrap_or_default()
            .to_string();
        let memory = format!(
            "it ran out of its memory limit of {} bytes",
            limits.memory_bytes
        );
        match status.signal() {
            Some(libc::SIGXCPU) | Some(libc::SIGKILL) => stopped(format!(
                "it used up its CPU time limit of {} s",
                limits.cpu_seconds
            )),
            _ if first_line.contains("memory allocation") => stopped(memory),
            Some(libc::SIGABRT) | Some(libc::SIGSEGV) | Some(libc::SIGBUS) => stopped(memory),
            Some(sig) => stopped(format!("it was ended by signal {sig}")),
            None => stopped(format!(
                "it exited with status {}: {first_line}",
                status.code().unwrap_or(-1)
            )),
        }
    }
}

/// A render that the sandbox stopped: a 400, as vLLM answers a template that fails.
fn stopped(why: String) -> TextError {
    TextError::TemplateLimit(format!("the chat template's render process stopped: {why}"))
}

/// A claim on one child slot, and the renderer that uses it.
#[derive(Debug)]
pub struct SandboxTicket {
    sandbox: Arc<TemplateSandbox>,
    _slot: OwnedSemaphorePermit,
}

impl TemplateRenderer for SandboxTicket {
    /// Runs the child from a blocking thread (the text workers), on the server's runtime.
    fn render(&self, template: &str, context: &Value) -> Result<String, TextError> {
        let work = self.sandbox.render(template, context);
        match tokio::runtime::Handle::try_current() {
            Ok(handle) => handle.block_on(work),
            Err(_) => tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|source| TextError::Io {
                    path: self.sandbox.config.program.clone(),
                    source,
                })?
                .block_on(work),
        }
    }
}

/// Reads `from` to its end, keeping at most `cap` bytes; past that either fails (`strict`) or
/// drops the rest.
async fn read_capped(
    mut from: impl AsyncRead + Unpin,
    cap: usize,
    strict: bool,
) -> Result<Vec<u8>, ()> {
    let mut kept = Vec::new();
    let mut chunk = vec![0u8; 64 << 10];
    loop {
        let n = from.read(&mut chunk).await.map_err(|_| ())?;
        if n == 0 {
            return Ok(kept);
        }
        let room = cap.saturating_sub(kept.len());
        if n > room && strict {
            return Err(());
        }
        kept.extend_from_slice(&chunk[..n.min(room)]);
    }
}

/// The child's reply as the render's result.
fn parse_reply(reply: Vec<u8>) -> Result<String, TextError> {
    let Some((&tag, rest)) = reply.split_first() else {
        return Err(stopped("it gave no answer".into()));
    };
    let text = String::from_utf8_lossy(rest).into_owned();
    match tag {
        REPLY_TEXT => Ok(text),
        REPLY_ERROR => Err(TextError::Template(text)),
        REPLY_LIMIT => Err(TextError::TemplateLimit(text)),
        _ => Err(stopped("its answer is not a reply".into())),
    }
}

/// Sets this process's limits (run in the child before exec): address space and data segment
/// to `memory` bytes, CPU time to `cpu` s (SIGKILL one more second on), no core files, no
/// file writes. A limit is never raised past the current hard one.
fn apply_limits(memory: u64, cpu: u64) -> std::io::Result<()> {
    let set = |resource, soft: libc::rlim_t, hard: libc::rlim_t| -> std::io::Result<()> {
        let mut cur = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: plain system calls on a local struct.
        if unsafe { libc::getrlimit(resource, &mut cur) } != 0 {
            return Err(std::io::Error::last_os_error());
        }
        let max: libc::rlim_t = cur.rlim_max;
        let lim = libc::rlimit {
            rlim_cur: soft.min(hard).min(max),
            rlim_max: hard.min(max),
        };
        // SAFETY: as above.
        if unsafe { libc::setrlimit(resource, &lim) } != 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(())
    };
    set(libc::RLIMIT_AS, memory, memory)?;
    set(libc::RLIMIT_DATA, memory, memory)?;
    set(libc::RLIMIT_CPU, cpu, cpu.saturating_add(1))?;
    set(libc::RLIMIT_CORE, 0, 0)?;
    set(libc::RLIMIT_FSIZE, 0, 0)?;
    Ok(())
}

/// The child's side: one JSON [`RenderRequest`] in, one reply out (tag byte, then the text or
/// the error's message). Runs the in-process renderer with all its bounds.
pub fn render_request(input: &[u8]) -> Vec<u8> {
    let reply = |tag: u8, body: &str| {
        let mut out = Vec::with_capacity(body.len() + 1);
        out.push(tag);
        out.extend_from_slice(body.as_bytes());
        out
    };
    let req: RenderRequest<'_> = match serde_json::from_slice(input) {
        Ok(r) => r,
        Err(e) => return reply(REPLY_ERROR, &format!("malformed render request: {e}")),
    };
    match llm_emu_text::render_template(&req.template, &req.context) {
        Ok(text) => reply(REPLY_TEXT, &text),
        Err(TextError::TemplateLimit(m)) => reply(REPLY_LIMIT, &m),
        Err(TextError::Template(m)) => reply(REPLY_ERROR, &m),
        Err(e) => reply(REPLY_ERROR, &e.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// A sandbox whose "renderer" is a shell script.
    fn shell(script: &str, limits: SandboxLimits) -> Arc<TemplateSandbox> {
        TemplateSandbox::new(SandboxConfig {
            program: "/bin/sh".into(),
            args: vec!["-c".into(), script.into()],
            limits,
        })
    }

    fn quick() -> SandboxLimits {
        SandboxLimits {
            wall_timeout: Duration::from_millis(500),
            cpu_seconds: 1,
            ..SandboxLimits::default()
        }
    }

    async fn render_with(sandbox: &Arc<TemplateSandbox>) -> Result<String, TextError> {
        sandbox.render("t", &json!({})).await
    }

    #[test]
    fn the_child_side_renders_with_the_in_process_bounds() {
        let ok = render_request(
            br#"{"template":"{{ a }}-{{ b|length }}","context":{"a":"x","b":[1,2]}}"#,
        );
        assert_eq!(ok, b"=x-2");
        let err = render_request(br#"{"template":"{{ raise_exception('no') }}","context":{}}"#);
        assert_eq!(err[0], REPLY_ERROR);
        assert!(String::from_utf8_lossy(&err).contains("no"));
        let fuel = render_request(
            br#"{"template":"{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}","context":{}}"#,
        );
        assert_eq!(fuel[0], REPLY_LIMIT, "{}", String::from_utf8_lossy(&fuel));
        assert_eq!(render_request(b"not json")[0], REPLY_ERROR);
    }

    #[tokio::test]
    async fn a_reply_passes_through_and_the_child_gets_the_request_on_stdin() {
        let echo = shell("printf '='; cat", quick());
        let out = render_with(&echo).await.unwrap();
        let req: Value = serde_json::from_str(&out).unwrap();
        assert_eq!(req, json!({"template": "t", "context": {}}));
        let err = shell("printf '!bad template'", quick());
        assert!(
            matches!(render_with(&err).await, Err(TextError::Template(m)) if m == "bad template")
        );
    }

    #[tokio::test]
    async fn a_child_past_a_limit_is_a_template_limit_error() {
        let cases = [
            ("sleep 5", "did not finish within 0.5 s"),
            ("kill -s KILL $$", "CPU time limit of 1 s"),
            ("kill -s XCPU $$", "CPU time limit of 1 s"),
            (
                "echo 'memory allocation of 1073741824 bytes failed' >&2; kill -s ABRT $$",
                "memory limit of",
            ),
            ("cat >/dev/null; exit 3", "exited with status 3"),
            ("cat >/dev/null", "gave no answer"),
        ];
        for (script, want) in cases {
            let t = std::time::Instant::now();
            let e = render_with(&shell(script, quick())).await.unwrap_err();
            assert!(
                matches!(&e, TextError::TemplateLimit(m) if m.contains(want)),
                "{script}: {e:?}"
            );
            assert!(t.elapsed() < Duration::from_secs(3), "{script}");
        }
    }

    #[tokio::test]
    async fn a_child_writing_past_the_reply_cap_is_killed() {
        let limits = SandboxLimits {
            max_reply_bytes: 1000,
            ..quick()
        };
        let e = render_with(&shell("printf '='; yes", limits))
            .await
            .unwrap_err();
        assert!(
            matches!(&e, TextError::TemplateLimit(m) if m.contains("output exceeds")),
            "{e:?}"
        );
    }

    #[tokio::test]
    async fn the_limits_apply_in_the_child() {
        let limits = SandboxLimits {
            memory_bytes: 300 << 20,
            cpu_seconds: 3,
            ..quick()
        };
        let out = render_with(&shell(
            "printf '='; ulimit -v; ulimit -t; ulimit -c",
            limits,
        ))
        .await
        .unwrap();
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines, [(300u64 << 10).to_string().as_str(), "3", "0"]);
    }

    #[tokio::test]
    async fn a_missing_program_is_the_servers_fault() {
        let sandbox = TemplateSandbox::new(SandboxConfig::new("/nonexistent/llm-emu", ["x"]));
        assert!(matches!(
            render_with(&sandbox).await,
            Err(TextError::Io { .. })
        ));
    }

    #[tokio::test]
    async fn tickets_are_limited_to_max_parallel() {
        let sandbox = TemplateSandbox::new(SandboxConfig {
            limits: SandboxLimits {
                max_parallel: 2,
                ..quick()
            },
            ..SandboxConfig::new("/bin/true", Vec::<String>::new())
        });
        let a = sandbox.ticket().await;
        let _b = sandbox.ticket().await;
        let third = tokio::time::timeout(Duration::from_millis(50), sandbox.ticket()).await;
        assert!(third.is_err(), "a third ticket while two are held");
        drop(a);
        let third = tokio::time::timeout(Duration::from_millis(500), sandbox.ticket()).await;
        assert!(third.is_ok());
    }
}
