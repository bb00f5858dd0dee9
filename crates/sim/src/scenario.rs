//! Extreme-scenario workloads: bursts, flash crowds, diurnal load and multi-turn sessions.
//!
//! A scenario is named by a short spec, `KIND` or `KIND:key=value,key=value`, so that the same
//! string selects it in `simulate --scenario`, `bench --dataset-name scenario --scenario` and a
//! sweep's workload axis. Every scenario takes the request count, the mean request rate
//! (requests/s) and a seed; the same three give the same workload. Prompt and output lengths are
//! drawn as the ShareGPT-like synthetic workload's ([`crate::synthetic`]).
//!
//! | spec | arrivals |
//! | --- | --- |
//! | `poisson` | Poisson at the rate: exactly the synthetic workload of `--synthetic`. |
//! | `gamma:burstiness=B` | gamma gaps of shape `B`, `vllm bench serve --burstiness` ([`crate::arrival`], the same implementation and numpy stream; the seed must be below 2³²): `B` < 1 is burstier than Poisson, `B` = 1 is Poisson. |
//! | `onoff:on=S,off=S` | Poisson at the rate during `on` seconds, nothing for `off` seconds, repeated (mean rate = rate × on / (on + off)). |
//! | `flash:at=S,for=S,x=K` | Poisson at the rate, stepping to `K` × the rate from `at` for `for` seconds (a flash crowd). |
//! | `diurnal:period=S,amplitude=A` | rate × (1 + A·sin(2πt/period)), A in [0, 1], as a thinned Poisson process (mean rate = rate over whole periods). |
//! | `sessions:turns=T,think=S,system=N,max_len=L` | multi-turn chat sessions (below). |
//!
//! Sessions: sessions start as a Poisson process at rate / `turns` per second (so requests
//! average the rate), each with up to `turns` turns (default 5). A turn's prompt is the whole
//! conversation so far (the previous turn's prompt, its answer, the new user message), so each
//! turn shares the previous turn's prompt as a prefix; with `system=N` every session also starts
//! with the same N-token system prompt (default 0). Turns arrive `think` seconds apart on average
//! (exponential, default 10 s), counted from the previous turn's arrival: the workload is open
//! loop, like every workload file, and does not wait for the answer. A session ends early when
//! its next turn would pass `max_len` tokens (prompt + output, default 4096). Each request's
//! `tenant` is its session (`session-I`, sent as the OpenAI `user` field by `bench`), so the
//! fair-share policy and session routers see it. The answer tokens in the next prompt are
//! synthetic, not what the emulated model sampled, so prefix-cache hits cover the previous
//! turn's prompt, not its answer.

use crate::arrival::{send_offsets, ArrivalError};
use crate::synthetic::{SyntheticWorkload, LEN_LN_SIGMA, OUTPUT_LN_MU, PROMPT_LN_MU};
use crate::workload::{synthetic_ids, WorkloadItem};
use llm_emu_core::Nanos;
use rand::{Rng, SeedableRng};
use rand_distr::{Distribution, Exp, LogNormal};
use rand_pcg::Pcg64Mcg;
use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::sync::Arc;
use thiserror::Error;

