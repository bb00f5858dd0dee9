//! LLMServingSim's cluster config, read as it is: `num_nodes`, `link_bw` (ASTRA-sim's GB/s of
//! 2³⁰ bytes, converted by [`llm_emu_perf::link_units`]), `link_latency` (ns), `nodes[].instances[]` with `model_name`, `hardware`, `npu_mem`, `num_npus`, `tp_size`,
//! `pp_size`, `ep_size`, `dp_group`, `pd_type` and the per-instance runtime overrides
//! (`max_num_seqs`, `max_num_batched_tokens`, `long_prefill_token_threshold`, `block_size`,
//! `enable_chunked_prefill`, `enable_prefix_caching`).
//!
//! This module checks the file's own structure (types, counts, roles, group consistency) and
//! says which fleet it describes ([`Topology`]); whether a model or GPU name is known is for
//! the caller that builds each instance's engine, which names the field with
//! [`InstanceSpec::field`].

use llm_emu_perf::cluster_link::{
    network_dims, per_dimension, LinkQuantity, LinkRole, TopologyInstance,
};
use llm_emu_perf::link_units::cluster_link_gbs;
use serde_json::Value;
use std::path::Path;
use thiserror::Error;

/// A cluster config that cannot be used; every message names the field.
#[derive(Debug, Error)]
pub enum ClusterError {
    #[error("cannot read the cluster config {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("the cluster config {path} is not JSON: {source}")]
    Json {
        path: String,
        source: serde_json::Error,
    },
    /// A field is missing, of the wrong type or out of range.
    #[error("cluster config: `{field}`: {message}")]
    Field { field: String, message: String },
}

/// Why a pipeline-parallel degree above 1 is refused (the cluster file's `pp_size`, the
/// command line's `--pipeline-parallel-size`).
pub const PP_NOT_MODELLED: &str = "pipeline parallelism is not modelled (1 only): vLLM's V1 \
     engine keeps one batch in flight per pipeline stage (`EngineCore.step_with_batch_queue`), \
     scheduling each while the earlier ones are still in the pipeline, and llm-emu's engine \
     runs one batch at a time; use tensor parallelism (`tp_size`, `--tensor-parallel-size`) \
     instead";

fn field_err(field: impl Into<String>, message: impl Into<String>) -> ClusterError {
    ClusterError::Field {
        field: field.into(),
        message: message.into(),
    }
}

/// The link between GPUs and instances: the expert all-to-all and the KV transfer of
/// prefill/decode disaggregation are priced over it.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Link {
    /// Bandwidth, GB/s (10⁹ bytes per second).
    pub bandwidth_gbs: f64,
    /// Latency of one transfer, ns.
    pub latency_ns: f64,
}

impl Default for Link {
    /// `link_bw` 16 (GiB/s: 17.18 GB/s) and 20 µs, the peer's example clusters' link
    /// (PCIe-class).
    fn default() -> Link {
        Link {
            bandwidth_gbs: cluster_link_gbs(16.0),
            latency_ns: 20_000.0,
        }
    }
}

impl Link {
    /// Time to move `bytes` over the link: latency + bytes / bandwidth, ns (rounded up).
    pub fn transfer_ns(&self, bytes: u64) -> u64 {
        let ns = self.latency_ns + bytes as f64 / self.bandwidth_gbs;
        ns.max(0.0).ceil() as u64
    }
}

/// The role of an instance under prefill/decode disaggregation (vLLM's `kv_transfer_config`
/// `kv_role`: `kv_producer` / `kv_consumer`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PdRole {
    /// Computes the prompt and the first token, then hands the KV blocks on.
    Prefill,
    /// Takes the KV blocks and generates the rest.
    Decode,
}

/// One instance of the cluster, as the file gives it (`None`: not given, the command line or
/// vLLM's default applies).
#[derive(Clone, Debug, PartialEq)]
pub struct InstanceSpec {
    /// Where it is in the file, `nodes[N].instances[M]`, for messages.
    pub field: String,
    pub model_name: String,
    pub hardware: String,
    /// `npu_mem.mem_size`, GB per GPU.
    pub mem_size_gb: Option<f64>,
    /// `npu_mem.mem_util`.
    pub mem_util: Option<f64>,
    /// GPUs of the instance (`num_npus`; default `tp_size × pp_size`).
    pub num_npus: u64,
    pub tp_size: u64,
    /// Expert-parallel degree (`ep_size`; `None`: not given). Within a `dp_group` it is the
    /// group's total EP degree, as in the peer.
    pub ep_size: Option<u64>,
    pub dp_group: Option<String>,
    pub pd_type: Option<PdRole>,
    pub max_num_seqs: Option<usize>,
    pub max_num_batched_tokens: Option<usize>,
    pub long_prefill_token_threshold: Option<usize>,
    pub block_size: Option<usize>,
    pub enable_chunked_prefill: Option<bool>,
    pub enable_prefix_caching: Option<bool>,
}

