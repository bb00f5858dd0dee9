//! GPU-hour prices: a built-in table of illustrative list prices, or the user's own
//! (`--prices FILE`, which replaces the table), looked up by the GPU's canonical name.

use anyhow::{bail, Result};
use llm_emu_perf::gpu::GpuSpec;
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::Path;

/// Illustrative on-demand prices in US dollars per GPU-hour, one GPU of each kind. They are
/// round figures of the order cloud list prices had in late 2026, not quotes from any
/// provider: plans compare configurations with them, and `--prices FILE` sets real ones.
const BUILT_IN: &[(&str, f64)] = &[
    ("h100-sxm", 3.00),
    ("h100-pcie", 2.50),
    ("h200", 3.80),
    ("b200", 6.00),
    ("a100-40gb", 1.30),
    ("a100-80gb", 1.80),
    ("l40s", 1.00),
    ("a40", 0.70),
    ("rtx-4090", 0.50),
    ("rtx-pro-6000", 1.90),
    ("rtx-pro-6000-workstation", 1.80),
];

/// Dollars per GPU-hour by canonical GPU name, and where they come from.
#[derive(Clone, Debug)]
pub struct Prices {
    pub per_gpu_hour: BTreeMap<String, f64>,
    /// `built-in (illustrative list prices)` or the file's path.
    pub source: String,
}

impl Prices {
    pub fn built_in() -> Prices {
        Prices {
            per_gpu_hour: BUILT_IN.iter().map(|(g, p)| (g.to_string(), *p)).collect(),
            source: "built-in (illustrative list prices, USD per GPU-hour)".into(),
        }
    }

    /// A file of `gpu: dollars-per-GPU-hour` (JSON or the sweep's YAML subset); any name
    /// `--gpu` takes. It replaces the built-in table.
    pub fn load(path: &Path) -> Result<Prices> {
        let doc = crate::sweep::yaml::read_file(path)?;
        let Some(map) = doc.as_object() else {
            bail!(
                "{}: expected `gpu: price per GPU-hour` lines (an object)",
                path.display()
            );
        };
        let mut per_gpu_hour = BTreeMap::new();
        for (name, v) in map {
            let gpu = GpuSpec::lookup(name)
                .map_err(|e| anyhow::anyhow!("{}: `{name}`: {e}", path.display()))?;
            let price = match v {
                Value::Number(n) => n.as_f64(),
                Value::String(s) => s.trim().parse::<f64>().ok(),
                _ => None,
            };
            match price {
                Some(p) if p > 0.0 && p.is_finite() => {
                    per_gpu_hour.insert(gpu.name.to_string(), p);
                }
                _ => bail!(
                    "{}: `{name}`: the price must be a positive number of dollars per GPU-hour, \
                     got {v}",
                    path.display()
                ),
            }
        }
        if per_gpu_hour.is_empty() {
            bail!("{}: the price table is empty", path.display());
        }
        Ok(Prices {
            per_gpu_hour,
            source: path.display().to_string(),
        })
    }

    /// Checks that every GPU of the search has a price (canonical names).
    pub fn check_covers(&self, gpus: &[String]) -> Result<()> {
        let missing: Vec<&str> = gpus
            .iter()
            .filter(|g| !self.per_gpu_hour.contains_key(*g))
            .map(String::as_str)
            .collect();
        if !missing.is_empty() {
            bail!(
                "the price table ({}) has no price for {}: add `{}: DOLLARS` (per GPU-hour) or \
                 leave {} out of --gpus (priced: {})",
                self.source,
                missing.join(", "),
                missing[0],
                if missing.len() == 1 { "it" } else { "them" },
                self.per_gpu_hour
                    .keys()
                    .cloned()
                    .collect::<Vec<_>>()
                    .join(", ")
            );
        }
        Ok(())
    }

    /// Dollars per GPU-hour of a GPU the table covers ([`Prices::check_covers`]).
    pub fn of(&self, gpu: &str) -> f64 {
        self.per_gpu_hour.get(gpu).copied().unwrap_or(f64::INFINITY)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_built_in_name_is_a_known_gpu() {
        for (g, _) in BUILT_IN {
            assert_eq!(GpuSpec::lookup(g).unwrap().name, *g);
        }
    }

    #[test]
    fn a_file_replaces_the_table_and_must_cover_the_search() {
        let d = tempfile::Builder::new()
            .prefix("llm-emu-prices-")
            .tempdir()
            .unwrap();
        let p = d.path().join("prices.yaml");
        std::fs::write(&p, "h100: 2.5\nh200: \"3\"\n").unwrap();
        let prices = Prices::load(&p).unwrap();
        assert_eq!(prices.of("h100-sxm"), 2.5);
        assert_eq!(prices.of("h200"), 3.0);
        let err = prices
            .check_covers(&["h100-sxm".into(), "b200".into()])
            .unwrap_err()
            .to_string();
        assert!(err.contains("no price for b200"), "{err}");
        std::fs::write(&p, "h100: -1\n").unwrap();
        assert!(Prices::load(&p).is_err());
        std::fs::write(&p, "h1000: 1\n").unwrap();
        assert!(Prices::load(&p).unwrap_err().to_string().contains("h1000"));
    }
}
