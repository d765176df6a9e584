//! The api's edges as a browser on another origin and a careless client meet them: CORS for the
//! allowed origins only, and a JSON `{"detail": ...}` for every error status (404, 405, 413, 415).

use crate::helpers::*;
use reqwest::header::{
    ACCESS_CONTROL_ALLOW_HEADERS, ACCESS_CONTROL_ALLOW_METHODS, ACCESS_CONTROL_ALLOW_ORIGIN,
    ACCESS_CONTROL_MAX_AGE, CONTENT_TYPE, VARY,
};
use reqwest::{Method, StatusCode};
use serde_json::json;

const SEED_FRONTEND: &str = "http://127.0.0.1:3000";
const ADMIN_DASHBOARD: &str = "http://localhost:3001";
const STRANGER: &str = "http://127.0.0.1:3002";

async fn app_for_frontends() -> TestApp {
    let db = fresh_database().await;
    let mut config = test_config(&db, &redis_url());
    config.cors.allowed_origins = vec![SEED_FRONTEND.into(), format!("{ADMIN_DASHBOARD}/")];
    spawn_with(config).await
}

async fn preflight(app: &TestApp, origin: &str, method: &str, path: &str) -> reqwest::Response {
    app.http
        .request(Method::OPTIONS, app.url(path))
        .header("origin", origin)
        .header("access-control-request-method", method)
        .header(
            "access-control-request-headers",
            "authorization,content-type",
        )
        .send()
        .await
        .unwrap()
}

fn header<'a>(resp: &'a reqwest::Response, name: &reqwest::header::HeaderName) -> &'a str {
    resp.headers()
        .get(name)
        .map(|v| v.to_str().unwrap())
        .unwrap_or("")
}

#[tokio::test]
async fn an_allowed_frontend_gets_its_preflight_and_its_answers() {
    let app = app_for_frontends().await;
    for (origin, method, path) in [
        (SEED_FRONTEND, "GET", "/api/notifications?limit=10"),
        (SEED_FRONTEND, "PUT", "/api/notifications/x/read"),
        (ADMIN_DASHBOARD, "DELETE", "/api/notifications/x"),
        (ADMIN_DASHBOARD, "POST", "/api/notifications"),
    ] {
        let resp = preflight(&app, origin, method, path).await;
        assert!(
            resp.status().is_success(),
            "{origin} {method}: {}",
            resp.status()
        );
        assert_eq!(header(&resp, &ACCESS_CONTROL_ALLOW_ORIGIN), origin);
        assert!(header(&resp, &ACCESS_CONTROL_ALLOW_METHODS).contains(method));
        let allowed = header(&resp, &ACCESS_CONTROL_ALLOW_HEADERS).to_ascii_lowercase();
        assert!(allowed.contains("authorization") && allowed.contains("content-type"));
        assert_eq!(header(&resp, &ACCESS_CONTROL_MAX_AGE), "600");
        assert!(header(&resp, &VARY).to_ascii_lowercase().contains("origin"));
    }

    // The actual request: the origin is echoed, and the answer says it varies by origin.
    let resp = app
        .http
        .get(app.url("/api/notifications?limit=10&unread_only=true"))
        .bearer_auth(token("alice", &[], None))
        .header("origin", SEED_FRONTEND)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(header(&resp, &ACCESS_CONTROL_ALLOW_ORIGIN), SEED_FRONTEND);
    assert!(header(&resp, &VARY).to_ascii_lowercase().contains("origin"));

    // The client library is importable as a module from an allowed origin.
    let resp = app
        .http
        .get(app.url("/herald.js"))
        .header("origin", ADMIN_DASHBOARD)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(header(&resp, &ACCESS_CONTROL_ALLOW_ORIGIN), ADMIN_DASHBOARD);
}

#[tokio::test]
async fn any_other_origin_gets_no_cors_header_and_a_json_403_preflight() {
    let app = app_for_frontends().await;
    let resp = preflight(&app, STRANGER, "PUT", "/api/notifications/x/read").await;
    assert_eq!(resp.status(), StatusCode::FORBIDDEN);
    assert!(
        resp.headers()
            .keys()
            .all(|k| !k.as_str().starts_with("access-control-")),
        "{:?}",
        resp.headers()
    );
    let body: serde_json::Value = resp.json().await.unwrap();
    assert!(
        body["detail"]
            .as_str()
            .unwrap()
            .contains("CORS_ALLOWED_ORIGINS")
    );

    for origin in [STRANGER, "null", "http://127.0.0.1:3000.evil.example"] {
        let resp = app
            .http
            .get(app.url("/api/notifications"))
            .bearer_auth(token("alice", &[], None))
            .header("origin", origin)
            .send()
            .await
            .unwrap();
        assert!(
            resp.headers()
                .keys()
                .all(|k| !k.as_str().starts_with("access-control-")),
            "{origin}: {:?}",
            resp.headers()
        );
    }
}

