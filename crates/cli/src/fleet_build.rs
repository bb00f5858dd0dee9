//! The fleet a command runs, assembled once for `simulate`, `validate` and `serve`: the flags
//! (or `--cluster FILE`) give a [`FleetPlan`] and one [`Prepared`] engine per instance; [`Fleet::build`]
//! makes the engines and puts them in the fleet type of `llm-emu-fleet` that runs them (plain,
//! data-parallel, expert-parallel lockstep, replicas, prefill/decode). Every rule (placement,
//! lockstep pricing, KV transfer) lives in `llm-emu-fleet`; this module only wires.

use crate::engine_args::{EngineFlags, FleetFlags, FleetPlan, Prepared};
use anyhow::{bail, Context, Result};
use llm_emu_core::latency::LatencyModel;
use llm_emu_core::sampler::{HashSampler, TokenSampler};
use llm_emu_core::{Engine, EngineCore, EngineSink, NewRequest, RequestError, Wake};
use llm_emu_fleet::{
    router_by_name, AllToAll, DataParallel, Disaggregated, EpGroup, ExpertLayout, Link, PdRole,
    Replicas, Topology,
};
use llm_emu_serve::fleet_front::{FleetKind, Placement, ServedCore};
use llm_emu_sim::run_record::RunRecord;

/// Gives engine `i` of a fleet its token sampler.
pub(crate) type SamplerFor<'a> = dyn FnMut(usize) -> Result<Box<dyn TokenSampler>> + 'a;

/// The fleet the flags (or `--cluster FILE`) describe, and each engine's resolution: one
/// per cluster instance, else one for every engine.
pub(crate) fn prepare_fleet(
    engine: &EngineFlags,
    fleet: &FleetFlags,
    record: Option<&RunRecord>,
) -> Result<(FleetPlan, Vec<Prepared>)> {
    let gpus = record
        .and_then(|r| r.facts.device_count.as_ref())
        .map(|d| (d.value, d.source.as_str()));
    if fleet.cluster.is_some() {
        let plan = fleet.plan(1, gpus)?;
        let FleetPlan::Cluster { spec, .. } = &plan else {
            bail!("--cluster: not a cluster plan");
        };
        // Each instance's experts are split over its group's EP degree; without EP, each
        // expert's width over its group's DP × TP (`(ep, group size)`).
        let n = spec.instances.len();
        let groups: Vec<(u64, usize)> = match &spec.topology {
            Topology::DataParallel { ep, .. } => vec![(*ep, n); n],
            Topology::DataParallelGroups { groups } => groups
                .iter()
                .flat_map(|(_, size, ep)| std::iter::repeat_n((*ep, *size), *size))
                .collect(),
            _ => vec![(1, 1); n],
        };
        // The run's notes are the same for every instance: each is said once.
        let mut said = std::collections::HashSet::new();
        let mut say = |line: String| {
            if said.insert(line.clone()) {
                eprintln!("{line}");
            }
        };
        let prepared = spec
            .instances
            .iter()
            .zip(groups)
            .map(|(i, (ep, size))| {
                let mut p = Prepared::for_instance(engine, record, i, (ep, size), &mut say)?;
                if ep <= 1 {
                    p.with_moe_data_parallel(size);
                }
                Ok(p)
            })
            .collect::<Result<Vec<_>>>()?;
        return Ok((plan, prepared));
    }
    let mut args = Prepared::args_of(engine, record)?;
    let tp = args.tensor_parallel_size.unwrap_or(1);
    // A recorded `enable_expert_parallel` on a dense model: vLLM has no experts to spread and
    // runs as without it.
    let dense_ep = fleet.expert_parallel_recorded
        && fleet.enable_expert_parallel
        && args.model_shape()?.moe.is_none();
    let plan = if dense_ep {
        eprintln!(
            "note: the run recorded enable_expert_parallel on a dense model: it has no \
             experts to spread, and vLLM runs it as without"
        );
        let mut without = fleet.clone();
        without.enable_expert_parallel = false;
        without.plan(tp, gpus)?
    } else {
        if fleet.expert_parallel_recorded && fleet.data_parallel_size == 1 {
            eprintln!(
                "note: the run recorded enable_expert_parallel: replayed with the MoE model's \
                 experts spread over the engine's {tp} GPU(s) (vLLM's EP size is DP × TP; at \
                 one GPU it changes nothing)"
            );
        }
        fleet.plan(tp, gpus)?
    };
    // A MoE model's experts are spread over its data-parallel group's GPUs (a dense model's
    // weights are not: the shards then change nothing).
    if let FleetPlan::DataParallel { size, .. }
    | FleetPlan::ExpertParallel { size, .. }
    | FleetPlan::ReplicatedDp { size, .. } = &plan
    {
        args.expert_shards = Some(*size as u64 * tp);
    }
    let mut prepared = Prepared::from_args(args, record.is_some())?;
    match &plan {
        FleetPlan::ExpertParallel { ep, .. } | FleetPlan::ReplicatedDp { ep, .. } if *ep > 1 => {
            prepared
                .with_expert_parallel(*ep)
                .context("--enable-expert-parallel")?;
        }
        FleetPlan::DataParallel { size, .. } | FleetPlan::ReplicatedDp { size, .. } => {
            prepared.with_moe_data_parallel(*size)
        }
        _ => {}
    }
    Ok((plan, vec![prepared]))
}

