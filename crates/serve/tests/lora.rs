//! LoRA adapters over HTTP, as vLLM 0.19 serves them: `/v1/models` cards, requests naming an
//! adapter, runtime load and unload (only with `VLLM_ALLOW_RUNTIME_LORA_UPDATING`), and
//! `vllm:lora_requests_info`.

mod common;

use common::{Setup, TestServer, MODEL};
use llm_emu_serve::lora::{LoraModulePath, LoraOptions};
use llm_emu_serve::ServeOptions;
use serde_json::json;

fn lora_opts(o: &mut ServeOptions, runtime_updating: bool) {
    o.lora = LoraOptions {
        enabled: true,
        max_loras: 2,
        max_lora_rank: 16,
        modules: vec![LoraModulePath {
            name: "sql".into(),
            path: "/adapters/sql".into(),
            base_model_name: None,
        }],
        runtime_updating,
    };
}

fn server(runtime_updating: bool) -> TestServer {
    TestServer::start(Setup {
        adjust: if runtime_updating {
            |o| lora_opts(o, true)
        } else {
            |o| lora_opts(o, false)
        },
        ..Setup::default()
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn static_adapter_is_listed_and_served() {
    let s = server(false);
    let (st, body) = s.call("GET", "/v1/models", Vec::new()).await;
    assert_eq!(st, 200);
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    let data = v["data"].as_array().unwrap();
    assert_eq!(data.len(), 2, "{v}");
    assert_eq!(data[0]["id"], MODEL);
    assert_eq!(data[1]["id"], "sql");
    assert_eq!(data[1]["root"], "/adapters/sql");
    assert_eq!(data[1]["parent"], MODEL);
    assert!(data[1]["max_model_len"].is_null());
    assert_eq!(data[1]["permission"][0]["object"], "model_permission");

    let (st, v) = s
        .json(
            "/v1/completions",
            json!({"model": "sql", "prompt": "a b c", "max_tokens": 3}),
        )
        .await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["model"], "sql");
    assert_eq!(v["usage"]["completion_tokens"], 3);

    let (st, v) = s
        .json(
            "/v1/completions",
            json!({"model": "nope", "prompt": "a", "max_tokens": 1}),
        )
        .await;
    assert_eq!(st, 404);
    assert_eq!(v["error"]["message"], "The model `nope` does not exist.");

    // The runtime routes are not mounted without VLLM_ALLOW_RUNTIME_LORA_UPDATING.
    let (st, v) = s
        .json(
            "/v1/load_lora_adapter",
            json!({"lora_name": "x", "lora_path": "/x"}),
        )
        .await;
    assert_eq!(st, 404);
    assert_eq!(v, json!({"detail": "Not Found"}));

    let (_, text) = s.call("GET", "/metrics", Vec::new()).await;
    assert!(
        text.contains("# TYPE vllm:lora_requests_info gauge"),
        "{text}"
    );
    assert!(
        text.contains(
            "vllm:lora_requests_info{max_lora=\"2\",running_lora_adapters=\"\",\
             waiting_lora_adapters=\"\"}"
        ),
        "{text}"
    );
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runtime_load_and_unload() {
    let s = server(true);
    let (st, body) = s
        .call(
            "POST",
            "/v1/load_lora_adapter",
            serde_json::to_vec(&json!({"lora_name": "chat", "lora_path": "/a/chat"})).unwrap(),
        )
        .await;
    assert_eq!(st, 200);
    assert_eq!(body, "Success: LoRA adapter 'chat' added successfully.");

    let (st, v) = s
        .json(
            "/v1/load_lora_adapter",
            json!({"lora_name": "chat", "lora_path": "/a/chat"}),
        )
        .await;
    assert_eq!(st, 400);
    assert_eq!(v["error"]["type"], "InvalidUserInput");
    assert_eq!(
        v["error"]["message"],
        "The lora adapter 'chat' has already been loaded. If you want to load the adapter in \
         place, set 'load_inplace' to True."
    );
    let (st, v) = s
        .json(
            "/v1/load_lora_adapter",
            json!({"lora_name": "", "lora_path": "/a"}),
        )
        .await;
    assert_eq!(st, 400);
    assert_eq!(
        v["error"]["message"],
        "Both 'lora_name' and 'lora_path' must be provided."
    );
    let (st, _) = s
        .json("/v1/load_lora_adapter", json!({"lora_name": "x"}))
        .await;
    assert_eq!(st, 400, "a missing field is a validation error");

    let (st, v) = s
        .json(
            "/v1/chat/completions",
            json!({"model": "chat", "messages": [{"role": "user", "content": "hi"}],
                   "max_tokens": 2}),
        )
        .await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["model"], "chat");

    let (_, body) = s.call("GET", "/v1/models", Vec::new()).await;
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    let ids: Vec<_> = v["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(ids, [MODEL, "sql", "chat"]);

    let (st, body) = s
        .call(
            "POST",
            "/v1/unload_lora_adapter",
            serde_json::to_vec(&json!({"lora_name": "chat"})).unwrap(),
        )
        .await;
    assert_eq!(st, 200);
    assert_eq!(body, "Success: LoRA adapter 'chat' removed successfully.");
    let (st, v) = s
        .json("/v1/unload_lora_adapter", json!({"lora_name": "chat"}))
        .await;
    assert_eq!(st, 404);
    assert_eq!(v["error"]["type"], "NotFoundError");
    assert_eq!(
        v["error"]["message"],
        "The lora adapter 'chat' cannot be found."
    );
    let (st, _) = s
        .json(
            "/v1/completions",
            json!({"model": "chat", "prompt": "a", "max_tokens": 1}),
        )
        .await;
    assert_eq!(st, 404, "an unloaded adapter is no longer served");
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn busy_adapter_is_reported_running() {
    let s = server(false);
    let addr = s.addr;
    // A streamed request of 1500 steps of about 1 ms: in flight while /metrics is read.
    let body = json!({"model": "sql", "prompt": "a b", "max_tokens": 1500, "ignore_eos": true,
                      "stream": true});
    let task = tokio::spawn(async move {
        common::call(
            addr,
            "POST",
            "/v1/completions",
            serde_json::to_vec(&body).unwrap(),
        )
        .await
    });
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let (_, text) = s.call("GET", "/metrics", Vec::new()).await;
    assert!(
        text.contains(
            "vllm:lora_requests_info{max_lora=\"2\",running_lora_adapters=\"sql\",\
             waiting_lora_adapters=\"\"}"
        ),
        "{text}"
    );
    let (st, _) = task.await.unwrap();
    assert_eq!(st, 200);
    // Finished: the next update has no running adapter, and the old series stays.
    let (_, text) = s.call("GET", "/metrics", Vec::new()).await;
    assert!(text.contains("running_lora_adapters=\"sql\""));
    assert!(text.contains("running_lora_adapters=\"\""));
    s.stop().await;
}

/// Two adapters and `max_loras` 1.
fn one_lora_per_batch(o: &mut ServeOptions) {
    lora_opts(o, false);
    o.lora.max_loras = 1;
    o.lora.modules.push(LoraModulePath {
        name: "math".into(),
        path: "/adapters/math".into(),
        base_model_name: None,
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_adapter_waits_for_the_batch_of_the_first() {
    let s = TestServer::start(Setup {
        adjust: one_lora_per_batch,
        ..Setup::default()
    });
    let addr = s.addr;
    let send = |model: &'static str, max_tokens: u32| async move {
        let body = json!({"model": model, "prompt": "a b c", "max_tokens": max_tokens,
                          "ignore_eos": true});
        let (st, b) = common::call(
            addr,
            "POST",
            "/v1/completions",
            body.to_string().into_bytes(),
        )
        .await;
        assert_eq!(st, 200, "{b}");
        std::time::Instant::now()
    };
    // 40 steps of 1 ms for `sql`; `math` needs 2 steps, but only once `sql` has left the
    // batch (vLLM's scheduler skips it while the batch holds another adapter).
    let long = tokio::spawn(send("sql", 40));
    tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    let short = tokio::spawn(send("math", 2));
    let (long_done, short_done) = (long.await.unwrap(), short.await.unwrap());
    assert!(
        short_done > long_done,
        "the second adapter finished before the first left the batch"
    );
    // The base model is not limited: it finishes before the adapter's long request.
    let long = tokio::spawn(send("sql", 40));
    tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    let base = tokio::spawn(send(MODEL, 2));
    let (long_done, base_done) = (long.await.unwrap(), base.await.unwrap());
    assert!(base_done < long_done);
    s.stop().await;
}