#[tokio::test]
async fn by_default_only_the_public_origin_is_allowed() {
    let app = spawn_app().await;
    let resp = preflight(
        &app,
        "http://127.0.0.1:8000",
        "PUT",
        "/api/notifications/x/read",
    )
    .await;
    assert_eq!(
        header(&resp, &ACCESS_CONTROL_ALLOW_ORIGIN),
        "http://127.0.0.1:8000"
    );
    let resp = preflight(&app, SEED_FRONTEND, "PUT", "/api/notifications/x/read").await;
    assert_eq!(resp.status(), StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn a_configured_entry_that_is_not_an_origin_stops_the_start() {
    let db = fresh_database().await;
    let mut config = test_config(&db, &redis_url());
    config.cors.allowed_origins = vec!["localhost:3000".into()];
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let err = herald_api::startup::App::build(config, listener)
        .await
        .err()
        .expect("refused");
    assert!(err.to_string().contains("CORS_ALLOWED_ORIGINS"), "{err}");
}

#[tokio::test]
async fn every_error_status_has_a_json_detail() {
    let app = spawn_app().await;
    let publisher = publisher_token();
    let is_json_detail = |a: &Answer| {
        assert!(
            a.headers[CONTENT_TYPE]
                .to_str()
                .unwrap()
                .starts_with("application/json"),
            "{:?}",
            a.headers
        );
        assert!(a.body["detail"].is_string(), "{}", a.body);
    };

    let a = app.call(Method::GET, "/api/nothing-here", None, None).await;
    assert_eq!(a.status, StatusCode::NOT_FOUND);
    is_json_detail(&a);
    assert_eq!(a.body["detail"], "Not Found");

    let a = app
        .call(Method::PATCH, "/api/notifications", Some(&publisher), None)
        .await;
    assert_eq!(a.status, StatusCode::METHOD_NOT_ALLOWED);
    is_json_detail(&a);
    assert_eq!(a.body["detail"], "Method Not Allowed");

    // A publish that is not JSON: form-encoded (what `curl -d` sends), text, or no type at all.
    let body = json!({"recipients": ["alice"], "type": "t", "title": "t", "message": "m"});
    for content_type in [
        Some("application/x-www-form-urlencoded"),
        Some("text/plain"),
        None,
    ] {
        let mut req = app
            .http
            .post(app.url("/api/notifications"))
            .bearer_auth(&publisher)
            .body(body.to_string());
        if let Some(ct) = content_type {
            req = req.header(CONTENT_TYPE, ct);
        }
        let resp = req.send().await.unwrap();
        assert_eq!(
            resp.status(),
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "{content_type:?}"
        );
        let detail: serde_json::Value = resp.json().await.unwrap();
        assert!(
            detail["detail"]
                .as_str()
                .unwrap()
                .contains("application/json")
        );
    }
    // JSON with parameters, or a +json type, is JSON.
    for content_type in [
        "application/json; charset=utf-8",
        "application/vnd.herald+json",
    ] {
        let resp = app
            .http
            .post(app.url("/api/notifications"))
            .bearer_auth(&publisher)
            .header(CONTENT_TYPE, content_type)
            .body(body.to_string())
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::CREATED, "{content_type}");
    }

    // Larger than HERALD_MAX_BODY_BYTES (4 MiB by default).
    let big = format!(
        r#"{{"recipients": ["alice"], "type": "t", "title": "t", "message": "{}"}}"#,
        "x".repeat(4 * 1024 * 1024)
    );
    let a = app.raw_post("/api/notifications", &publisher, big).await;
    assert_eq!(a.status, StatusCode::PAYLOAD_TOO_LARGE);
    is_json_detail(&a);
    assert_eq!(
        app.stored_rows().await,
        (2, 2),
        "only the two JSON publishes"
    );
}
