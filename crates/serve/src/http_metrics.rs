//! The HTTP series vLLM exposes through prometheus-fastapi-instrumentator
//! (`entrypoints/serve/instrumentator/metrics.py`: `Instrumentator(excluded_handlers=[...])
//! .add()`, the library's `metrics.default()`), with its names, help texts, labels and
//! buckets: `http_requests_total{handler,method,status}` (status grouped as `2xx`, …),
//! `http_request_size_bytes` and `http_response_size_bytes` (summaries by handler, from the
//! `Content-Length` header alone, 0 without one), `http_request_duration_highr_seconds` (no
//! labels, many buckets) and `http_request_duration_seconds{handler,method}` (0.1, 0.5, 1).
//! The duration runs until the response body has been sent, streams included. Requests to a
//! path no route matches count under handler `none`; vLLM's probe routes are not counted.

use crate::metrics::{go_float, unix_now_f64};
use std::fmt::Write;
use std::sync::Mutex;

/// The handlers vLLM excludes from the instrumentator.
pub const EXCLUDED_HANDLERS: &[&str] = &[
    "/metrics",
    "/health",
    "/load",
    "/ping",
    "/version",
    "/server_info",
];

/// `latency_highr_buckets` of `metrics.default()`.
const HIGHR_BUCKETS: &[f64] = &[
    0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 2.5, 3.0, 3.5, 4.0, 4.5, 5.0,
    7.5, 10.0, 30.0, 60.0,
];
/// `latency_lowr_buckets` of `metrics.default()`.
const LOWR_BUCKETS: &[f64] = &[0.1, 0.5, 1.0];

const REQUESTS_HELP: &str = "Total number of requests by method, status and handler.";
const REQUEST_SIZE_HELP: &str = "Content length of incoming requests by handler. Only value of \
                                 header is respected. Otherwise ignored. No percentile \
                                 calculated. ";
const RESPONSE_SIZE_HELP: &str = "Content length of outgoing responses by handler. Only value \
                                  of header is respected. Otherwise ignored. No percentile \
                                  calculated. ";
const HIGHR_HELP: &str = "Latency with many buckets but no API specific labels. Made for more \
                          accurate percentile calculations. ";
const LOWR_HELP: &str = "Latency with only few buckets by handler. Made to be only used if \
                         aggregation by handler is important. ";

/// One finished HTTP request, as the instrumentator sees it.
#[derive(Clone, Debug)]
pub struct Observation<'a> {
    /// The route's path (`none` when no route matched).
    pub handler: &'a str,
    pub method: &'a str,
    pub status: u16,
    /// `Content-Length` of the request and of the response (0 without the header).
    pub request_bytes: u64,
    pub response_bytes: u64,
    /// Seconds from the request's arrival to the end of its response.
    pub seconds: f64,
}

#[derive(Clone)]
struct Buckets {
    counts: Vec<u64>,
    sum: f64,
    count: u64,
}

impl Buckets {
    fn new(n: usize) -> Buckets {
        Buckets {
            counts: vec![0; n + 1],
            sum: 0.0,
            count: 0,
        }
    }

    fn observe(&mut self, bounds: &[f64], v: f64) {
        let i = bounds.partition_point(|&b| b < v);
        self.counts[i] += 1;
        self.sum += v;
        self.count += 1;
    }
}

/// A summary's count, sum and creation time.
#[derive(Clone, Default)]
struct Summary {
    count: u64,
    sum: f64,
    created: f64,
}

#[derive(Default)]
struct Series {
    /// (handler, method, status group) → count, created.
    requests: Vec<((String, String, String), u64, f64)>,
    request_size: Vec<(String, Summary)>,
    response_size: Vec<(String, Summary)>,
    /// (handler, method) → buckets, created.
    duration: Vec<((String, String), Buckets, f64)>,
    highr: Option<Buckets>,
}

/// The instrumentator's series of one HTTP front. The lock is held for a few vector updates
/// per request and while a scrape copies the counts out.
pub struct HttpMetrics {
    series: Mutex<Series>,
    /// Unix time the label-less highr histogram was created.
    created: f64,
}

impl std::fmt::Debug for HttpMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpMetrics").finish_non_exhaustive()
    }
}

impl Default for HttpMetrics {
    fn default() -> Self {
        HttpMetrics::new()
    }
}

/// `should_group_status_codes`: `200` → `2xx`.
fn status_group(status: u16) -> String {
    format!("{}xx", status / 100)
}

/// The entry for `key`, appended (with its creation time) on first use: series keep the
/// order in which their labels were first seen, as `prometheus_client` keeps its children.
fn entry<K: PartialEq, V>(v: &mut Vec<(K, V, f64)>, key: K, new: impl Fn() -> V) -> &mut V {
    let i = match v.iter().position(|e| e.0 == key) {
        Some(i) => i,
        None => {
            v.push((key, new(), unix_now_f64()));
            v.len() - 1
        }
    };
    &mut v[i].1
}

fn summary<'a>(v: &'a mut Vec<(String, Summary)>, handler: &str) -> &'a mut Summary {
    let i = match v.iter().position(|e| e.0 == handler) {
        Some(i) => i,
        None => {
            v.push((
                handler.to_string(),
                Summary {
                    created: unix_now_f64(),
                    ..Default::default()
                },
            ));
            v.len() - 1
        }
    };
    &mut v[i].1
}

impl HttpMetrics {
    pub fn new() -> HttpMetrics {
        HttpMetrics {
            series: Mutex::new(Series::default()),
            created: unix_now_f64(),
        }
    }