/// The engines `simulate` runs: one, data-parallel ranks, or replicas behind a router.
pub(crate) enum Fleet {
    One(Box<Engine>),
    /// Boxed, as every fleet: the variants' sizes differ by hundreds of bytes.
    Dp(Box<DataParallel>),
    Replicas(Box<Replicas>),
    /// Boxed: the fleet with the most state by far.
    Pd(Box<Disaggregated>),
}

impl Fleet {
    /// The engines `plan` describes from `prepared` (one per cluster instance, else one used
    /// for every engine), the first latency model's notices said once; also its description.
    pub(crate) fn build(
        prepared: &[Prepared],
        plan: &FleetPlan,
        record: Option<&RunRecord>,
    ) -> Result<(Fleet, String)> {
        Fleet::build_with(prepared, plan, record, &mut |_| {
            Ok(Box::new(HashSampler::default()))
        })
    }

    /// [`Fleet::build`] with each engine's token sampler from `samplers` (engine index).
    pub(crate) fn build_with(
        prepared: &[Prepared],
        plan: &FleetPlan,
        record: Option<&RunRecord>,
        samplers: &mut SamplerFor<'_>,
    ) -> Result<(Fleet, String)> {
        let n = match plan {
            FleetPlan::Single => 1,
            FleetPlan::DataParallel { size, .. } | FleetPlan::ExpertParallel { size, .. } => *size,
            FleetPlan::Replicas { count, .. } => *count,
            FleetPlan::ReplicatedDp { count, size, .. } => count * size,
            FleetPlan::Cluster { spec, .. } => spec.instances.len(),
        };
        let mut models = Vec::with_capacity(n);
        let mut desc = String::new();
        // Instances alike in what a notice says (a cluster of one model) say it once.
        let mut said = std::collections::HashSet::new();
        for i in 0..n {
            let k = i.min(prepared.len() - 1);
            let p = &prepared[k];
            // Engines past the last resolution share it: they copy the model built for the
            // first of them (the same data, loaded once) where the model can be copied; its
            // notices were said with that first one.
            let copied = if k < i {
                models
                    .last()
                    .and_then(|(_, m): &(_, Box<dyn LatencyModel>)| m.try_clone())
            } else {
                None
            };
            let latency = match copied {
                Some(m) => m,
                None => {
                    let (latency, notices) = p.resolved.build_latency(&p.shape)?;
                    for n in notices {
                        if said.insert(n.to_string()) {
                            eprintln!("{n}");
                        }
                    }
                    latency
                }
            };
            if i == 0 {
                desc = latency.describe();
            }
            models.push((p, latency));
        }
        // A replayed run that records no link is priced over the default one, and says so
        // (once).
        let link_said = std::cell::Cell::new(false);
        let recorded_link = || match record.and_then(|r| r.facts.tp_link.as_ref()) {
            Some(l) => Link {
                bandwidth_gbs: l.bandwidth_gbs,
                latency_ns: l.latency_ns,
            },
            None => {
                let l = Link::default();
                // (A cluster config without a link says so as it is read.)
                let no_cluster_config = record.is_some_and(|r| r.cluster_config_path.is_none());
                if no_cluster_config && !link_said.replace(true) {
                    eprintln!(
                        "note: the run records no link between its GPUs (no cluster config \
                         beside it): the expert all-to-all is priced over the \
                         default link, {:.2} GB/s and {} µs per transfer (the peer's example \
                         clusters')",
                        l.bandwidth_gbs,
                        l.latency_ns / 1e3
                    );
                }
                l
            }
        };
        if let FleetPlan::ReplicatedDp {
            size,
            api_servers,
            router,
            ep,
            ..
        } = plan
        {
            let moe = prepared.iter().any(Prepared::is_moe);
            let lockstep = runs_lockstep(*ep, *size, moe).then(|| (*ep, recorded_link()));
            let mut groups = Vec::new();
            let mut models = models.into_iter();
            let mut first = 0;
            while first < n {
                let group: Vec<_> = models.by_ref().take(*size).collect();
                groups.push(dp_group(group, lockstep, *api_servers, first, samplers)?);
                first += size;
            }
            return Ok((
                Fleet::Replicas(Box::new(Replicas::of_groups(
                    groups,
                    router_by_name(router)?,
                ))),
                desc,
            ));
        }
        if let FleetPlan::Cluster { spec, router } = plan {
            if let Topology::DataParallelGroups { groups } = &spec.topology {
                let mut dps = Vec::with_capacity(groups.len());
                let mut models = models.into_iter();
                let mut first = 0;
                for (_, size, ep) in groups {
                    let group: Vec<_> = models.by_ref().take(*size).collect();
                    let moe = group.iter().any(|(p, _)| p.is_moe());
                    let lockstep = runs_lockstep(*ep, *size, moe).then_some((*ep, spec.link));
                    dps.push(dp_group(group, lockstep, *size, first, samplers)?);
                    first += size;
                }
                return Ok((
                    Fleet::Replicas(Box::new(Replicas::of_groups(dps, router_by_name(router)?))),
                    desc,
                ));
            }
        }
        // vLLM's ranks report their counts to the DP coordinator only for a MoE model
        // (docs/fleet.md, "Data parallelism"), whose ranks also step in lockstep.
        let moe = prepared.iter().any(Prepared::is_moe);
        let lockstep = match plan {
            FleetPlan::ExpertParallel { ep, .. } => Some((*ep, recorded_link())),
            FleetPlan::DataParallel { size, .. } if runs_lockstep(1, *size, moe) => {
                Some((1, recorded_link()))
            }
            FleetPlan::Cluster { spec, .. } => match &spec.topology {
                Topology::DataParallel { ep, .. } if runs_lockstep(*ep, n, moe) => {
                    Some((*ep, spec.link))
                }
                _ => None,
            },
            _ => None,
        };
        if lockstep.is_some() {
            let api_servers = match plan {
                FleetPlan::ExpertParallel { api_servers, .. }
                | FleetPlan::DataParallel { api_servers, .. } => *api_servers,
                _ => n,
            };
            let dp = dp_group(models, lockstep, api_servers, 0, samplers)?;
            let desc = dp.rank_engine(0).latency_model().describe();
            return Ok((Fleet::Dp(Box::new(dp)), desc));
        }
        let mut engines = Vec::with_capacity(n);
        for (i, (p, latency)) in models.into_iter().enumerate() {
            engines.push(Engine::new(
                p.resolved.config.clone(),
                latency,
                samplers(i)?,
            )?);
        }
        let fleet = match plan {
            FleetPlan::ReplicatedDp { .. } => unreachable!("built above"),
            FleetPlan::Single => Fleet::One(Box::new(engines.pop().context("one engine")?)),
            FleetPlan::DataParallel { api_servers, .. }
            | FleetPlan::ExpertParallel { api_servers, .. } => Fleet::Dp(Box::new(
                DataParallel::new(engines, *api_servers).with_count_reports(moe),
            )),
            FleetPlan::Replicas { router, .. } => {
                Fleet::Replicas(Box::new(Replicas::new(engines, router_by_name(router)?)))
            }
            FleetPlan::Cluster { spec, router } => match &spec.topology {
                Topology::Single => Fleet::One(Box::new(engines.pop().context("one engine")?)),
                Topology::Replicas => {
                    Fleet::Replicas(Box::new(Replicas::new(engines, router_by_name(router)?)))
                }
                Topology::DataParallelGroups { .. } => unreachable!("built above"),
                Topology::DataParallel { .. } => {
                    let size = engines.len();
                    Fleet::Dp(Box::new(
                        DataParallel::new(engines, size).with_count_reports(moe),
                    ))
                }
                Topology::Disaggregated {
                    prefill,
                    decode,
                    prefill_group,
                    decode_group,
                } => {
                    let roles = spec
                        .instances
                        .iter()
                        .map(|i| i.pd_type.context("a role per instance"))
                        .collect::<Result<Vec<_>>>()?;
                    // KV bytes of one block on one TP rank: each rank sends its share over
                    // its own link, in parallel.
                    let block_bytes = prepared
                        .iter()
                        .map(|p| {
                            let tp = p.args.tensor_parallel_size.unwrap_or(1);
                            p.shape.bytes_per_block(p.config().block_size as u64, tp)
                        })
                        .collect();
                    let mut pd = Disaggregated::new(
                        engines,
                        roles,
                        block_bytes,
                        spec.link,
                        router_by_name("round-robin")?,
                        router_by_name(router)?,
                    )?;
                    // A side that is one dp_group is a vLLM DP deployment with one API server
                    // per rank (vLLM 0.19's default `--api-server-count`).
                    for (role, group, side) in [
                        (PdRole::Prefill, prefill_group, prefill),
                        (PdRole::Decode, decode_group, decode),
                    ] {
                        if group.is_some() {
                            pd = pd.with_data_parallel_side(role, side.len());
                        }
                    }
                    Fleet::Pd(Box::new(pd))
                }
            },
        };
        Ok((fleet, desc))
    }

