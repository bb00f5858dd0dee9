//! `llm-emu report` end to end: reports drawn from real small runs (the shared 300-request
//! case simulated and validated, a fleet, a tiny sweep, a `vllm bench serve` result, a tiny
//! plan), loaded in
//! headless Chromium, and every chart checked to exist with data and axes in the rendered DOM;
//! bounded output for long inputs; clear errors for inputs that are not report inputs.
//!
//! The browser checks skip with a notice where Chromium is absent (`.ci/run` installs it).

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};
use tempfile::TempDir;

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_llm-emu"))
}

/// A fresh directory, removed when the returned handle drops (pass or fail).
fn tmp(name: &str) -> TempDir {
    tempfile::Builder::new()
        .prefix(&format!("llm-emu-report-{name}-"))
        .tempdir()
        .unwrap()
}

fn ok(out: Output, what: &str) -> String {
    assert!(
        out.status.success(),
        "{what} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// The shared real-run case, or `None` (with a notice) where `../shared` is absent.
fn shared_case() -> Option<PathBuf> {
    let case = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../../shared/data/real-runs/rtxpro6000-llama-3.1-8b");
    if case.join("workload.jsonl").is_file() {
        Some(case)
    } else {
        println!("skipped: {} is absent", case.display());
        None
    }
}

/// The browser the report's `--png` uses, found the same way, or `None` with a notice.
fn chromium() -> Option<PathBuf> {
    let found = std::env::var_os("LLM_EMU_CHROMIUM")
        .map(PathBuf::from)
        .or_else(|| {
            let path = std::env::var_os("PATH")?;
            ["chromium", "chromium-browser", "google-chrome"]
                .iter()
                .flat_map(|n| std::env::split_paths(&path).map(move |d| d.join(n)))
                .find(|p| p.is_file())
        });
    if found.is_none() {
        println!("skipped: no Chromium (apt-get install chromium) to render the report in");
    }
    found
}

/// The page after the browser ran it (`--dump-dom`), waiting at most a minute.
fn dump_dom(browser: &Path, html: &Path) -> String {
    let html = std::fs::canonicalize(html).unwrap();
    let mut child = Command::new(browser)
        .args(["--headless", "--no-sandbox", "--disable-gpu", "--dump-dom"])
        .arg(format!("file://{}", html.display()))
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Read while it runs: a page larger than the pipe's buffer would otherwise block it.
    let mut stdout = child.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut dom = String::new();
        std::io::Read::read_to_string(&mut stdout, &mut dom).map(|_| dom)
    });
    let deadline = Instant::now() + Duration::from_secs(120);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("chromium --dump-dom did not finish in 120 s");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    reader.join().unwrap().unwrap()
}

/// The attributes of every `<figure class="chart" ...>` tag in `dom`.
fn charts(dom: &str) -> Vec<BTreeMap<String, String>> {
    dom.match_indices("<figure class=\"chart\"")
        .map(|(i, _)| {
            let tag = &dom[i..i + dom[i..].find('>').unwrap()];
            let mut attrs = BTreeMap::new();
            for part in tag.split("\" ") {
                if let Some((k, v)) = part.split_once("=\"") {
                    let k = k.rsplit(' ').next().unwrap();
                    attrs.insert(k.to_string(), v.trim_end_matches('"').to_string());
                }
            }
            attrs
        })
        .collect()
}

fn n(attrs: &BTreeMap<String, String>, k: &str) -> usize {
    attrs
        .get(k)
        .unwrap_or_else(|| panic!("no {k} in {attrs:?}: the page's script did not run"))
        .parse()
        .unwrap()
}