impl InstanceSpec {
    /// `nodes[N].instances[M].NAME`, for an error about one of its fields.
    pub fn field_path(&self, name: &str) -> String {
        format!("{}.{name}", self.field)
    }
}

/// Which fleet a cluster describes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Topology {
    /// One instance.
    Single,
    /// Independent instances behind a router (indexes into [`ClusterSpec::instances`]).
    Replicas,
    /// Every instance in one `dp_group`: one vLLM engine with `--data-parallel-size` = the
    /// group's size; `ep` = the group's `ep_size` (1: no expert parallelism).
    DataParallel { group: String, ep: u64 },
    /// Several `dp_group`s, each one vLLM DP engine, behind the router as replicas (every
    /// rank an instance it routes to); each group's members are listed together in the file,
    /// in group order. `(name, members, ep)` per group.
    DataParallelGroups { groups: Vec<(String, usize, u64)> },
    /// Prefill and decode instances (indexes into [`ClusterSpec::instances`]). A side whose
    /// instances form one `dp_group` is one vLLM DP deployment (`prefill_group` /
    /// `decode_group`: its name), its ranks chosen by vLLM's DP load balancer; a side without
    /// groups is independent instances (the decode side behind the router).
    Disaggregated {
        prefill: Vec<usize>,
        decode: Vec<usize>,
        prefill_group: Option<String>,
        decode_group: Option<String>,
    },
}

/// A parsed cluster config.
#[derive(Clone, Debug, PartialEq)]
pub struct ClusterSpec {
    pub link: Link,
    pub instances: Vec<InstanceSpec>,
    pub topology: Topology,
}

impl ClusterSpec {
    /// Reads and checks the file at `path`.
    pub fn load(path: &Path) -> Result<ClusterSpec, ClusterError> {
        let text =
            llm_emu_perf::text_file::read_text(path).map_err(|source| ClusterError::Read {
                path: path.display().to_string(),
                source,
            })?;
        let v: Value = serde_json::from_str(&text).map_err(|source| ClusterError::Json {
            path: path.display().to_string(),
            source,
        })?;
        ClusterSpec::from_json(&v)
    }

    /// Checks a parsed cluster config.
    pub fn from_json(v: &Value) -> Result<ClusterSpec, ClusterError> {
        let nodes = v
            .get("nodes")
            .ok_or_else(|| field_err("nodes", "missing"))?
            .as_array()
            .ok_or_else(|| field_err("nodes", "not a list"))?;
        if let Some(n) = opt_u64(v, "num_nodes", "num_nodes")? {
            if n as usize != nodes.len() {
                return Err(field_err(
                    "num_nodes",
                    format!("{n}, but `nodes` lists {}", nodes.len()),
                ));
            }
        }
        let mut instances = Vec::new();
        for (n, node) in nodes.iter().enumerate() {
            let at = format!("nodes[{n}]");
            let list = node
                .get("instances")
                .ok_or_else(|| field_err(format!("{at}.instances"), "missing"))?
                .as_array()
                .ok_or_else(|| field_err(format!("{at}.instances"), "not a list"))?;
            if let Some(k) = opt_u64(node, "num_instances", &format!("{at}.num_instances"))? {
                if k as usize != list.len() {
                    return Err(field_err(
                        format!("{at}.num_instances"),
                        format!("{k}, but `instances` lists {}", list.len()),
                    ));
                }
            }
            for (i, inst) in list.iter().enumerate() {
                instances.push(instance(inst, format!("{at}.instances[{i}]"))?);
            }
        }
        if instances.is_empty() {
            return Err(field_err("nodes[].instances", "no instance in the cluster"));
        }
        let topology = topology(&instances)?;
        let link = link_between_instances(v, &instances)?;
        Ok(ClusterSpec {
            link,
            instances,
            topology,
        })
    }
}

