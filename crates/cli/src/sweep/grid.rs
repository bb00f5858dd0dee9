//! The sweep's points: a grid file (`--grid`: the cartesian product of its axes) or a list
//! file (`--list`: explicit points), each point a set of `simulate` flags by their long names,
//! turned into the command line `simulate` parses.

use crate::simulate::SimulateArgs;
use anyhow::{bail, Context, Result};
use clap::{ArgAction, CommandFactory, Parser};
use serde_json::{Map, Value};
use std::path::Path;

/// The flag that sets a point's arrival rate; the points that differ only in it form one
/// configuration's throughput–latency curve.
pub const RATE: &str = "request-rate";

/// The flag that caps the requests in flight (`vllm bench serve --max-concurrency`); when it
/// is an axis and the rate is not, the curves run over it instead.
pub const CONCURRENCY: &str = "max-concurrency";

/// `simulate` flags a sweep point may not set: the sweep writes its own outputs.
const RESERVED: &[&str] = &[
    "output-json",
    "requests-out",
    "steps-out",
    "quiet",
    "help",
    "version",
];

/// `simulate`'s flags, parsed the way `llm-emu simulate` parses them.
#[derive(Parser)]
#[command(name = "llm-emu simulate")]
pub struct PointCli {
    #[command(flatten)]
    pub sim: SimulateArgs,
}

/// One setting: a flag's long name (`max-num-seqs`) and its value.
pub type Setting = (String, Value);

/// A sweep point: its index in the whole sweep, its configuration's index, and its settings
/// (the axes' values, in axis order, the rate last).
#[derive(Clone, Debug)]
pub struct Point {
    pub index: usize,
    pub config: usize,
    pub settings: Vec<Setting>,
}

impl Point {
    /// The point's value of `curve` (requests/s for the rate, `inf` as infinity; requests for
    /// the concurrency); `None` when it sets none (simulate's default then applies).
    pub fn value(&self, curve: &str) -> Option<f64> {
        self.settings
            .iter()
            .find(|(k, _)| k == curve)
            .and_then(|(_, v)| rate_value(v))
    }
}

/// A rate as a grid writes it: a number or the string `inf`.
pub fn rate_value(v: &Value) -> Option<f64> {
    match v {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => s.parse::<f64>().ok(),
        _ => None,
    }
}

/// What the grid or list file says.
#[derive(Clone, Debug)]
pub struct Sweep {
    /// Settings every point shares.
    pub base: Vec<Setting>,
    /// The axis names, in order (the table's setting columns); the rate last when present.
    pub axes: Vec<String>,
    pub points: Vec<Point>,
    /// Number of configurations (points equal but for the curve's axis).
    pub configs: usize,
    /// The axis the curves run over: [`RATE`], or [`CONCURRENCY`] when it is an axis and the
    /// rate is not.
    pub curve: &'static str,
}

/// Reads a grid (`list` false: `{"base": {...}, "grid": {"flag": [values]}, "rates": [...]}`)
/// or list (`{"base": {...}, "points": [{"flag": value}], "rates": [...]}`) file, JSON or
/// (`concurrencies` instead of `rates` crosses concurrency caps with every point),
/// the YAML subset of [`super::yaml`], and checks every flag name and value against
/// `simulate`'s flags.
pub fn load(path: &Path, list: bool) -> Result<Sweep> {
    let doc = super::yaml::read_file(path)?;
    let doc = doc
        .as_object()
        .with_context(|| format!("{}: expected an object at the top", path.display()))?;
    for key in doc.keys() {
        if !["base", "grid", "points", "rates", "concurrencies"].contains(&key.as_str()) {
            bail!(
                "{}: unknown key `{key}` (expected base, grid, points, rates, concurrencies)",
                path.display()
            );
        }
    }
    let base = match doc.get("base") {
        None => Vec::new(),
        Some(Value::Object(m)) => m.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
        Some(_) => bail!("`base`: expected an object of flag: value"),
    };
    let rates = match (doc.get("rates"), doc.get("concurrencies")) {
        (None, None) => None,
        (Some(_), Some(_)) => bail!("give `rates` or `concurrencies`, not both"),
        (Some(Value::Array(a)), None) if !a.is_empty() => Some((RATE, a.clone())),
        (None, Some(Value::Array(a))) if !a.is_empty() => Some((CONCURRENCY, a.clone())),
        (Some(_), None) => bail!("`rates`: expected a non-empty list of request rates"),
        (None, Some(_)) => bail!("`concurrencies`: expected a non-empty list of request counts"),
    };
    let configs: Vec<Vec<Setting>>;
    let mut axes: Vec<String>;
    if list {
        let Some(Value::Array(pts)) = doc.get("points") else {
            bail!("--list: the file needs `points`, a list of objects of flag: value");
        };
        if pts.is_empty() {
            bail!("`points`: the list is empty");
        }
        axes = Vec::new();
        let mut out = Vec::new();
        for (i, p) in pts.iter().enumerate() {
            let m = p
                .as_object()
                .with_context(|| format!("`points[{i}]`: expected an object of flag: value"))?;
            for k in m.keys() {
                if !axes.contains(k) {
                    axes.push(k.clone());
                }
            }
            out.push(m.iter().map(|(k, v)| (k.clone(), v.clone())).collect());
        }
        configs = out;
    } else {
        let Some(Value::Object(grid)) = doc.get("grid") else {
            bail!("--grid: the file needs `grid`, an object of flag: [values]");
        };
        axes = grid.keys().cloned().collect();
        configs = product(grid)?;
    }
    let mut points_settings: Vec<Vec<Setting>> = Vec::new();
    match rates {
        Some((key, rates)) => {
            if axes.iter().any(|a| a == key) {
                let list = if key == RATE {
                    "rates"
                } else {
                    "concurrencies"
                };
                bail!("`{key}` is both an axis and `{list}`: give it once");
            }
            axes.push(key.into());
            for c in &configs {
                for r in &rates {
                    let mut s = c.clone();
                    s.push((key.into(), r.clone()));
                    points_settings.push(s);
                }
            }
        }
        None => points_settings = configs,
    }
    let curve = if !axes.iter().any(|a| a == RATE) && axes.iter().any(|a| a == CONCURRENCY) {
        CONCURRENCY
    } else {
        RATE
    };
    // The curve's axis last in every point and among the axes, so that a configuration's
    // points sit together in curve order.
    if let Some(i) = axes.iter().position(|a| a == curve) {
        let a = axes.remove(i);
        axes.push(a);
    }
    let mut points = Vec::with_capacity(points_settings.len());
    let mut config_keys: Vec<String> = Vec::new();
    for (index, mut settings) in points_settings.into_iter().enumerate() {
        if let Some(i) = settings.iter().position(|(k, _)| k == curve) {
            let s = settings.remove(i);
            settings.push(s);
        }
        let key = config_key(&settings, curve);
        let config = match config_keys.iter().position(|k| *k == key) {
            Some(c) => c,
            None => {
                config_keys.push(key);
                config_keys.len() - 1
            }
        };
        points.push(Point {
            index,
            config,
            settings,
        });
    }
    let sweep = Sweep {
        base,
        axes,
        points,
        configs: config_keys.len(),
        curve,
    };
    check_names(&sweep)?;
    Ok(sweep)
}

