//! vLLM's runtime LoRA routes (`serve/lora/api_router.py`), mounted only when
//! `VLLM_ALLOW_RUNTIME_LORA_UPDATING` is set, and the adapters' cards in `/v1/models`.

use crate::errors::ApiError;
use crate::lora::{LoadLoraRequest, UnloadLoraRequest};
use crate::routes::parse_request;
use crate::state::AppState;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use serde_json::json;
use std::sync::Arc;

/// Adds the load and unload routes when the server allows runtime updates.
pub fn mount(router: Router<Arc<AppState>>, state: &AppState) -> Router<Arc<AppState>> {
    if !state.lora.opts.runtime_updating {
        return router;
    }
    router
        .route("/v1/load_lora_adapter", post(load))
        .route("/v1/unload_lora_adapter", post(unload))
}

/// vLLM answers success with the message as a plain body (`Response(content=str)`).
fn success(message: String) -> Response {
    (StatusCode::OK, message).into_response()
}

async fn load(
    State(state): State<Arc<AppState>>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let req: LoadLoraRequest = parse_request(&state, body).await?;
    state
        .lora
        .load(&req, None, &state.served_model_names)
        .map(success)
}

async fn unload(
    State(state): State<Arc<AppState>>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let req: UnloadLoraRequest = parse_request(&state, body).await?;
    state.lora.unload(&req).map(success)
}

/// The `/v1/models` cards of the loaded adapters: `root` the adapter's path, `parent` its base
/// model (the first served name unless it named one), `max_model_len` null, as vLLM's
/// `ModelCard` defaults.
pub fn adapter_cards(state: &AppState, created: u64) -> Vec<serde_json::Value> {
    state
        .lora
        .adapters()
        .into_iter()
        .map(|a| {
            json!({
                "id": a.name,
                "object": "model",
                "created": created,
                "owned_by": "vllm",
                "root": a.path,
                "parent": a.base_model_name.unwrap_or_else(|| state.model_name().to_string()),
                "max_model_len": null,
                "permission": [crate::routes::model_permission(state, created)],
            })
        })
        .collect()
}