/// The link between instances or data-parallel ranks: the last dimension's `link_bw`
/// (GiB/s) and `link_latency` (ns) of the peer's topology ([`llm_emu_perf::cluster_link`],
/// which checks every value); [`Link::default`] without a `link_bw`, and no latency where only
/// `link_latency` is missing (as the TP link of a replayed run is read).
fn link_between_instances(v: &Value, instances: &[InstanceSpec]) -> Result<Link, ClusterError> {
    let layout: Vec<TopologyInstance<'_>> = instances
        .iter()
        .map(|i| TopologyInstance {
            tp_size: i.tp_size,
            pp_size: 1,
            num_npus: i.num_npus,
            dp_group: i.dp_group.as_deref(),
            prefill: i.pd_type == Some(PdRole::Prefill),
        })
        .collect();
    let dims = network_dims(&layout).len();
    let at = LinkRole::BetweenInstances.dimension(dims);
    let value = |field: &str, what: LinkQuantity| -> Result<Option<f64>, ClusterError> {
        v.get(field)
            .filter(|x| !x.is_null())
            .map(|x| per_dimension(x, dims, what).map(|all| all[at]))
            .transpose()
            .map_err(|e| field_err(field, e))
    };
    let bw = value("link_bw", LinkQuantity::Bandwidth)?;
    let latency = value("link_latency", LinkQuantity::Latency)?;
    Ok(match bw {
        Some(b) => Link {
            bandwidth_gbs: cluster_link_gbs(b),
            latency_ns: latency.unwrap_or(0.0),
        },
        None => Link::default(),
    })
}

fn instance(v: &Value, at: String) -> Result<InstanceSpec, ClusterError> {
    if !v.is_object() {
        return Err(field_err(at, "not an object"));
    }
    let f = |k: &str| format!("{at}.{k}");
    let string = |k: &str| -> Result<String, ClusterError> {
        match v.get(k) {
            Some(Value::String(s)) if !s.trim().is_empty() => Ok(s.clone()),
            Some(_) => Err(field_err(f(k), "not a name")),
            None => Err(field_err(f(k), "missing")),
        }
    };
    let model_name = string("model_name")?;
    let hardware = string("hardware")?;
    let mem = v.get("npu_mem");
    let (mem_size_gb, mem_util) = match mem {
        Some(m) => (
            opt_f64(m, "mem_size", &f("npu_mem.mem_size"))?,
            opt_f64(m, "mem_util", &f("npu_mem.mem_util"))?,
        ),
        None => (None, None),
    };
    if let Some(s) = mem_size_gb.filter(|s| *s <= 0.0) {
        return Err(field_err(
            f("npu_mem.mem_size"),
            format!("{s}: must be positive (GB)"),
        ));
    }
    if let Some(u) = mem_util.filter(|u| !(*u > 0.0 && *u <= 1.0)) {
        return Err(field_err(
            f("npu_mem.mem_util"),
            format!("{u}: must be in (0, 1]"),
        ));
    }
    let pp = opt_u64(v, "pp_size", &f("pp_size"))?.unwrap_or(1);
    if pp != 1 {
        return Err(field_err(f("pp_size"), format!("{pp}: {PP_NOT_MODELLED}")));
    }
    let tp_given = opt_u64(v, "tp_size", &f("tp_size"))?;
    let npus_given = opt_u64(v, "num_npus", &f("num_npus"))?;
    let (tp_size, num_npus) = match (tp_given, npus_given) {
        (Some(t), Some(n)) => (t, n),
        (Some(t), None) => (t, t * pp),
        (None, Some(n)) => (n / pp, n),
        (None, None) => (1, 1),
    };
    if tp_size == 0 {
        return Err(field_err(f("tp_size"), "0: must be at least 1"));
    }
    if num_npus != tp_size * pp {
        return Err(field_err(
            f("num_npus"),
            format!(
                "{num_npus}, but tp_size {tp_size} × pp_size {pp} needs {}",
                tp_size * pp
            ),
        ));
    }
    let ep_size = opt_u64(v, "ep_size", &f("ep_size"))?;
    if ep_size == Some(0) {
        return Err(field_err(f("ep_size"), "0: must be at least 1"));
    }
    let dp_group = match v.get("dp_group") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(s.clone()),
        Some(Value::Number(n)) => Some(n.to_string()),
        Some(_) => return Err(field_err(f("dp_group"), "not a group name")),
    };
    let pd_type = match v.get("pd_type") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => match s.to_ascii_lowercase().as_str() {
            "prefill" | "kv_producer" => Some(PdRole::Prefill),
            "decode" | "kv_consumer" => Some(PdRole::Decode),
            "" | "none" | "combined" => None,
            _ => {
                return Err(field_err(
                    f("pd_type"),
                    format!("`{s}`: expected \"prefill\", \"decode\" or null"),
                ))
            }
        },
        Some(_) => return Err(field_err(f("pd_type"), "not a role")),
    };
    let usize_of = |k: &str| -> Result<Option<usize>, ClusterError> {
        // The peer's 0 means unlimited: the command line's value (or vLLM's default) applies.
        Ok(opt_u64(v, k, &f(k))?.filter(|&n| n > 0).map(|n| n as usize))
    };
    Ok(InstanceSpec {
        model_name,
        hardware,
        mem_size_gb,
        mem_util,
        num_npus,
        tp_size,
        ep_size,
        dp_group,
        pd_type,
        max_num_seqs: usize_of("max_num_seqs")?,
        max_num_batched_tokens: usize_of("max_num_batched_tokens")?,
        long_prefill_token_threshold: usize_of("long_prefill_token_threshold")?,
        block_size: usize_of("block_size")?,
        enable_chunked_prefill: opt_bool(
            v,
            "enable_chunked_prefill",
            &f("enable_chunked_prefill"),
        )?,
        enable_prefix_caching: opt_bool(v, "enable_prefix_caching", &f("enable_prefix_caching"))?,
        field: at,
    })
}