#[derive(Debug, Error, PartialEq)]
pub enum ScenarioError {
    #[error("unknown scenario `{0}` (expected poisson, gamma, onoff, flash, diurnal or sessions)")]
    UnknownKind(String),
    #[error("scenario `{kind}`: unknown key `{key}` (expected: {expected})")]
    UnknownKey {
        kind: &'static str,
        key: String,
        expected: &'static str,
    },
    #[error("scenario `{kind}`: `{key}` {problem}")]
    BadValue {
        kind: &'static str,
        key: &'static str,
        problem: String,
    },
    #[error("scenario spec `{0}`: expected KIND or KIND:key=value,key=value")]
    Syntax(String),
    #[error("the request rate must be a positive finite number for scenario `{0}`, got {1}")]
    BadRate(&'static str, f64),
    #[error(transparent)]
    Arrival(#[from] ArrivalError),
}

/// A parsed scenario spec (see the module documentation for each kind).
#[derive(Clone, Debug, PartialEq)]
pub enum Scenario {
    Poisson,
    Gamma {
        burstiness: f64,
    },
    OnOff {
        on_s: f64,
        off_s: f64,
    },
    Flash {
        at_s: f64,
        for_s: f64,
        factor: f64,
    },
    Diurnal {
        period_s: f64,
        amplitude: f64,
    },
    Sessions {
        turns: u32,
        think_s: f64,
        system: u32,
        max_len: u32,
    },
}

impl Scenario {
    /// The kind's name, as the spec starts.
    pub fn kind(&self) -> &'static str {
        match self {
            Scenario::Poisson => "poisson",
            Scenario::Gamma { .. } => "gamma",
            Scenario::OnOff { .. } => "onoff",
            Scenario::Flash { .. } => "flash",
            Scenario::Diurnal { .. } => "diurnal",
            Scenario::Sessions { .. } => "sessions",
        }
    }

    /// `count` requests at a mean `rate` (requests/s), drawn from `seed`.
    pub fn workload(
        &self,
        count: usize,
        rate: f64,
        seed: u64,
    ) -> Result<Box<dyn Iterator<Item = WorkloadItem> + Send>, ScenarioError> {
        let kind = self.kind();
        let finite_rate = || {
            if rate.is_finite() && rate > 0.0 {
                Ok(rate)
            } else {
                Err(ScenarioError::BadRate(kind, rate))
            }
        };
        let arrivals = |times: Box<dyn Iterator<Item = f64> + Send>| {
            Box::new(SyntheticWorkload::with_arrivals(count, times, seed))
                as Box<dyn Iterator<Item = WorkloadItem> + Send>
        };
        Ok(match *self {
            Scenario::Poisson => Box::new(SyntheticWorkload::new(count, rate, seed)),
            Scenario::Gamma { burstiness } => {
                let seed = i64::try_from(seed).unwrap_or(i64::MAX);
                let times = send_offsets(count.max(1), rate, burstiness, seed)?;
                arrivals(Box::new(times.into_iter()))
            }
            Scenario::OnOff { on_s, off_s } => {
                let r = finite_rate()?;
                let period = on_s + off_s;
                arrivals(Box::new(Thinned::new(r, seed, move |t| {
                    if t.rem_euclid(period) < on_s {
                        r
                    } else {
                        0.0
                    }
                })))
            }
            Scenario::Flash {
                at_s,
                for_s,
                factor,
            } => {
                let r = finite_rate()?;
                arrivals(Box::new(Thinned::new(
                    r * factor.max(1.0),
                    seed,
                    move |t| {
                        if (at_s..at_s + for_s).contains(&t) {
                            r * factor
                        } else {
                            r
                        }
                    },
                )))
            }
            Scenario::Diurnal {
                period_s,
                amplitude,
            } => {
                let r = finite_rate()?;
                arrivals(Box::new(Thinned::new(
                    r * (1.0 + amplitude),
                    seed,
                    move |t| r * (1.0 + amplitude * (std::f64::consts::TAU * t / period_s).sin()),
                )))
            }
            Scenario::Sessions {
                turns,
                think_s,
                system,
                max_len,
            } => Box::new(Sessions::new(
                count,
                finite_rate()?,
                seed,
                turns,
                think_s,
                system,
                max_len,
            )),
        })
    }
}

impl std::str::FromStr for Scenario {
    type Err = ScenarioError;