/// Renders `html` in the browser and checks that it has at least `kinds` charts of each kind
/// and that every chart rendered all its points, at least one series, and axes with ticks.
/// Returns the charts' attributes.
fn check_rendered(
    browser: &Path,
    html: &Path,
    kinds: &[(&str, usize)],
) -> Vec<BTreeMap<String, String>> {
    let dom = dump_dom(browser, html);
    let figs = charts(&dom);
    assert!(
        dom.contains(&format!("data-dom-charts=\"{}\"", figs.len())),
        "{}: the page's script did not count every chart",
        html.display()
    );
    for (kind, at_least) in kinds {
        let have = figs.iter().filter(|f| f["data-kind"] == *kind).count();
        assert!(
            have >= *at_least,
            "{}: {have} {kind} chart(s), want {at_least}",
            html.display()
        );
    }
    for f in &figs {
        let id = &f["id"];
        let drawn = n(f, "data-points");
        assert!(
            drawn > 0,
            "{}: chart {id} has no data: {f:?}",
            html.display()
        );
        assert_eq!(
            n(f, "data-dom-points"),
            drawn,
            "{}: chart {id}: points drawn ≠ rendered",
            html.display()
        );
        assert!(
            n(f, "data-dom-series-drawn") >= 1,
            "{}: chart {id}: no series laid out",
            html.display()
        );
        assert!(
            n(f, "data-dom-yticks") >= 2,
            "{}: chart {id}: y axis without ticks",
            html.display()
        );
        assert!(
            n(f, "data-dom-xticks") >= 1,
            "{}: chart {id}: x axis without ticks",
            html.display()
        );
        if f["data-kind"] != "bars" {
            assert!(
                n(f, "data-dom-xticks") >= 2,
                "{}: chart {id}: x axis without ticks",
                html.display()
            );
        }
    }
    figs
}

fn report(inputs: &[&Path], out: &Path) -> String {
    let mut c = bin();
    c.arg("report");
    for i in inputs {
        c.arg(i);
    }
    let o = c.arg("--output").arg(out).output().unwrap();
    ok(o, "report");
    std::fs::read_to_string(out).unwrap()
}

#[test]
fn simulate_and_validate_of_the_shared_case_render_with_data() {
    let Some(case) = shared_case() else { return };
    let scratch = tmp("shared");
    let d = scratch.path();
    let (sum, reqs, steps) = (
        d.join("sim.json"),
        d.join("req.jsonl"),
        d.join("steps.jsonl"),
    );
    ok(
        bin()
            .args(["simulate", "--quiet", "--like", s(&case), "--workload"])
            .arg(case.join("workload.jsonl"))
            .args([
                "--output-json",
                s(&sum),
                "--requests-out",
                s(&reqs),
                "--steps-out",
                s(&steps),
            ])
            .output()
            .unwrap(),
        "simulate",
    );
    let (vj, vr) = (d.join("val.json"), d.join("val.jsonl"));
    ok(
        bin()
            .args(["validate", "--real", s(&case), "--workload"])
            .arg(case.join("workload.jsonl"))
            .args(["--json", s(&vj), "--requests", s(&vr)])
            .output()
            .unwrap(),
        "validate",
    );
    let sim_html = d.join("sim.html");
    let page = report(&[&sum, &reqs, &steps], &sim_html);
    assert!(page.contains("simulate: engine steps") && page.contains("TTFT CDF"));
    let val_html = d.join("val.html");
    report(&[&vj, &vr], &val_html);
    let Some(browser) = chromium() else { return };
    check_rendered(&browser, &sim_html, &[("cdf", 3), ("line", 3), ("bars", 3)]);
    let figs = check_rendered(
        &browser,
        &val_html,
        &[("scatter", 3), ("cdf", 3), ("bars", 4)],
    );
    // Every one of the 300 pairs is a dot in each scatter.
    for f in figs.iter().filter(|f| f["data-kind"] == "scatter") {
        assert_eq!(n(f, "data-dom-points"), 300, "{f:?}");
    }
}