/// Which fleet the instances form; refuses the combinations not modelled.
fn topology(instances: &[InstanceSpec]) -> Result<Topology, ClusterError> {
    let roles: Vec<Option<PdRole>> = instances.iter().map(|i| i.pd_type).collect();
    if roles.iter().any(Option::is_some) {
        if let Some(i) = instances.iter().find(|i| i.pd_type.is_none()) {
            return Err(field_err(
                i.field_path("pd_type"),
                "null in a prefill/decode cluster: every instance needs a role",
            ));
        }
        let idx = |r: PdRole| -> Vec<usize> {
            (0..instances.len())
                .filter(|&i| roles[i] == Some(r))
                .collect()
        };
        let (prefill, decode) = (idx(PdRole::Prefill), idx(PdRole::Decode));
        if prefill.is_empty() || decode.is_empty() {
            let missing = if prefill.is_empty() {
                "prefill"
            } else {
                "decode"
            };
            return Err(field_err(
                "nodes[].instances[].pd_type",
                format!("a prefill/decode cluster without a {missing} instance"),
            ));
        }
        let prefill_group = pd_side_group(instances, &prefill, "prefill")?;
        let decode_group = pd_side_group(instances, &decode, "decode")?;
        if let (Some(p), Some(d)) = (&prefill_group, &decode_group) {
            if p == d {
                return Err(field_err(
                    instances[decode[0]].field_path("dp_group"),
                    format!(
                        "`{d}` holds prefill and decode instances: a dp_group is one side of a \
                         prefill/decode cluster"
                    ),
                ));
            }
        }
        return Ok(Topology::Disaggregated {
            prefill,
            decode,
            prefill_group,
            decode_group,
        });
    }
    let grouped: Vec<&InstanceSpec> = instances.iter().filter(|i| i.dp_group.is_some()).collect();
    if grouped.is_empty() {
        if let Some(i) = instances
            .iter()
            .find(|i| i.ep_size.is_some_and(|e| e > i.tp_size))
        {
            return Err(field_err(
                i.field_path("ep_size"),
                format!(
                    "{} above tp_size {} outside a dp_group",
                    i.ep_size.unwrap_or(1),
                    i.tp_size
                ),
            ));
        }
        return Ok(if instances.len() == 1 {
            Topology::Single
        } else {
            Topology::Replicas
        });
    }
    if grouped.len() != instances.len() {
        let loose = instances
            .iter()
            .find(|i| i.dp_group.is_none())
            .unwrap_or(grouped[0]);
        return Err(field_err(
            loose.field_path("dp_group"),
            "null beside instances in a dp_group: give every instance a group (a group of \
             one is a plain engine)",
        ));
    }
    // Runs of the same group name, in file order; a name may not come back later.
    let mut runs: Vec<&[InstanceSpec]> = Vec::new();
    let mut start = 0;
    for k in 1..=instances.len() {
        if k == instances.len() || instances[k].dp_group != instances[start].dp_group {
            let run = &instances[start..k];
            if runs.iter().any(|r| r[0].dp_group == run[0].dp_group) {
                return Err(field_err(
                    run[0].field_path("dp_group"),
                    format!(
                        "`{}` again after another group: list each group's members together",
                        run[0].dp_group.as_deref().unwrap_or("")
                    ),
                ));
            }
            runs.push(run);
            start = k;
        }
    }
    let mut groups = Vec::with_capacity(runs.len());
    for run in &runs {
        groups.push((
            run[0].dp_group.clone().unwrap_or_default(),
            run.len(),
            group_ep(run)?,
        ));
    }
    if let [(group, _, ep)] = groups.as_slice() {
        return Ok(Topology::DataParallel {
            group: group.clone(),
            ep: *ep,
        });
    }
    Ok(Topology::DataParallelGroups { groups })
}

