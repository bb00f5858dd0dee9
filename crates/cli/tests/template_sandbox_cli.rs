//! `llm-emu serve --trust-request-chat-template` renders a request's own template in a child
//! process (`llm-emu render-template`) under hard limits: templates whose operators build
//! gigabytes (which no fuel or output bound can stop in-process) get a 400 within seconds,
//! the server keeps answering and its memory stays flat, and ordinary templates render exactly
//! as in-process.

use llm_emu_text::{ChatTemplateOptions, TextModel, TokenizerSource};
use serde_json::{json, Value};
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

mod support;

/// Template renders may take up to the sandbox's wall limit, so reads wait longer here.
fn http(addr: &str, method: &str, path: &str, body: &str) -> (u16, String) {
    support::http_request(addr, method, path, "", body, Duration::from_secs(60))
}

struct Serve {
    child: Child,
    addr: String,
}

impl Serve {
    fn start() -> Serve {
        let mut child = Command::new(env!("CARGO_BIN_EXE_llm-emu"))
            .args([
                "serve",
                "--host",
                "127.0.0.1",
                "--port",
                "0",
                "--max-model-len",
                "2048",
                "--latency",
                "linear:base_us=500,per_token_us=1",
                "--trust-request-chat-template",
            ])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let addr = line.trim().rsplit("http://").next().unwrap().to_string();
        Serve { child, addr }
    }

    /// A `/proc/PID/status` field, in KiB.
    fn status_kib(&self, field: &str) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap();
        status
            .lines()
            .find_map(|l| l.strip_prefix(field))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or_else(|| panic!("{field} in {status}"))
    }

    fn tokenize(&self, template: Option<&str>) -> (u16, Value) {
        let mut body = json!({"messages": [{"role": "user", "content": "Hello there"}]});
        if let Some(t) = template {
            body["chat_template"] = json!(t);
        }
        let (st, out) = http(&self.addr, "POST", "/tokenize", &body.to_string());
        (st, serde_json::from_str(&out).unwrap_or(Value::String(out)))
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Templates whose operators build a huge value in one instruction each.
const BOMBS: [(&str, &str); 3] = [
    (
        "s ~ s doubled",
        "{% set ns = namespace(s='x' * 1000) %}{% for i in range(40) %}\
         {% set ns.s = ns.s ~ ns.s %}{% endfor %}{{ ns.s|length }}",
    ),
    (
        "s + s doubled",
        "{% set ns = namespace(s='x' * 1000) %}{% for i in range(40) %}\
         {% set ns.s = ns.s + ns.s %}{% endfor %}{{ ns.s|length }}",
    ),
    (
        "~ on a lazy sequence",
        "{{ ([1] * 1000000000 ~ '')|length }}",
    ),
];

/// How long a bomb may take to be refused: the child's CPU limit (3 s) or memory limit, on a
/// shared 2-core machine where wall time runs well past CPU time (the wall limit is 6 s).
const ANSWER_BOUND: Duration = Duration::from_secs(12);

/// Peak RSS the server may reach: it starts near 90 MiB (debug build); rendering a bomb in
/// process took it to gigabytes.
const SERVER_PEAK_BOUND_KIB: u64 = 300 << 10;

#[test]
fn template_bombs_are_refused_and_the_server_stays_up_and_small() {
    let serve = Serve::start();
    assert_eq!(http(&serve.addr, "GET", "/health", "").0, 200);
    for (name, template) in BOMBS {
        let t0 = Instant::now();
        let (st, body) = serve.tokenize(Some(template));
        let took = t0.elapsed();
        eprintln!("{name}: {st} after {took:?}: {body}");
        assert_eq!(st, 400, "{name}: {body}");
        assert_eq!(body["error"]["type"], "BadRequestError", "{name}: {body}");
        let msg = body["error"]["message"].as_str().unwrap_or_default();
        assert!(
            msg.starts_with("chat template rendering stopped: "),
            "{name}: {msg}"
        );
        assert!(took < ANSWER_BOUND, "{name}: answered after {took:?}");
        assert_eq!(http(&serve.addr, "GET", "/health", "").0, 200, "{name}");
    }
    // Several at once: they take turns for the child slots; the server answers meanwhile.
    let addr = serve.addr.clone();
    let flood: Vec<_> = (0..4)
        .map(|_| {
            let addr = addr.clone();
            std::thread::spawn(move || {
                let body = json!({
                    "messages": [{"role": "user", "content": "hi"}],
                    "chat_template": BOMBS[0].1,
                });
                http(&addr, "POST", "/tokenize", &body.to_string()).0
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(300));
    let t0 = Instant::now();
    assert_eq!(http(&serve.addr, "GET", "/health", "").0, 200);
    let health = t0.elapsed();
    for f in flood {
        assert_eq!(f.join().unwrap(), 400);
    }
    let peak = serve.status_kib("VmHWM:");
    eprintln!(
        "/health during the flood: {health:?}; server peak RSS {} MiB",
        peak >> 10
    );
    assert!(health < Duration::from_secs(2), "/health took {health:?}");
    assert!(
        peak < SERVER_PEAK_BOUND_KIB,
        "server peak RSS {} MiB",
        peak >> 10
    );
}

#[test]
fn trusted_templates_render_as_in_process() {
    let serve = Serve::start();
    // The model's own template, sent by the request (rendered in a child), against no
    // template (the tokenizer's own, rendered in the server).
    let config: Value = serde_json::from_str(include_str!(
        "../../text/data/llama3_1-tokenizer_config.json"
    ))
    .unwrap();
    let own = config["chat_template"].as_str().unwrap();
    let (st, sandboxed) = serve.tokenize(Some(own));
    assert_eq!(st, 200, "{sandboxed}");
    let (st, in_server) = serve.tokenize(None);
    assert_eq!(st, 200, "{in_server}");
    assert_eq!(sandboxed["tokens"], in_server["tokens"]);
    assert!(sandboxed["count"].as_u64().unwrap() > 5);

    // A template using the dialect's extras (tojson, namespaces, Python methods, None/True
    // printing, special tokens) gives the ids of the same render done in-process.
    let custom = "{% set ns = namespace(n=0) %}{{ bos_token }}{% for m in messages %}\
                  {% set ns.n = ns.n + 1 %}[{{ m.role|upper }}:{{ m.content.strip().split(' ')|tojson }}]\
                  {{ none }}{{ m.get('name') }}{{ true }}{% endfor %}{{ ns.n }}{{ {'a': [1, 'x']} }}";
    let (st, sandboxed) = serve.tokenize(Some(custom));
    assert_eq!(st, 200, "{sandboxed}");
    let model = TextModel::load(&TokenizerSource::Builtin).unwrap();
    let messages = json!([{"role": "user", "content": "Hello there"}]);
    let text = model
        .render_chat(
            &messages,
            &ChatTemplateOptions {
                chat_template: Some(custom.into()),
                ..ChatTemplateOptions::default()
            },
        )
        .unwrap();
    let ids = model.encode(&text, false).unwrap();
    assert_eq!(sandboxed["tokens"], json!(ids), "{text}");

    // A template error in the child is the same 400, with the same message, as in-process.
    let failing = "{{ raise_exception('no system role') }}";
    let (st, err) = serve.tokenize(Some(failing));
    assert_eq!(st, 400);
    let in_process = model
        .render_chat(
            &messages,
            &ChatTemplateOptions {
                chat_template: Some(failing.into()),
                ..ChatTemplateOptions::default()
            },
        )
        .unwrap_err();
    assert_eq!(err["error"]["message"], in_process.to_string());
    assert!(in_process.to_string().contains("no system role"));
}