    /// Whether requests to `handler` are counted at all.
    pub fn counts(handler: &str) -> bool {
        !EXCLUDED_HANDLERS.contains(&handler)
    }

    /// Records one finished request (excluded handlers are ignored).
    pub fn observe(&self, o: &Observation<'_>) {
        if !HttpMetrics::counts(o.handler) {
            return;
        }
        let mut s = self.series.lock().unwrap_or_else(|e| e.into_inner());
        let (h, m) = (o.handler.to_string(), o.method.to_string());
        *entry(
            &mut s.requests,
            (h.clone(), m.clone(), status_group(o.status)),
            || 0,
        ) += 1;
        let req = summary(&mut s.request_size, o.handler);
        req.count += 1;
        req.sum += o.request_bytes as f64;
        let resp = summary(&mut s.response_size, o.handler);
        resp.count += 1;
        resp.sum += o.response_bytes as f64;
        entry(&mut s.duration, (h, m), || Buckets::new(LOWR_BUCKETS.len()))
            .observe(LOWR_BUCKETS, o.seconds);
        s.highr
            .get_or_insert_with(|| Buckets::new(HIGHR_BUCKETS.len()))
            .observe(HIGHR_BUCKETS, o.seconds);
    }

    /// Appends the exposition. The label-less histogram exists from the start, as in the
    /// library; the labelled series appear with their first request.
    pub fn render(&self, out: &mut String) {
        let s = self.series.lock().unwrap_or_else(|e| e.into_inner());
        let header = |out: &mut String, name: &str, help: &str, kind: &str| {
            let _ = writeln!(out, "# HELP {name} {help}");
            let _ = writeln!(out, "# TYPE {name} {kind}");
        };
        let q = |v: &str| crate::metrics::escape_label(v);
        header(out, "http_requests_total", REQUESTS_HELP, "counter");
        for ((h, m, st), n, _) in &s.requests {
            let _ = writeln!(
                out,
                "http_requests_total{{handler=\"{}\",method=\"{}\",status=\"{st}\"}} {}",
                q(h),
                q(m),
                go_float(*n as f64)
            );
        }
        header(out, "http_requests_created", REQUESTS_HELP, "gauge");
        for ((h, m, st), _, c) in &s.requests {
            let _ = writeln!(
                out,
                "http_requests_created{{handler=\"{}\",method=\"{}\",status=\"{st}\"}} {}",
                q(h),
                q(m),
                go_float(*c)
            );
        }
        for (name, help, v) in [
            (
                "http_request_size_bytes",
                REQUEST_SIZE_HELP,
                &s.request_size,
            ),
            (
                "http_response_size_bytes",
                RESPONSE_SIZE_HELP,
                &s.response_size,
            ),
        ] {
            header(out, name, help, "summary");
            for (h, sm) in v {
                let _ = writeln!(
                    out,
                    "{name}_count{{handler=\"{}\"}} {}",
                    q(h),
                    go_float(sm.count as f64)
                );
                let _ = writeln!(
                    out,
                    "{name}_sum{{handler=\"{}\"}} {}",
                    q(h),
                    go_float(sm.sum)
                );
            }
            header(out, &format!("{name}_created"), help, "gauge");
            for (h, sm) in v {
                let _ = writeln!(
                    out,
                    "{name}_created{{handler=\"{}\"}} {}",
                    q(h),
                    go_float(sm.created)
                );
            }
        }
        let name = "http_request_duration_highr_seconds";
        header(out, name, HIGHR_HELP, "histogram");
        let empty = Buckets::new(HIGHR_BUCKETS.len());
        let h = s.highr.as_ref().unwrap_or(&empty);
        let mut cum = 0;
        for (i, c) in h.counts.iter().enumerate() {
            cum += c;
            let le = HIGHR_BUCKETS.get(i).copied().unwrap_or(f64::INFINITY);
            let _ = writeln!(
                out,
                "{name}_bucket{{le=\"{}\"}} {}",
                go_float(le),
                go_float(cum as f64)
            );
        }
        let _ = writeln!(out, "{name}_count {}", go_float(h.count as f64));
        let _ = writeln!(out, "{name}_sum {}", go_float(h.sum));
        header(out, &format!("{name}_created"), HIGHR_HELP, "gauge");
        let _ = writeln!(out, "{name}_created {}", go_float(self.created));
        let name = "http_request_duration_seconds";
        header(out, name, LOWR_HELP, "histogram");
        for ((hd, m), b, _) in &s.duration {
            let mut cum = 0;
            for (i, c) in b.counts.iter().enumerate() {
                cum += c;
                let le = LOWR_BUCKETS.get(i).copied().unwrap_or(f64::INFINITY);
                let _ = writeln!(
                    out,
                    "{name}_bucket{{handler=\"{}\",le=\"{}\",method=\"{}\"}} {}",
                    q(hd),
                    go_float(le),
                    q(m),
                    go_float(cum as f64)
                );
            }
            let _ = writeln!(
                out,
                "{name}_count{{handler=\"{}\",method=\"{}\"}} {}",
                q(hd),
                q(m),
                go_float(b.count as f64)
            );
            let _ = writeln!(
                out,
                "{name}_sum{{handler=\"{}\",method=\"{}\"}} {}",
                q(hd),
                q(m),
                go_float(b.sum)
            );
        }
        header(out, &format!("{name}_created"), LOWR_HELP, "gauge");
        for ((hd, m), _, c) in &s.duration {
            let _ = writeln!(
                out,
                "{name}_created{{handler=\"{}\",method=\"{}\"}} {}",
                q(hd),
                q(m),
                go_float(*c)
            );
        }
    }
}
