//! llm-emu's online server: vLLM's OpenAI-compatible HTTP surface on the emulated engine, on the
//! wall clock.
//!
//! One OS thread owns the synchronous engine ([`engine_loop`]); the HTTP tasks (axum on tokio)
//! validate and tokenize requests, submit them through a channel, and turn the engine's
//! per-request events into SSE chunks or JSON responses, detokenizing and matching stop strings
//! on the way ([`generate`]), as vLLM's API server and output processor do.

pub mod conn;
pub mod engine_loop;
pub mod errors;
pub mod fd_limit;
pub mod framing;
pub mod generate;
pub mod logprobs;
pub mod metrics;
pub mod middleware;
pub mod protocol;
pub mod routes;
pub mod state;
pub mod template_sandbox;
pub mod text;
pub mod text_jobs;
pub mod thread_priority;

use conn::{ConnLimits, ConnStats};
use engine_loop::EngineThread;
use llm_emu_core::Engine;
use metrics::EngineMetrics;
use state::AppState;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use text::SharedCodec;
use thiserror::Error;

#[derive(Debug, Error)]
pub enum ServeError {
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: String,
        source: std::io::Error,
    },
    #[error("cannot start the engine thread: {0}")]
    EngineThread(std::io::Error),
    #[error("the HTTP server failed: {0}")]
    Http(std::io::Error),
    #[error("invalid server options: {0}")]
    Options(String),
}

/// How the server presents itself and behaves at its edges.
#[derive(Clone, Debug)]
pub struct ServeOptions {
    pub host: String,
    /// 0: the OS picks one ([`Server::local_addr`] says which).
    pub port: u16,
    /// Names clients may use in `model`; the first is the one responses carry.
    pub served_model_names: Vec<String>,
    /// The model path or id, `root` in `/v1/models`.
    pub model_root: String,
    /// Bearer tokens accepted on `/v1` routes; empty: no authentication.
    pub api_keys: Vec<String>,
    /// Largest request body, bytes.
    pub max_body_bytes: usize,
    /// After a shutdown signal, how long in-flight requests may run before they are aborted;
    /// [`conn::ABORT_FLUSH`] later every connection still open is closed.
    pub shutdown_grace: Duration,
    /// Timeouts and the connection limit.
    pub conn: ConnLimits,
    /// The CPU priority the engine thread asks for.
    pub engine_priority: thread_priority::PriorityRequest,
    /// Accept a request's own `chat_template` (vLLM's `--trust-request-chat-template`).
    pub trust_request_chat_template: bool,
    /// The program that renders a request's own template in a child process under hard limits
    /// (`llm-emu render-template`); `None`: such templates render in the server process,
    /// bounded only by fuel and output size.
    pub template_sandbox: Option<template_sandbox::SandboxConfig>,
}

impl Default for ServeOptions {
    fn default() -> Self {
        ServeOptions {
            host: "127.0.0.1".into(),
            port: 0,
            served_model_names: vec!["llm-emu".into()],
            model_root: "llm-emu".into(),
            api_keys: Vec::new(),
            max_body_bytes: 64 << 20,
            shutdown_grace: Duration::from_secs(30),
            conn: ConnLimits::default(),
            engine_priority: Default::default(),
            trust_request_chat_template: false,
            template_sandbox: None,
        }
    }
}

/// A bound server, not yet serving.
pub struct Server {
    listener: tokio::net::TcpListener,
    state: Arc<AppState>,
    engine: EngineThread,
    opts: ServeOptions,
    conn_stats: Arc<ConnStats>,
}

impl Server {
    /// Starts the engine thread and binds the listener (inside a tokio runtime).
    pub async fn bind(
        engine: Engine,
        codec: SharedCodec,
        opts: ServeOptions,
    ) -> Result<Server, ServeError> {
        if opts.served_model_names.is_empty() {
            return Err(ServeError::Options(
                "at least one served model name is needed".into(),
            ));
        }
        let addr = format!("{}:{}", opts.host, opts.port);
        let listener = tokio::net::TcpListener::bind(&addr)
            .await
            .map_err(|source| ServeError::Bind {
                addr: addr.clone(),
                source,
            })?;
        let max_model_len = engine.config().max_model_len;
        let metrics = Arc::new(EngineMetrics::new(
            &opts.served_model_names[0],
            max_model_len,
        ));
        let engine = EngineThread::spawn(engine, metrics, opts.engine_priority)
            .map_err(ServeError::EngineThread)?;
        let state = Arc::new(
            AppState::new(
                engine.handle.clone(),
                codec,
                opts.served_model_names.clone(),
                opts.model_root.clone(),
                max_model_len,
                opts.api_keys.clone(),
            )
            .with_trust_request_chat_template(opts.trust_request_chat_template)
            .with_template_sandbox(
                opts.template_sandbox
                    .clone()
                    .map(template_sandbox::TemplateSandbox::new),
            ),
        );
        Ok(Server {
            listener,
            state,
            engine,
            opts,
            conn_stats: Arc::new(ConnStats::default()),
        })
    }

    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// The CPU priority the engine thread got.
    pub fn engine_priority(&self) -> &thread_priority::PriorityGranted {
        &self.engine.handle.priority
    }

    pub fn state(&self) -> Arc<AppState> {
        self.state.clone()
    }

    /// What the accept loop has seen (connections accepted and open, accept errors, …).
    pub fn conn_stats(&self) -> Arc<ConnStats> {
        self.conn_stats.clone()
    }

    /// Serves until `shutdown` resolves; then stops accepting, lets in-flight requests finish
    /// for up to the grace period, aborts the rest, closes the connections still open
    /// [`conn::ABORT_FLUSH`] later whatever their clients do, and stops the engine thread.
    pub async fn run(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), ServeError> {
        let edge = middleware::Edge {
            api_keys: middleware::ApiKeys::new(&self.opts.api_keys),
            max_body_bytes: self.opts.max_body_bytes,
            body_read_timeout: self.opts.conn.body_read_timeout,
        };
        let app = middleware::wrap(routes::router(self.state.clone()), edge);
        let draining = conn::accept_until(
            self.listener,
            app,
            self.opts.conn.clone(),
            self.conn_stats.clone(),
            shutdown,
        )
        .await;
        let handle = self.state.engine.clone();
        let forced = draining
            .drain(self.opts.shutdown_grace, move || handle.abort_all())
            .await;
        if forced > 0 {
            eprintln!(
                "llm-emu serve: closed {forced} connection(s) still open after the grace period"
            );
        }
        let engine = self.engine;
        let _ = tokio::task::spawn_blocking(move || engine.shutdown()).await;
        Ok(())
    }
}