/// The settings but the curve's axis, as one string: equal for the points of one
/// configuration.
fn config_key(settings: &[Setting], curve: &str) -> String {
    settings
        .iter()
        .filter(|(k, _)| k != curve)
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("\u{1}")
}

/// Every combination of the grid's axes, the last axis varying fastest.
fn product(grid: &Map<String, Value>) -> Result<Vec<Vec<Setting>>> {
    let mut out: Vec<Vec<Setting>> = vec![Vec::new()];
    for (axis, values) in grid {
        let values = match values {
            Value::Array(a) if !a.is_empty() => a.clone(),
            Value::Array(_) => bail!("axis `{axis}`: the list of values is empty"),
            // A single value is an axis of one.
            v => vec![v.clone()],
        };
        let mut next = Vec::with_capacity(out.len() * values.len());
        for prefix in &out {
            for v in &values {
                let mut p = prefix.clone();
                p.push((axis.clone(), v.clone()));
                next.push(p);
            }
        }
        out = next;
    }
    Ok(out)
}

/// Refuses names that are not `simulate` flags, or that the sweep sets itself.
fn check_names(sweep: &Sweep) -> Result<()> {
    let cmd = PointCli::command();
    for name in sweep.base.iter().map(|(k, _)| k).chain(&sweep.axes) {
        let name = name.as_str();
        let what = if sweep.axes.iter().any(|a| a == name) {
            "axis"
        } else {
            "base setting"
        };
        if RESERVED.contains(&name) {
            bail!("{what} `{name}`: the sweep sets this flag itself");
        }
        if !cmd.get_arguments().any(|a| a.get_long() == Some(name)) {
            let hint = cmd
                .get_arguments()
                .filter_map(|a| a.get_long())
                .find(|l| l.replace('-', "_") == name.replace('-', "_"))
                .map(|l| format!(" (did you mean `{l}`?)"))
                .unwrap_or_default();
            bail!("{what} `{name}`: not a `llm-emu simulate` flag{hint}");
        }
    }
    Ok(())
}

/// The command line of one point: `--quiet`, then the base settings, then the point's.
pub fn argv(base: &[Setting], settings: &[Setting]) -> Result<Vec<String>> {
    let cmd = PointCli::command();
    let mut out = vec!["llm-emu simulate".to_string(), "--quiet".to_string()];
    for (name, value) in base.iter().chain(settings) {
        let arg = cmd
            .get_arguments()
            .find(|a| a.get_long() == Some(name.as_str()))
            .with_context(|| format!("`{name}`: not a `llm-emu simulate` flag"))?;
        let switch = matches!(arg.get_action(), ArgAction::SetTrue);
        match (switch, value) {
            (true, Value::Bool(true)) => out.push(format!("--{name}")),
            (true, Value::Bool(false)) => {
                let off = format!("no-{name}");
                if cmd
                    .get_arguments()
                    .any(|a| a.get_long() == Some(off.as_str()))
                {
                    out.push(format!("--{off}"));
                }
            }
            (true, v) => bail!("`{name}` = {v}: a switch takes true or false"),
            (false, Value::String(s)) => out.push(format!("--{name}={s}")),
            (false, Value::Number(n)) => out.push(format!("--{name}={n}")),
            (false, v) => bail!("`{name}` = {v}: expected a string or a number"),
        }
    }
    Ok(out)
}

/// Parses one point's command line as `simulate` would.
pub fn parse(base: &[Setting], settings: &[Setting]) -> Result<SimulateArgs> {
    let argv = argv(base, settings)?;
    let cli = PointCli::try_parse_from(&argv).map_err(|e| {
        let msg = e.to_string();
        let first = msg
            .lines()
            .find(|l| !l.trim().is_empty())
            .unwrap_or("invalid value")
            .trim_start_matches("error: ")
            .to_string();
        anyhow::anyhow!(first)
    })?;
    Ok(cli.sim)
}