#[test]
fn a_fleet_a_sweep_and_a_bench_result_render_with_data() {
    let Some(browser) = chromium() else { return };
    let scratch = tmp("kinds");
    let d = scratch.path();
    // A fleet of three replicas: per-instance sections of the summary, engines in the records.
    let (sum, reqs) = (d.join("fleet.json"), d.join("fleet.jsonl"));
    ok(
        bin()
            .args([
                "simulate",
                "--quiet",
                "--synthetic",
                "120",
                "--request-rate",
                "30",
            ])
            .args([
                "--replicas",
                "3",
                "--output-json",
                s(&sum),
                "--requests-out",
                s(&reqs),
            ])
            .output()
            .unwrap(),
        "simulate --replicas",
    );
    let fleet_html = d.join("fleet.html");
    report(&[&sum, &reqs], &fleet_html);
    let figs = check_rendered(
        &browser,
        &fleet_html,
        &[("bars", 5), ("line", 1), ("cdf", 3)],
    );
    let per_replica = figs
        .iter()
        .filter(|f| f["data-kind"] == "bars" && n(f, "data-points") == 3)
        .count();
    assert!(per_replica >= 4, "one bar per replica expected: {figs:?}");

    // A tiny sweep: two GPUs, three rates, an objective; the folder is the input.
    let grid = d.join("grid.yaml");
    std::fs::write(
        &grid,
        "base:\n  synthetic: 40\ngrid:\n  gpu: [h100, a100]\nrates: [2, 10, 40]\n",
    )
    .unwrap();
    let out_dir = d.join("sweep");
    ok(
        bin()
            .args([
                "sweep",
                "--quiet",
                "--grid",
                s(&grid),
                "--output-dir",
                s(&out_dir),
            ])
            .args(["--slo-ttft-ms", "p99:200"])
            .output()
            .unwrap(),
        "sweep",
    );
    let sweep_html = d.join("sweep.html");
    let page = report(&[&out_dir], &sweep_html);
    assert!(page.contains("objective 200 ms"), "the SLO line is missing");
    let figs = check_rendered(&browser, &sweep_html, &[("line", 3)]);
    // Two configurations × three rates per curve.
    assert!(figs.iter().all(|f| n(f, "data-points") == 6), "{figs:?}");
    // The CSV table leads to the same report.
    let csv_html = d.join("sweep-csv.html");
    assert_eq!(report(&[&out_dir.join("sweep.csv")], &csv_html), page);

    // A real `vllm bench serve --save-detailed` result (80 requests).
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/vllm-bench-reference");
    let bench_html = d.join("bench.html");
    report(&[&fixture.join("result.json")], &bench_html);
    let figs = check_rendered(&browser, &bench_html, &[("cdf", 3)]);
    assert!(figs.iter().all(|f| n(f, "data-points") == 80), "{figs:?}");
}

/// A tiny plan (40 requests at 80 requests/s, two GPU types, at most two GPUs): one H100 alone
/// saturates below the target, so the answer is one H200 ahead of two-H100 fleets.
#[test]
fn a_plan_renders_its_answer_with_data() {
    let scratch = tmp("plan");
    let d = scratch.path();
    let plan = d.join("plan.json");
    ok(
        bin()
            .args(["plan", "--synthetic", "40", "--request-rate", "80"])
            .args(["--gpus", "h100,h200", "--tensor-parallel-size", "1"])
            .args(["--max-gpus", "2", "--slo", "ttft:p99=200ms"])
            .args(["--slo", "tpot:p99=8ms", "--output-json", s(&plan)])
            .output()
            .unwrap(),
        "plan",
    );
    let doc: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&plan).unwrap()).unwrap();
    let fleets = doc["fleets"].as_array().unwrap();
    let configs = doc["configurations"].as_array().unwrap();
    assert!(fleets.len() >= 2, "too few fleets to compare: {doc:#}");
    let html = d.join("plan.html");
    let page = report(&[&plan], &html);
    // The headline: the winner's serve command as text.
    let cmd = fleets[0]["serve_command"].as_str().unwrap();
    assert!(page.contains(cmd), "no serve command {cmd} in the page");
    assert!(page.contains("plan: the cheapest fleet"));
    let Some(browser) = chromium() else { return };
    let figs = check_rendered(&browser, &html, &[("bars", 3)]);
    assert_eq!(figs.len(), 3, "{figs:?}");
    // A cost bar per fleet, a ratio bar per fleet and objective, and a bar per rate the
    // configurations report (saturation and, where one engine falls short, the failing rate).
    assert_eq!(n(&figs[0], "data-points"), fleets.len());
    assert_eq!(n(&figs[1], "data-points"), fleets.len() * 2);
    let rates = configs
        .iter()
        .flat_map(|c| [&c["saturation_rate"], &c["first_failing_rate"]])
        .filter(|v| v.is_f64())
        .count();
    assert!(
        rates > configs.len(),
        "no configuration fails alone: {doc:#}"
    );
    assert_eq!(n(&figs[2], "data-points"), rates);
    // The 1.0 line of the ratios and the target line of the saturation rates.
    assert!(page.contains(">bound<") && page.contains(">target 80 req/s<"));
}

#[test]
fn png_export_writes_a_screenshot() {
    let Some(_) = chromium() else { return };
    let scratch = tmp("png");
    let d = scratch.path();
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/vllm-bench-reference");
    let html = d.join("bench.html");
    ok(
        bin()
            .arg("report")
            .arg(fixture.join("result.json"))
            .args(["--output", s(&html), "--png", s(&d.join("png"))])
            .output()
            .unwrap(),
        "report --png",
    );
    let png = std::fs::read(d.join("png/bench.png")).unwrap();
    assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
    assert!(
        png.len() > 10_000,
        "a blank screenshot? {} bytes",
        png.len()
    );
}