    pub(crate) fn engines(&self) -> Vec<&Engine> {
        match self {
            Fleet::One(e) => vec![e.as_ref()],
            Fleet::Dp(d) => d.engines().collect(),
            Fleet::Replicas(r) => r.engines().collect(),
            Fleet::Pd(p) => p.engines().collect(),
        }
    }

    fn core(&mut self) -> &mut dyn EngineCore {
        match self {
            Fleet::One(e) => e.as_mut(),
            Fleet::Dp(d) => d.as_mut(),
            Fleet::Replicas(r) => r.as_mut(),
            Fleet::Pd(p) => p.as_mut(),
        }
    }

    fn core_ref(&self) -> &dyn EngineCore {
        match self {
            Fleet::One(e) => e.as_ref(),
            Fleet::Dp(d) => d.as_ref(),
            Fleet::Replicas(r) => r.as_ref(),
            Fleet::Pd(p) => p.as_ref(),
        }
    }
}

impl EngineCore for Fleet {
    fn add(&mut self, req: NewRequest, tag: u64) -> Result<(), RequestError> {
        self.core().add(req, tag)
    }
    fn abort(&mut self, request_id: &str) {
        self.core().abort(request_id)
    }
    fn finish_stopped(&mut self, request_id: &str) {
        self.core().finish_stopped(request_id)
    }
    fn run(&mut self, now: llm_emu_core::Nanos, sink: &mut dyn EngineSink) -> Wake {
        self.core().run(now, sink)
    }
    fn run_until(
        &mut self,
        now: llm_emu_core::Nanos,
        horizon: llm_emu_core::Nanos,
        sink: &mut dyn EngineSink,
    ) -> Wake {
        self.core().run_until(now, horizon, sink)
    }
    fn has_work(&self) -> bool {
        self.core_ref().has_work()
    }
    fn num_unfinished(&self) -> usize {
        self.core_ref().num_unfinished()
    }
}

