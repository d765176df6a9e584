//! Host application → Herald (docs/api.md): notifications that are stored, and live events that are
//! not. Both need a token whose scope contains `publish`.

use crate::domain::{NewEvent, NewNotification, PublishEventBody, PublishNotificationBody};
use crate::error::ApiError;
use crate::extract::{JsonBody, Publisher};
use crate::publishing::{self, Created};
use crate::state::AppState;
use axum::extract::State;
use axum::http::{HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use herald_core::wire::ServerMessage;
use serde::Serialize;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/notifications", post(create_notification))
        .route("/api/events", post(create_event))
}

/// Set on a 201 that replays the first answer to an idempotent retry.
pub const REPLAYED_HEADER: &str = "idempotent-replayed";

#[utoipa::path(post, path = "/api/notifications", tag = "publish",
    request_body = PublishNotificationBody,
    responses((status = 201, body = Created), (status = 401), (status = 403), (status = 422), (status = 503)),
    security(("bearer" = [])))]
pub async fn create_notification(
    State(state): State<AppState>,
    Publisher(publisher): Publisher,
    body: JsonBody<PublishNotificationBody>,
) -> Result<Response, ApiError> {
    let new = NewNotification::parse(body.value, state.max_data_bytes, &state.link_origins)?;
    let audience = new.audience.kind();
    let (created, fresh) = if new.idempotency_key.is_some() {
        publishing::create(&state.pool, &publisher.sub, &new, &body.raw).await?
    } else {
        (state.batcher.create(&publisher.sub, new).await?, true)
    };
    let mut response = (StatusCode::CREATED, Json(created)).into_response();
    if fresh {
        state
            .metrics
            .notifications_created
            .with_label_values(&[audience])
            .inc();
        // Committed: the relay publishes it (now, or once Redis is back).
        state.relay_wake.notify_one();
    } else {
        response.headers_mut().insert(
            HeaderName::from_static(REPLAYED_HEADER),
            HeaderValue::from_static("true"),
        );
    }
    Ok(response)
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct EventAccepted {
    /// Redis channels the event was published on.
    pub channels: usize,
}

#[utoipa::path(post, path = "/api/events", tag = "publish",
    request_body = PublishEventBody,
    responses((status = 202, body = EventAccepted), (status = 401), (status = 403), (status = 422), (status = 503)),
    security(("bearer" = [])))]
pub async fn create_event(
    State(state): State<AppState>,
    Publisher(_publisher): Publisher,
    body: JsonBody<PublishEventBody>,
) -> Result<(StatusCode, Json<EventAccepted>), ApiError> {
    let event = NewEvent::parse(body.value, state.max_data_bytes)?;
    let channels = state.bus.channels(&event.audience);
    let frame = ServerMessage::Event {
        event: event.event,
        data: event.data,
    }
    .to_json();
    state.bus.publish(&channels, &frame).await.map_err(|err| {
        state.metrics.redis_publish_errors.inc();
        tracing::warn!(cause = %err, "publishing an event failed");
        ApiError::Unavailable("redis")
    })?;
    state.metrics.events_published.inc();
    Ok((
        StatusCode::ACCEPTED,
        Json(EventAccepted {
            channels: channels.len(),
        }),
    ))
}