    fn from_str(spec: &str) -> Result<Scenario, ScenarioError> {
        let (kind, rest) = spec.split_once(':').unwrap_or((spec, ""));
        let mut pairs = Vec::new();
        for kv in rest.split(',').filter(|s| !s.trim().is_empty()) {
            let (k, v) = kv
                .split_once('=')
                .ok_or_else(|| ScenarioError::Syntax(spec.to_string()))?;
            pairs.push((k.trim().to_string(), v.trim().to_string()));
        }
        let mut p = Params { kind: "", pairs };
        let s = match kind.trim() {
            "poisson" => {
                p.kind = "poisson";
                p.done("")?;
                Scenario::Poisson
            }
            "gamma" => {
                p.kind = "gamma";
                let burstiness = p.positive("burstiness", None)?;
                p.done("burstiness")?;
                Scenario::Gamma { burstiness }
            }
            "onoff" => {
                p.kind = "onoff";
                let on_s = p.positive("on", None)?;
                let off_s = p.non_negative("off", None)?;
                p.done("on, off")?;
                Scenario::OnOff { on_s, off_s }
            }
            "flash" => {
                p.kind = "flash";
                let at_s = p.non_negative("at", None)?;
                let for_s = p.positive("for", None)?;
                let factor = p.positive("x", None)?;
                p.done("at, for, x")?;
                Scenario::Flash {
                    at_s,
                    for_s,
                    factor,
                }
            }
            "diurnal" => {
                p.kind = "diurnal";
                let period_s = p.positive("period", None)?;
                let amplitude = p.non_negative("amplitude", Some(0.5))?;
                if amplitude > 1.0 {
                    return Err(p.bad("amplitude", format!("must be at most 1, got {amplitude}")));
                }
                p.done("period, amplitude")?;
                Scenario::Diurnal {
                    period_s,
                    amplitude,
                }
            }
            "sessions" => {
                p.kind = "sessions";
                let turns = p.whole("turns", 5)?;
                let think_s = p.non_negative("think", Some(10.0))?;
                let system = p.whole("system", 0)?;
                let max_len = p.whole("max_len", 4096)?;
                if turns == 0 {
                    return Err(p.bad("turns", "must be at least 1".into()));
                }
                if max_len < system + 8 {
                    return Err(p.bad(
                        "max_len",
                        format!("({max_len}) must leave at least 8 tokens after the system prompt ({system})"),
                    ));
                }
                p.done("turns, think, system, max_len")?;
                Scenario::Sessions {
                    turns,
                    think_s,
                    system,
                    max_len,
                }
            }
            other => return Err(ScenarioError::UnknownKind(other.to_string())),
        };
        Ok(s)
    }
}

/// The `key=value` pairs of a spec, taken one by one.
struct Params {
    kind: &'static str,
    pairs: Vec<(String, String)>,
}

impl Params {
    fn bad(&self, key: &'static str, problem: String) -> ScenarioError {
        ScenarioError::BadValue {
            kind: self.kind,
            key,
            problem,
        }
    }

    fn take(&mut self, key: &'static str) -> Option<String> {
        let i = self.pairs.iter().position(|(k, _)| k == key)?;
        Some(self.pairs.remove(i).1)
    }

    fn number(&mut self, key: &'static str, default: Option<f64>) -> Result<f64, ScenarioError> {
        match self.take(key) {
            Some(v) => v
                .parse::<f64>()
                .ok()
                .filter(|x| x.is_finite())
                .ok_or_else(|| self.bad(key, format!("must be a finite number, got `{v}`"))),
            None => default.ok_or_else(|| self.bad(key, "is required".into())),
        }
    }

    fn positive(&mut self, key: &'static str, default: Option<f64>) -> Result<f64, ScenarioError> {
        let x = self.number(key, default)?;
        if x > 0.0 {
            Ok(x)
        } else {
            Err(self.bad(key, format!("must be positive, got {x}")))
        }
    }

    fn non_negative(
        &mut self,
        key: &'static str,
        default: Option<f64>,
    ) -> Result<f64, ScenarioError> {
        let x = self.number(key, default)?;
        if x >= 0.0 {
            Ok(x)
        } else {
            Err(self.bad(key, format!("must not be negative, got {x}")))
        }
    }

    fn whole(&mut self, key: &'static str, default: u32) -> Result<u32, ScenarioError> {
        match self.take(key) {
            Some(v) => v
                .parse::<u32>()
                .map_err(|_| self.bad(key, format!("must be a whole number, got `{v}`"))),
            None => Ok(default),
        }
    }

    /// Refuses keys left over.
    fn done(&self, expected: &'static str) -> Result<(), ScenarioError> {
        match self.pairs.first() {
            Some((k, _)) => Err(ScenarioError::UnknownKey {
                kind: self.kind,
                key: k.clone(),
                expected: if expected.is_empty() {
                    "none"
                } else {
                    expected
                },
            }),
            None => Ok(()),
        }
    }
}

/// Stream tags, so that each generator's random stream differs from the synthetic lengths'.
const THINNING_STREAM: u64 = 0x7468_696e;
const SESSION_STREAM: u64 = 0x7365_7373;

/// A non-homogeneous Poisson process by thinning (Lewis & Shedler): candidates at the peak rate
/// `max_rate`, each kept with probability `rate(t) / max_rate`. Endless; times in seconds.
struct Thinned<F> {
    rng: Pcg64Mcg,
    gaps: Exp<f64>,
    max_rate: f64,
    rate: F,
    t: f64,
}

impl<F: Fn(f64) -> f64> Thinned<F> {
    fn new(max_rate: f64, seed: u64, rate: F) -> Self {
        Thinned {
            rng: Pcg64Mcg::seed_from_u64(seed ^ THINNING_STREAM),
            gaps: Exp::new(max_rate).expect("positive finite rate"),
            max_rate,
            rate,
            t: 0.0,
        }
    }
}

impl<F: Fn(f64) -> f64> Iterator for Thinned<F> {
    type Item = f64;