/// 200,000 steps and 100,000 requests: every series stays within 2,000 points and the page
/// small, and the browser still finds every chart with data.
#[test]
fn long_runs_give_bounded_pages() {
    let scratch = tmp("long");
    let d = scratch.path();
    let steps = d.join("steps.jsonl");
    let mut w = std::io::BufWriter::new(std::fs::File::create(&steps).unwrap());
    for i in 0..200_000u32 {
        let t = f64::from(i) * 0.01;
        let running = (i % 977) as f64;
        writeln!(
            w,
            "{{\"time_s\":{t},\"start_s\":{t},\"end_s\":{},\"duration_ms\":10.0,\"num_reqs\":1,\
             \"num_tokens\":{},\"context_tokens\":0,\"num_prefill_tokens\":0,\"num_decode_reqs\":1,\
             \"running\":{running},\"waiting\":{},\"kv_usage\":{}}}",
            t + 0.01,
            i % 2048,
            i % 13,
            f64::from(i % 1000) / 1000.0
        )
        .unwrap();
    }
    drop(w);
    let reqs = d.join("req.jsonl");
    let mut w = std::io::BufWriter::new(std::fs::File::create(&reqs).unwrap());
    for i in 0..100_000u32 {
        let a = f64::from(i) * 0.001;
        writeln!(
            w,
            "{{\"request_id\":\"r{i}\",\"engine\":0,\"arrival_s\":{a},\"queued_s\":{a},\
             \"first_scheduled_s\":{a},\"first_token_s\":{},\"last_token_s\":{},\"prompt_len\":10,\
             \"output_len\":{},\"cached_tokens\":0,\"num_preemptions\":0,\"finish_reason\":\"length\",\
             \"error\":null}}",
            a + 0.05 + f64::from(i % 100) * 0.001,
            a + 1.0 + f64::from(i % 37) * 0.01,
            2 + i % 50
        )
        .unwrap();
    }
    drop(w);
    let html = d.join("long.html");
    let page = report(&[&steps, &reqs], &html);
    assert!(page.len() < 400_000, "{} bytes", page.len());
    let Some(browser) = chromium() else { return };
    let figs = check_rendered(&browser, &html, &[("line", 3), ("cdf", 3)]);
    for f in &figs {
        let per_series = n(f, "data-points") / n(f, "data-dom-series-drawn");
        assert!(per_series <= 2000, "{f:?}");
    }
}

#[test]
fn inputs_that_are_not_report_inputs_are_named_with_what_was_expected() {
    let scratch = tmp("bad");
    let d = scratch.path();
    let cases: [(&str, &str, &str); 4] = [
        ("other.json", "{\"a\": 1, \"b\": 2}\n", "keys a, b"),
        ("empty.jsonl", "\n\n", "empty"),
        ("grid.yaml", "base:\n  synthetic: 5\n", "not JSON"),
        (
            "lines.jsonl",
            "{\"x\": 1}\n{\"x\": 2}\n",
            "neither one JSON document nor JSONL",
        ),
    ];
    for (name, text, says) in cases {
        let p = d.join(name);
        std::fs::write(&p, text).unwrap();
        let o = bin()
            .arg("report")
            .arg(&p)
            .args(["--output", s(&d.join("x.html"))])
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(!o.status.success(), "{name} was accepted");
        assert!(err.contains(s(&p)) && err.contains(says), "{name}: {err}");
        assert!(
            err.contains("expected a `simulate --output-json` summary"),
            "{name}: {err}"
        );
    }
    // A folder that is not a sweep's, and a broken line in a per-request file.
    let o = bin()
        .arg("report")
        .arg(d)
        .args(["--output", s(&d.join("x.html"))])
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&o.stderr).contains("no sweep.json"));
    let p = d.join("req.jsonl");
    std::fs::write(
        &p,
        "{\"request_id\":\"a\",\"arrival_s\":0,\"first_token_s\":1,\"last_token_s\":2,\"output_len\":3}\nnot json\n",
    )
    .unwrap();
    let o = bin()
        .arg("report")
        .arg(&p)
        .args(["--output", s(&d.join("x.html"))])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success() && err.contains("line 2"), "{err}");
    assert!(!d.join("x.html").exists(), "a failed report wrote its page");
}