/// Whether a data-parallel group of `size` ranks steps in lockstep: with expert parallelism
/// (`ep` > 1), and for any mixture-of-experts model with DP > 1 — vLLM 0.19 runs every MoE
/// model's DP ranks as `DPEngineCoreProc` (`core.py`, lines 1071–1081), EP or not.
fn runs_lockstep(ep: u64, size: usize, moe: bool) -> bool {
    ep > 1 || (moe && size > 1)
}

/// One data-parallel group of `models` (one per rank) whose engines are numbered from
/// `first`; with `lockstep` (EP size, link) its ranks step in MoE lockstep: experts split
/// over the EP ranks when the EP size is above 1, else each expert's width over DP × TP.
fn dp_group(
    models: Vec<(&Prepared, Box<dyn LatencyModel>)>,
    lockstep: Option<(u64, Link)>,
    api_servers: usize,
    first: usize,
    samplers: &mut SamplerFor<'_>,
) -> Result<DataParallel> {
    let Some((ep, link)) = lockstep else {
        let moe = models.iter().any(|(p, _)| p.is_moe());
        let mut engines = Vec::with_capacity(models.len());
        for (i, (p, latency)) in models.into_iter().enumerate() {
            engines.push(Engine::new(
                p.resolved.config.clone(),
                latency,
                samplers(first + i)?,
            )?);
        }
        return Ok(DataParallel::new_at(engines, api_servers, first).with_count_reports(moe));
    };
    let p = models.first().context("a group has ranks")?.0;
    let moe = p
        .shape
        .moe
        .as_ref()
        .context("MoE lockstep needs a MoE model")?;
    // The same dispatch and combine over the DP group with or without EP (docs/fleet.md).
    let a2a = AllToAll {
        hidden_size: p.shape.hidden_size,
        dtype_bytes: p.shape.dtype_bytes(),
        num_experts: moe.num_experts,
        moe_layers: p.shape.num_moe_layers(),
        ranks: models.len() as u64,
        link,
    };
    let layout = if ep > 1 {
        ExpertLayout::Split
    } else {
        ExpertLayout::TpSharded
    };
    let cfgs: Vec<_> = models.iter().map(|(p, _)| p.config().clone()).collect();
    let (group, lats) =
        EpGroup::with_layout(models.into_iter().map(|(_, l)| l).collect(), a2a, layout);
    let mut engines = Vec::with_capacity(cfgs.len());
    for (i, (cfg, lat)) in cfgs.into_iter().zip(lats).enumerate() {
        engines.push(Engine::new(cfg, Box::new(lat), samplers(first + i)?)?);
    }
    Ok(DataParallel::expert_parallel_at(
        engines,
        api_servers,
        group,
        first,
    ))
}