/// The `dp_group` of one side (`idx`, its instances) of a prefill/decode cluster: none, or
/// one group holding every instance of the side, without expert parallelism.
fn pd_side_group(
    instances: &[InstanceSpec],
    idx: &[usize],
    side: &str,
) -> Result<Option<String>, ClusterError> {
    let members: Vec<InstanceSpec> = idx.iter().map(|&i| instances[i].clone()).collect();
    let Some(group) = members[0].dp_group.clone() else {
        if let Some(i) = members.iter().find(|i| i.dp_group.is_some()) {
            return Err(field_err(
                i.field_path("dp_group"),
                format!(
                    "beside {side} instances without one: the {side} side is one dp_group or \
                     none"
                ),
            ));
        }
        return Ok(None);
    };
    if let Some(i) = members.iter().find(|i| i.dp_group.as_ref() != Some(&group)) {
        return Err(field_err(
            i.field_path("dp_group"),
            format!(
                "{} beside `{group}`: several dp_groups (or grouped and ungrouped instances) on \
                 the {side} side of a prefill/decode cluster are not modelled",
                i.dp_group
                    .as_deref()
                    .map_or("null".to_string(), |g| format!("`{g}`"))
            ),
        ));
    }
    if group_ep(&members)? > 1 {
        return Err(field_err(
            members[0].field_path("ep_size"),
            format!(
                "expert-parallel lockstep on the {side} side of a prefill/decode cluster is not \
                 modelled"
            ),
        ));
    }
    Ok(Some(group))
}

/// Checks that one `dp_group`'s members agree (model, GPU, TP and EP degree) and returns its
/// EP degree (1: none).
fn group_ep(members: &[InstanceSpec]) -> Result<u64, ClusterError> {
    let first = &members[0];
    for i in &members[1..] {
        for (name, a, b) in [
            ("tp_size", i.tp_size, first.tp_size),
            (
                "ep_size",
                i.ep_size.unwrap_or(0),
                first.ep_size.unwrap_or(0),
            ),
        ] {
            if a != b {
                return Err(field_err(
                    i.field_path(name),
                    format!("differs from {}'s: a dp_group's members agree", first.field),
                ));
            }
        }
        if i.model_name != first.model_name || i.hardware != first.hardware {
            return Err(field_err(
                i.field_path("model_name"),
                format!(
                    "{} on {} beside {} on {}: a dp_group is one model on one GPU type",
                    i.model_name, i.hardware, first.model_name, first.hardware
                ),
            ));
        }
        // vLLM's data-parallel ranks share one engine configuration.
        let runtime = |x: &InstanceSpec| {
            [
                ("npu_mem.mem_size", x.mem_size_gb.map(|v| v.to_string())),
                ("npu_mem.mem_util", x.mem_util.map(|v| v.to_string())),
                ("max_num_seqs", x.max_num_seqs.map(|v| v.to_string())),
                (
                    "max_num_batched_tokens",
                    x.max_num_batched_tokens.map(|v| v.to_string()),
                ),
                (
                    "long_prefill_token_threshold",
                    x.long_prefill_token_threshold.map(|v| v.to_string()),
                ),
                ("block_size", x.block_size.map(|v| v.to_string())),
                (
                    "enable_chunked_prefill",
                    x.enable_chunked_prefill.map(|v| v.to_string()),
                ),
                (
                    "enable_prefix_caching",
                    x.enable_prefix_caching.map(|v| v.to_string()),
                ),
            ]
        };
        for ((name, a), (_, b)) in runtime(i).into_iter().zip(runtime(first)) {
            if a != b {
                return Err(field_err(
                    i.field_path(name),
                    format!(
                        "{} beside {}'s {}: a dp_group's ranks share one engine configuration",
                        a.as_deref().unwrap_or("unset"),
                        first.field,
                        b.as_deref().unwrap_or("unset")
                    ),
                ));
            }
        }
    }
    let size = members.len() as u64;
    let ep = first.ep_size.unwrap_or(1);
    if ep > 1 && !ep.is_multiple_of(size) {
        return Err(field_err(
            first.field_path("ep_size"),
            format!("{ep}: the group's EP degree must be a multiple of its {size} members"),
        ));
    }
    Ok(ep)
}

