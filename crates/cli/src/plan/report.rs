//! The plan's answer: a table of the cheapest fleets with their objective margins, the
//! `llm-emu serve` command of the cheapest, the JSON document (`--output-json`) and, when no
//! fleet meets the objectives, the closest miss.

use super::objectives::Objectives;
use super::prices::Prices;
use super::search::{Fleet, Outcome, Run, ScaleOut, Unit};
use super::PlanArgs;
use crate::sweep::grid::{rate_value, Setting, RATE};
use clap::{CommandFactory, Parser};
use serde_json::{json, Map, Value};
use std::io::Write;

/// `llm-emu serve`'s flags, to tell which shared settings the serve command carries.
#[derive(Parser)]
struct ServeCli {
    #[command(flatten)]
    serve: crate::serve::ServeArgs,
}

pub struct Plan<'a> {
    pub args: &'a PlanArgs,
    pub base: &'a [Setting],
    pub rate: Option<f64>,
    pub objectives: &'a Objectives,
    pub prices: &'a Prices,
    /// Units whose engine cannot be built, and why.
    pub unusable: &'a [(Unit, String)],
    pub outcome: &'a Outcome,
}

impl Plan<'_> {
    fn shown(&self) -> &[Fleet] {
        let n = self.args.top.max(1).min(self.outcome.fleets.len());
        &self.outcome.fleets[..n]
    }

    /// The objectives as `p99_ttft_ms <= 500` phrases.
    fn objectives_text(&self) -> String {
        let mut parts: Vec<String> = self
            .objectives
            .slos
            .iter()
            .map(|s| format!("{} <= {}", s.key, s.limit_ms))
            .collect();
        if let Some(g) = self.objectives.goodput {
            parts.push(format!("goodput >= {g}"));
        }
        parts.join(", ")
    }

    /// Each objective's measured value and margin (the share of the bound left unused).
    fn margins(&self, row: &Map<String, Value>) -> Vec<(String, f64, f64)> {
        let mut out: Vec<(String, f64, f64)> = self
            .objectives
            .slos
            .iter()
            .filter_map(|s| {
                let v = row.get(&s.key).and_then(Value::as_f64)?;
                Some((s.key.clone(), v, 1.0 - v / s.limit_ms))
            })
            .collect();
        if let (Some(want), Some(got)) = (
            self.objectives.goodput,
            row.get("goodput_fraction").and_then(Value::as_f64),
        ) {
            out.push(("goodput_fraction".into(), got, got - want));
        }
        out
    }

    /// The `llm-emu serve` command line that serves `f`.
    pub fn serve_command(&self, f: &Fleet) -> String {
        let cmd = ServeCli::command();
        let is_serve_flag = |k: &str| cmd.get_arguments().any(|a| a.get_long() == Some(k));
        let mut parts = vec!["llm-emu serve".to_string()];
        let mut push = |k: &str, v: &Value| match v {
            Value::Bool(true) => parts.push(format!("--{k}")),
            Value::Bool(false) => parts.push(format!("--no-{k}")),
            Value::String(s) => parts.push(format!("--{k} {}", shell_word(s))),
            v => parts.push(format!("--{k} {v}")),
        };
        for (k, v) in self.base {
            if is_serve_flag(k) && !matches!(k.as_str(), "seed") {
                push(k, v);
            }
        }
        for (k, v) in &f.unit.settings() {
            push(k, v);
        }
        for (k, v) in &f.scale_out.settings(f.engines, &self.args.router) {
            push(k, v);
        }
        parts.join(" ")
    }

    fn fleet_text(f: &Fleet) -> String {
        let how = match f.scale_out {
            ScaleOut::Replicas => "replicas",
            ScaleOut::DataParallel => "DP ranks",
        };
        if f.engines == 1 {
            format!("1 x {}", f.unit.describe())
        } else {
            format!("{} x {} ({how})", f.engines, f.unit.describe())
        }
    }

    pub fn print(&self, out: &mut impl Write) -> std::io::Result<()> {
        let load = match self.rate {
            Some(r) => format!("{r} requests/s"),
            None => "the workload file's arrivals".to_string(),
        };
        writeln!(
            out,
            "target: {load}; objectives: {}",
            self.objectives_text()
        )?;
        writeln!(
            out,
            "searched {} engine configuration(s), {} simulated run(s); prices: {}",
            self.outcome.units.len(),
            self.outcome.runs.len(),
            self.prices.source
        )?;
        for (u, e) in self.unusable {
            writeln!(out, "  {}: cannot run ({e})", u.describe())?;
        }
        for u in &self.outcome.units {
            let what = match (&u.error, self.rate, u.saturation_rate, u.failing_rate) {
                (Some(e), ..) => format!("cannot run ({e})"),
                (None, None, ..) => "sized by running fleets on the workload".to_string(),
                (None, Some(t), Some(s), None) if s >= t => {
                    "meets the objectives alone at the target".to_string()
                }
                (None, Some(_), Some(s), Some(f)) => format!(
                    "one engine meets the objectives up to {s:.3} requests/s (fails at \
                     {f:.3}): about {} engine(s)",
                    u.estimate
                ),
                (None, Some(_), _, f) => format!(
                    "one engine fails the objectives even at {:.3} requests/s",
                    f.unwrap_or(0.0)
                ),
            };
            writeln!(out, "  {}: {what}", u.unit.describe())?;
        }
        let shown = self.shown();
        if shown.is_empty() {
            // The caller says why, as the error.
            return Ok(());
        }
        writeln!(out)?;
        writeln!(
            out,
            "{:<5}{:>10}{:>6}  {:<48}margins (measured, share of the bound unused)",
            "rank", "$/hour", "GPUs", "fleet"
        )?;
        for (i, f) in shown.iter().enumerate() {
            let m: Vec<String> = self
                .margins(&f.run.row)
                .iter()
                .map(|(k, v, margin)| {
                    if k == "goodput_fraction" {
                        format!("goodput {v:.3} (+{margin:.3})")
                    } else {
                        format!("{k} {v:.1} ({:.0}%)", margin * 100.0)
                    }
                })
                .collect();
            writeln!(
                out,
                "{:<5}{:>10.2}{:>6}  {:<48}{}",
                i + 1,
                f.cost_per_hour,
                f.gpus,
                Self::fleet_text(f),
                m.join(", ")
            )?;
        }
        writeln!(out)?;
        writeln!(out, "serve the cheapest:")?;
        writeln!(out, "  {}", self.serve_command(&shown[0]))?;
        Ok(())
    }

    /// The fleet run that came closest when no fleet meets the objectives: among the runs at
    /// the target load, the smallest worst measured/bound ratio, runs whose queue grows last,
    /// runs that failed outright never.
    fn closest(&self) -> Option<&Run> {
        let at_target = |r: &Run| {
            let rate = r
                .settings
                .iter()
                .find(|(k, _)| k == RATE)
                .and_then(|(_, v)| rate_value(v));
            rate == self.rate
        };
        self.outcome
            .runs
            .iter()
            .filter(|r| r.row.get("error").is_none() && at_target(r))
            .min_by(|a, b| {
                let grows = |r: &Run| r.row.get("queue_unbounded") == Some(&Value::Bool(true));
                grows(a)
                    .cmp(&grows(b))
                    .then(a.verdict.worst_ratio.total_cmp(&b.verdict.worst_ratio))
            })
    }

    /// Says that no fleet meets the objectives, and which run came closest by how much.
    pub fn none_meets(&self) -> String {
        let head = format!(
            "no configuration meets the objectives ({}) within --max-gpus {}",
            self.objectives_text(),
            self.args.max_gpus
        );
        match self.closest() {
            Some(r) => format!(
                "{head}; the closest is [{}] at {:.2}x the bound: {}",
                settings_text(&r.settings),
                r.verdict.worst_ratio,
                r.verdict.reason
            ),
            None => format!("{head}; no run completed"),
        }
    }

    pub fn json(&self) -> Value {
        let fleets: Vec<Value> = self
            .shown()
            .iter()
            .enumerate()
            .map(|(i, f)| {
                let margins: Map<String, Value> = self
                    .margins(&f.run.row)
                    .into_iter()
                    .map(|(k, v, m)| (k, json!({"measured": v, "margin": m})))
                    .collect();
                json!({
                    "rank": i + 1,
                    "gpu": f.unit.gpu,
                    "tensor_parallel_size": f.unit.tp,
                    "max_num_seqs": f.unit.max_num_seqs,
                    "max_num_batched_tokens": f.unit.max_num_batched_tokens,
                    "scale_out": f.scale_out.name(),
                    "engines": f.engines,
                    "gpus": f.gpus,
                    "cost_per_hour": f.cost_per_hour,
                    "margins": margins,
                    "summary": f.run.row,
                    "settings": settings_object(&f.run.settings),
                    "serve_command": self.serve_command(f),
                })
            })
            .collect();
        let units: Vec<Value> = self
            .outcome
            .units
            .iter()
            .map(|u| {
                json!({
                    "configuration": u.unit.describe(),
                    "error": u.error,
                    "saturation_rate": u.saturation_rate,
                    "first_failing_rate": u.failing_rate,
                    "estimated_engines": u.estimate,
                })
            })
            .chain(
                self.unusable
                    .iter()
                    .map(|(u, e)| json!({"configuration": u.describe(), "error": e})),
            )
            .collect();
        let skipped: Vec<Value> = self
            .outcome
            .skipped
            .iter()
            .map(|s| {
                json!({
                    "configuration": s.unit.describe(),
                    "scale_out": s.scale_out.name(),
                    "reason": s.reason,
                })
            })
            .collect();
        let closest = if self.outcome.fleets.is_empty() {
            self.closest().map(|r| {
                json!({
                    "settings": settings_object(&r.settings),
                    "worst_ratio": r.verdict.worst_ratio,
                    "reason": r.verdict.reason,
                })
            })
        } else {
            None
        };
        json!({
            "format": "llm-emu-plan/1",
            "target_request_rate": self.rate,
            "objectives": self.objectives.slos.iter()
                .map(|s| json!({"key": s.key, "limit_ms": s.limit_ms}))
                .collect::<Vec<_>>(),
            "goodput": self.objectives.goodput,
            "base": settings_object(self.base),
            "prices": self.prices.per_gpu_hour,
            "prices_source": self.prices.source,
            "met": !self.outcome.fleets.is_empty(),
            "fleets": fleets,
            "closest": closest,
            "configurations": units,
            "skipped": skipped,
            "runs": self.outcome.runs.len(),
        })
    }
}

fn settings_object(s: &[Setting]) -> Value {
    Value::Object(s.iter().cloned().collect())
}

fn settings_text(s: &[Setting]) -> String {
    s.iter()
        .map(|(k, v)| match v {
            Value::String(t) => format!("{k}={t}"),
            v => format!("{k}={v}"),
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// `s` quoted for a POSIX shell when it needs it.
fn shell_word(s: &str) -> String {
    if !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./:=,+@".contains(c))
    {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', "'\\''"))
    }
}