    fn next(&mut self) -> Option<f64> {
        loop {
            self.t += self.gaps.sample(&mut self.rng);
            let keep: f64 = self.rng.random();
            if keep * self.max_rate < (self.rate)(self.t) {
                return Some(self.t);
            }
        }
    }
}

/// One live session: its conversation so far and its turns taken.
struct Session {
    context: Vec<u32>,
    turn: u32,
}

/// Multi-turn sessions, merged into one arrival-ordered stream with only the live sessions in
/// memory.
struct Sessions {
    rng: Pcg64Mcg,
    seed: u64,
    count: usize,
    emitted: usize,
    turns: u32,
    max_len: usize,
    system: Arc<[u32]>,
    starts: Exp<f64>,
    think: Option<Exp<f64>>,
    prompt: LogNormal<f64>,
    output: LogNormal<f64>,
    /// When the next session starts, seconds.
    next_start: f64,
    sessions_started: usize,
    /// Sessions by their next turn's arrival, earliest first.
    due: BinaryHeap<Reverse<(Nanos, usize)>>,
    live: Vec<Option<Session>>,
}

impl Sessions {
    fn new(
        count: usize,
        rate: f64,
        seed: u64,
        turns: u32,
        think_s: f64,
        system: u32,
        max_len: u32,
    ) -> Self {
        let mut rng = Pcg64Mcg::seed_from_u64(seed ^ SESSION_STREAM);
        let starts = Exp::new(rate / turns as f64).expect("positive rate");
        let next_start = starts.sample(&mut rng);
        Sessions {
            rng,
            seed,
            count,
            emitted: 0,
            turns,
            max_len: max_len as usize,
            // One system prompt for every session; `usize::MAX` is no request's line.
            system: synthetic_ids(seed, usize::MAX, system),
            starts,
            think: (think_s > 0.0).then(|| Exp::new(1.0 / think_s).expect("positive")),
            prompt: LogNormal::new(PROMPT_LN_MU, LEN_LN_SIGMA).expect("valid"),
            output: LogNormal::new(OUTPUT_LN_MU, LEN_LN_SIGMA).expect("valid"),
            next_start,
            sessions_started: 0,
            due: BinaryHeap::new(),
            live: Vec::new(),
        }
    }

    fn lengths(&mut self) -> (usize, usize) {
        let new = (self.prompt.sample(&mut self.rng).round() as usize).clamp(4, 1024);
        let out = (self.output.sample(&mut self.rng).round() as usize).clamp(4, 1024);
        (new, out)
    }
}

impl Iterator for Sessions {
    type Item = WorkloadItem;