impl Fleet {
    /// How the served front treats the fleet: which header it honours, whether it reads a
    /// session for the router.
    pub(crate) fn served_kind(plan: &FleetPlan) -> FleetKind {
        match plan {
            FleetPlan::Single => FleetKind::Single,
            FleetPlan::DataParallel { .. } | FleetPlan::ExpertParallel { .. } => {
                FleetKind::DataParallel
            }
            FleetPlan::Replicas { router, .. } | FleetPlan::ReplicatedDp { router, .. } => {
                FleetKind::Replicas {
                    router: router.clone(),
                }
            }
            FleetPlan::Cluster { spec, router } => match &spec.topology {
                Topology::Single => FleetKind::Single,
                Topology::Replicas => FleetKind::Replicas {
                    router: router.clone(),
                },
                Topology::DataParallel { .. } => FleetKind::DataParallel,
                Topology::DataParallelGroups { .. } => FleetKind::Replicas {
                    router: router.clone(),
                },
                Topology::Disaggregated { .. } => FleetKind::PrefillDecode {
                    router: router.clone(),
                },
            },
        }
    }

    fn served(&mut self) -> &mut dyn ServedCore {
        match self {
            Fleet::One(e) => e.as_mut(),
            Fleet::Dp(d) => d.as_mut(),
            Fleet::Replicas(r) => r.as_mut(),
            Fleet::Pd(p) => p.as_mut(),
        }
    }
}

impl ServedCore for Fleet {
    fn num_engines(&self) -> usize {
        self.engines().len()
    }

    fn add_placed(
        &mut self,
        req: NewRequest,
        tag: u64,
        to: &Placement,
    ) -> Result<usize, RequestError> {
        self.served().add_placed(req, tag, to)
    }

    fn each_engine(&mut self, f: &mut dyn FnMut(usize, &mut Engine)) {
        self.served().each_engine(f)
    }
}