fn opt_u64(v: &Value, k: &str, field: &str) -> Result<Option<u64>, ClusterError> {
    match v.get(k) {
        None | Some(Value::Null) => Ok(None),
        Some(x) => x
            .as_u64()
            .map(Some)
            .ok_or_else(|| field_err(field, format!("{x}: not a whole number"))),
    }
}

fn opt_f64(v: &Value, k: &str, field: &str) -> Result<Option<f64>, ClusterError> {
    match v.get(k) {
        None | Some(Value::Null) => Ok(None),
        Some(x) => x
            .as_f64()
            .map(Some)
            .ok_or_else(|| field_err(field, format!("{x}: not a number"))),
    }
}

fn opt_bool(v: &Value, k: &str, field: &str) -> Result<Option<bool>, ClusterError> {
    match v.get(k) {
        None | Some(Value::Null) => Ok(None),
        Some(x) => x
            .as_bool()
            .map(Some)
            .ok_or_else(|| field_err(field, format!("{x}: not true or false"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn inst(extra: Value) -> Value {
        let mut v = json!({
            "model_name": "meta-llama/Llama-3.1-8B",
            "hardware": "RTXPRO6000",
            "npu_mem": {"mem_size": 96, "mem_bw": 1597, "mem_latency": 0},
            "num_npus": 1, "tp_size": 1, "pd_type": null
        });
        for (k, x) in extra.as_object().expect("object") {
            v[k] = x.clone();
        }
        v
    }

    fn cluster(instances: Vec<Value>) -> Value {
        json!({"num_nodes": 1, "link_bw": 16, "link_latency": 20000,
               "nodes": [{"num_instances": instances.len(), "instances": instances}]})
    }

    fn err(v: Value) -> String {
        ClusterSpec::from_json(&v).expect_err("refused").to_string()
    }

    #[test]
    fn reads_the_shared_case_s_one_instance() {
        let c = ClusterSpec::from_json(&cluster(vec![inst(json!({}))])).expect("valid");
        assert_eq!(c.topology, Topology::Single);
        // `link_bw` 16 is ASTRA-sim's GB/s (2³⁰ B): 17.18 GB/s.
        assert_eq!(c.link.bandwidth_gbs, 16.0 * 1.073_741_824);
        assert_eq!(c.link.latency_ns, 20000.0);
        assert_eq!(c.instances[0].mem_size_gb, Some(96.0));
        assert_eq!(c.instances[0].field, "nodes[0].instances[0]");
    }

    /// Per-dimension links: the instances' link is the topology's last dimension (the peer's
    /// dual-node example: `[128, 16]` GiB/s, `[500, 20000]` ns over `[tp 2, 2 ranks]`).
    #[test]
    fn a_per_dimension_link_list_gives_the_link_between_instances() {
        let two = |extra: Value| {
            let mut c = cluster(vec![
                inst(json!({"dp_group": "A", "tp_size": 2, "num_npus": 2})),
                inst(json!({"dp_group": "A", "tp_size": 2, "num_npus": 2})),
            ]);
            for (k, x) in extra.as_object().expect("object") {
                c[k] = x.clone();
            }
            c
        };
        let c = ClusterSpec::from_json(&two(json!({"link_bw": [128, 16],
                                                   "link_latency": [500, 20000]})))
        .expect("valid");
        assert_eq!(c.link.bandwidth_gbs, cluster_link_gbs(16.0));
        assert_eq!(c.link.latency_ns, 20000.0);
        let e = err(two(json!({"link_bw": [128, 16, 16]})));
        assert!(e.contains("link_bw") && e.contains("lists 3"), "{e}");
        // One TP2 instance has one dimension.
        let mut one = cluster(vec![inst(json!({"tp_size": 2, "num_npus": 2}))]);
        one["link_bw"] = json!([64]);
        assert_eq!(
            ClusterSpec::from_json(&one)
                .expect("valid")
                .link
                .bandwidth_gbs,
            cluster_link_gbs(64.0)
        );
    }

    /// vLLM's data-parallel ranks share one engine configuration: members of a `dp_group`
    /// that differ in a runtime field are refused, naming it.
    #[test]
    fn a_dp_group_s_ranks_agree_on_their_runtime_fields() {
        let e = err(cluster(vec![
            inst(json!({"dp_group": "A", "block_size": 32})),
            inst(json!({"dp_group": "A"})),
        ]));
        assert!(
            e.contains("nodes[0].instances[1].block_size") && e.contains("unset beside"),
            "{e}"
        );
        let mut two = cluster(vec![
            inst(json!({"dp_group": "A"})),
            inst(json!({"dp_group": "A"})),
        ]);
        two["nodes"][0]["instances"][1]["npu_mem"]["mem_util"] = json!(0.5);
        let e = err(two);
        assert!(
            e.contains("npu_mem.mem_util") && e.contains("0.5 beside"),
            "{e}"
        );
        // Independent instances may differ.
        ClusterSpec::from_json(&cluster(vec![
            inst(json!({"block_size": 32})),
            inst(json!({})),
        ]))
        .expect("replicas may differ");
    }

    #[test]
    fn roles_groups_and_replicas() {
        let pd = cluster(vec![
            inst(json!({"pd_type": "prefill", "max_num_seqs": 32})),
            inst(json!({"pd_type": "decode", "max_num_batched_tokens": 0})),
        ]);
        let c = ClusterSpec::from_json(&pd).expect("valid");
        assert_eq!(
            c.topology,
            Topology::Disaggregated {
                prefill: vec![0],
                decode: vec![1],
                prefill_group: None,
                decode_group: None,
            }
        );
        assert_eq!(c.instances[0].max_num_seqs, Some(32));
        assert_eq!(c.instances[1].max_num_batched_tokens, None);
        let dp = cluster(vec![
            inst(json!({"dp_group": "A", "ep_size": 2})),
            inst(json!({"dp_group": "A", "ep_size": 2})),
        ]);
        assert_eq!(
            ClusterSpec::from_json(&dp).expect("valid").topology,
            Topology::DataParallel {
                group: "A".into(),
                ep: 2
            }
        );
        let reps = cluster(vec![inst(json!({})), inst(json!({"hardware": "H100"}))]);
        assert_eq!(
            ClusterSpec::from_json(&reps).expect("valid").topology,
            Topology::Replicas
        );
    }

    #[test]
    fn bad_clusters_name_the_field() {
        let e = err(cluster(vec![
            inst(json!({"pd_type": "prefill"})),
            inst(json!({"pd_type": "prefill"})),
        ]));
        assert!(
            e.contains("pd_type") && e.contains("without a decode"),
            "{e}"
        );
        let e = err(cluster(vec![
            inst(json!({"pd_type": "decode"})),
            inst(json!({})),
        ]));
        assert!(e.contains("nodes[0].instances[1].pd_type"), "{e}");
        let e = err(cluster(vec![inst(json!({"tp_size": 2, "num_npus": 1}))]));
        assert!(e.contains("nodes[0].instances[0].num_npus"), "{e}");
        let e = err(cluster(vec![inst(json!({"pd_type": "both"}))]));
        assert!(e.contains("pd_type") && e.contains("both"), "{e}");
        let e = err(cluster(vec![inst(json!({"model_name": null}))]));
        assert!(e.contains("model_name") && e.contains("not a name"), "{e}");
        let e = err(json!({"num_nodes": 2, "nodes": [{"instances": [inst(json!({}))]}]}));
        assert!(e.contains("num_nodes"), "{e}");
        let e = err(cluster(vec![
            inst(json!({"dp_group": "A", "tp_size": 1})),
            inst(json!({"dp_group": "A", "tp_size": 2, "num_npus": 2})),
        ]));
        assert!(e.contains("instances[1].tp_size"), "{e}");
        let e = err(cluster(vec![inst(json!({"ep_size": 2}))]));
        assert!(e.contains("ep_size"), "{e}");
        let e = err(json!({"link_bw": 0, "nodes": [{"instances": [inst(json!({}))]}]}));
        assert!(e.contains("link_bw"), "{e}");
    }

    #[test]
    fn a_prefill_or_decode_side_may_be_one_dp_group() {
        let pd = cluster(vec![
            inst(json!({"pd_type": "prefill", "dp_group": "P"})),
            inst(json!({"pd_type": "prefill", "dp_group": "P"})),
            inst(json!({"pd_type": "decode"})),
            inst(json!({"pd_type": "decode", "dp_group": null})),
        ]);
        assert_eq!(
            ClusterSpec::from_json(&pd).expect("valid").topology,
            Topology::Disaggregated {
                prefill: vec![0, 1],
                decode: vec![2, 3],
                prefill_group: Some("P".into()),
                decode_group: None,
            }
        );
        // Both sides grouped; members need not be listed together.
        let pd = cluster(vec![
            inst(json!({"pd_type": "decode", "dp_group": "D"})),
            inst(json!({"pd_type": "prefill", "dp_group": "P"})),
            inst(json!({"pd_type": "decode", "dp_group": "D"})),
        ]);
        assert_eq!(
            ClusterSpec::from_json(&pd).expect("valid").topology,
            Topology::Disaggregated {
                prefill: vec![1],
                decode: vec![0, 2],
                prefill_group: Some("P".into()),
                decode_group: Some("D".into()),
            }
        );
    }

    #[test]
    fn dp_groups_a_prefill_decode_cluster_cannot_hold_are_refused() {
        // Grouped beside ungrouped on one side.
        let e = err(cluster(vec![
            inst(json!({"pd_type": "prefill"})),
            inst(json!({"pd_type": "decode", "dp_group": "D"})),
            inst(json!({"pd_type": "decode"})),
        ]));
        assert!(
            e.contains("nodes[0].instances[2].dp_group") && e.contains("decode side"),
            "{e}"
        );
        // Two groups on one side.
        let e = err(cluster(vec![
            inst(json!({"pd_type": "prefill", "dp_group": "A"})),
            inst(json!({"pd_type": "prefill", "dp_group": "B"})),
            inst(json!({"pd_type": "decode"})),
        ]));
        assert!(
            e.contains("nodes[0].instances[1].dp_group") && e.contains("several dp_groups"),
            "{e}"
        );
        // One group on both sides.
        let e = err(cluster(vec![
            inst(json!({"pd_type": "prefill", "dp_group": "A"})),
            inst(json!({"pd_type": "decode", "dp_group": "A"})),
        ]));
        assert!(
            e.contains("nodes[0].instances[1].dp_group") && e.contains("one side"),
            "{e}"
        );
        // Expert-parallel lockstep on a side.
        let moe = |role: &str| {
            inst(json!({"pd_type": role, "dp_group": role, "ep_size": 2,
                        "model_name": "Qwen/Qwen3-30B-A3B"}))
        };
        let e = err(cluster(vec![moe("prefill"), moe("prefill"), moe("decode")]));
        assert!(
            e.contains("nodes[0].instances[0].ep_size") && e.contains("lockstep"),
            "{e}"
        );
    }

    #[test]
    fn pipeline_parallelism_is_refused_with_the_reason() {
        let e = err(cluster(vec![inst(json!({"pp_size": 2, "num_npus": 2}))]));
        assert!(
            e.contains("nodes[0].instances[0].pp_size")
                && e.contains("not modelled")
                && e.contains("step_with_batch_queue"),
            "{e}"
        );
    }

    #[test]
    fn link_transfer_time() {
        let l = Link {
            bandwidth_gbs: 16.0,
            latency_ns: 20_000.0,
        };
        // 1.6 MB at 16 GB/s = 100 µs, plus 20 µs.
        assert_eq!(l.transfer_ns(1_600_000), 120_000);
    }
}