    fn next(&mut self) -> Option<WorkloadItem> {
        while self.emitted < self.count {
            let start = Nanos::from_secs_f64(self.next_start);
            // Sessions start until the next start is later than every due turn.
            if self.due.peek().is_none_or(|Reverse((t, _))| start <= *t) {
                let i = self.live.len();
                self.live.push(Some(Session {
                    context: self.system.to_vec(),
                    turn: 0,
                }));
                self.due.push(Reverse((start, i)));
                self.sessions_started += 1;
                self.next_start += self.starts.sample(&mut self.rng);
                continue;
            }
            let Reverse((arrival, i)) = self.due.pop()?;
            let (mut new, mut out) = self.lengths();
            let mut s = self.live[i].take()?;
            if s.context.len() + new + out > self.max_len {
                if s.turn > 0 {
                    continue; // the session ends: its next turn would not fit
                }
                // A first turn always fits: shrink it (max_len ≥ system + 8).
                let room = self.max_len - s.context.len();
                out = out.min(room / 2);
                new = new.min(room - out);
            }
            let line = self.emitted;
            self.emitted += 1;
            s.context
                .extend_from_slice(&synthetic_ids(self.seed, line, new as u32));
            let prompt: Arc<[u32]> = Arc::from(s.context.as_slice());
            let item = WorkloadItem {
                request_id: format!("s{i}-t{}", s.turn),
                arrival,
                prompt_token_ids: prompt.into(),
                output_len: out as u32,
                priority: 0,
                cache_salt: None,
                tenant: Some(Arc::from(format!("session-{i}"))),
            };
            s.turn += 1;
            if s.turn < self.turns {
                // The answer joins the conversation (synthetic tokens; see the module docs).
                s.context.extend_from_slice(&synthetic_ids(
                    self.seed ^ SESSION_STREAM,
                    line,
                    out as u32,
                ));
                let gap = self.think.map_or(0.0, |e| e.sample(&mut self.rng));
                let next = Nanos::from_secs_f64(arrival.as_secs_f64() + gap).max(arrival);
                self.due.push(Reverse((next, i)));
                self.live[i] = Some(s);
            }
            return Some(item);
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn times(s: &str, n: usize, rate: f64, seed: u64) -> Vec<f64> {
        let sc: Scenario = s.parse().unwrap();
        sc.workload(n, rate, seed)
            .unwrap()
            .map(|i| i.arrival.as_secs_f64())
            .collect()
    }

    #[test]
    fn specs_parse_and_bad_ones_say_why() {
        assert_eq!("poisson".parse(), Ok(Scenario::Poisson));
        assert_eq!(
            "flash:at=10,for=5,x=4".parse(),
            Ok(Scenario::Flash {
                at_s: 10.0,
                for_s: 5.0,
                factor: 4.0
            })
        );
        assert_eq!(
            "sessions".parse(),
            Ok(Scenario::Sessions {
                turns: 5,
                think_s: 10.0,
                system: 0,
                max_len: 4096
            })
        );
        let err = |s: &str| s.parse::<Scenario>().unwrap_err().to_string();
        assert!(err("storm").contains("unknown scenario `storm`"));
        assert!(err("gamma").contains("`burstiness` is required"));
        assert!(err("gamma:burstiness=0").contains("must be positive"));
        assert!(err("onoff:on=1,off=2,of=3").contains("unknown key `of`"));
        assert!(err("diurnal:period=10,amplitude=2").contains("at most 1"));
        assert!(err("flash:at").contains("KIND:key=value"));
        assert!(err("sessions:turns=0").contains("at least 1"));
        assert!(err("sessions:turns=x").contains("whole number"));
        let sc: Scenario = "onoff:on=1,off=1".parse().unwrap();
        assert!(sc.workload(10, f64::INFINITY, 0).is_err());
    }

    #[test]
    fn every_scenario_is_deterministic_per_seed_and_ordered() {
        for s in [
            "poisson",
            "gamma:burstiness=0.3",
            "onoff:on=5,off=5",
            "flash:at=20,for=10,x=5",
            "diurnal:period=60,amplitude=0.9",
            "sessions:turns=4,think=2,system=64",
        ] {
            let sc: Scenario = s.parse().unwrap();
            let a: Vec<_> = sc.workload(500, 10.0, 7).unwrap().collect();
            let b: Vec<_> = sc.workload(500, 10.0, 7).unwrap().collect();
            let c: Vec<_> = sc.workload(500, 10.0, 8).unwrap().collect();
            assert_eq!(a.len(), 500, "{s}");
            assert_eq!(a, b, "{s}");
            assert_ne!(a, c, "{s}");
            assert!(a.windows(2).all(|w| w[0].arrival <= w[1].arrival), "{s}");
            let ids: std::collections::HashSet<_> = a.iter().map(|i| &i.request_id).collect();
            assert_eq!(ids.len(), 500, "{s}: unique ids");
        }
    }

    /// Arrivals per second between `from` and `to` seconds.
    fn rate_in(t: &[f64], from: f64, to: f64) -> f64 {
        t.iter().filter(|&&x| x >= from && x < to).count() as f64 / (to - from)
    }

    #[test]
    fn gamma_is_vllm_bench_arrivals_with_the_asked_burstiness() {
        let t = times("gamma:burstiness=0.25", 20_000, 50.0, 3);
        let want = send_offsets(20_000, 50.0, 0.25, 3).unwrap();
        assert_eq!(t.len(), want.len());
        // The same times, to the nanosecond of the workload's clock.
        assert!(t.iter().zip(&want).all(|(a, b)| (a - b).abs() < 1e-9));
        // Rescaled so that the last goes out at n / rate.
        assert!((t[19_999] - 400.0).abs() < 1e-6);
        // Gamma gaps of shape k have a coefficient of variation 1/√k = 2.
        let gaps: Vec<f64> = t.windows(2).map(|w| w[1] - w[0]).collect();
        let mean = gaps.iter().sum::<f64>() / gaps.len() as f64;
        let var = gaps.iter().map(|g| (g - mean).powi(2)).sum::<f64>() / gaps.len() as f64;
        let cv = var.sqrt() / mean;
        assert!((1.8..2.2).contains(&cv), "cv {cv}");
    }

    #[test]
    fn on_off_sends_only_in_on_periods_at_the_rate() {
        let t = times("onoff:on=10,off=30", 20_000, 40.0, 1);
        assert!(t.iter().all(|x| x.rem_euclid(40.0) < 10.0));
        let end = t.last().unwrap();
        let whole = (end / 40.0).floor() * 40.0;
        // Mean over whole periods: 40 × 10 / 40 = 10 requests/s.
        let mean = rate_in(&t, 0.0, whole);
        assert!((9.5..10.5).contains(&mean), "{mean}");
    }

    #[test]
    fn a_flash_crowd_multiplies_the_rate_in_its_window() {
        let t = times("flash:at=100,for=100,x=5", 30_000, 20.0, 2);
        let before = rate_in(&t, 0.0, 100.0);
        let during = rate_in(&t, 100.0, 200.0);
        let after = rate_in(&t, 200.0, 400.0);
        assert!((18.0..22.0).contains(&before), "{before}");
        assert!((95.0..105.0).contains(&during), "{during}");
        assert!((18.5..21.5).contains(&after), "{after}");
    }

    #[test]
    fn diurnal_load_follows_the_sine() {
        let t = times("diurnal:period=100,amplitude=0.8", 40_000, 20.0, 4);
        let whole = (t.last().unwrap() / 100.0).floor() * 100.0;
        let mean = rate_in(&t, 0.0, whole);
        assert!((19.2..20.8).contains(&mean), "{mean}");
        // Over many periods, the rising half-period against the falling one: the mean of
        // 1 ± 0.8·sin over a half period is 1 ± 0.8·2/π.
        let (mut high, mut low) = (0usize, 0usize);
        for x in t.iter().filter(|&&x| x < whole) {
            if x.rem_euclid(100.0) < 50.0 {
                high += 1;
            } else {
                low += 1;
            }
        }
        let ratio = high as f64 / low as f64;
        let want =
            (1.0 + 0.8 * 2.0 / std::f64::consts::PI) / (1.0 - 0.8 * 2.0 / std::f64::consts::PI);
        assert!((ratio / want - 1.0).abs() < 0.08, "{ratio} vs {want}");
    }

    #[test]
    fn sessions_share_their_history_as_prefix() {
        let sc: Scenario = "sessions:turns=4,think=5,system=32,max_len=3000"
            .parse()
            .unwrap();
        let items: Vec<_> = sc.workload(2000, 20.0, 9).unwrap().collect();
        assert_eq!(items.len(), 2000);
        let system = items[0].prompt_token_ids.ids()[..32].to_vec();
        let mut last: std::collections::HashMap<Arc<str>, &WorkloadItem> = Default::default();
        let mut follow_ups = 0;
        for it in &items {
            let tenant = it.tenant.clone().expect("a session id");
            let ids = it.prompt_token_ids.ids();
            assert_eq!(ids[..32], system, "the shared system prompt");
            assert!(it.prompt_token_ids.len() + it.output_len as usize <= 3000);
            if let Some(prev) = last.get(&tenant) {
                let p = prev.prompt_token_ids.ids();
                assert!(ids.len() > p.len() + prev.output_len as usize);
                assert_eq!(&ids[..p.len()], &p[..], "{}", it.request_id);
                assert!(it.arrival >= prev.arrival);
                follow_ups += 1;
            }
            last.insert(tenant, it);
        }
        // Most sessions run several turns.
        assert!(follow_ups > 1000, "{follow_ups}");
        // Requests average the rate: 2000 at 20/s take about 100 s (plus the last think times).
        let span = items.last().unwrap().arrival.as_secs_f64();
        assert!((85.0..130.0).contains(&span), "{span}");
    }
}
