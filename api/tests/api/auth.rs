//! The auth matrix: missing, forged, `alg: none`, HS/RS confusion, expired, string `exp`,
//! issuer and audience, scope, and one user's ids in another user's hands.

use crate::helpers::*;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use herald_core::auth::now_unix;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

fn hs256(secret: &[u8], claims: &Value) -> String {
    jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        claims,
        &EncodingKey::from_secret(secret),
    )
    .unwrap()
}

fn unsigned(claims: &Value) -> String {
    let header = B64.encode(br#"{"alg":"none","typ":"JWT"}"#);
    format!("{header}.{}.", B64.encode(claims.to_string()))
}

async fn status_of(app: &TestApp, token: &str) -> (StatusCode, Value) {
    let a = app.inbox(token, "").await;
    (a.status, a.body)
}

#[tokio::test]
async fn tokens_that_do_not_verify_are_refused_with_401() {
    let app = spawn_app().await;
    let good = json!({"sub": "alice", "exp": now_unix() + 600});
    assert_eq!(
        status_of(&app, &hs256(SECRET.as_bytes(), &good)).await.0,
        StatusCode::OK
    );

    let missing = app
        .call(Method::GET, "/api/notifications", None, None)
        .await;
    assert_eq!(missing.status, StatusCode::UNAUTHORIZED);
    assert_eq!(missing.headers.get("www-authenticate").unwrap(), "Bearer");
    assert_eq!(missing.body, json!({"detail": "missing token"}));

    let cases = [
        (
            "bad signature",
            hs256(b"not-the-secret", &good),
            "token signature is invalid",
        ),
        (
            "alg none",
            unsigned(&good),
            "token algorithm is not accepted",
        ),
        (
            "expired",
            hs256(
                SECRET.as_bytes(),
                &json!({"sub": "alice", "exp": now_unix() - 3600}),
            ),
            "token has expired",
        ),
        (
            "no exp",
            hs256(SECRET.as_bytes(), &json!({"sub": "alice"})),
            "token claims are missing or invalid",
        ),
        (
            "string exp",
            hs256(
                SECRET.as_bytes(),
                &json!({"sub": "alice", "exp": (now_unix() + 600).to_string()}),
            ),
            "token claims are missing or invalid",
        ),
        (
            "future nbf",
            hs256(
                SECRET.as_bytes(),
                &json!({"sub": "alice", "exp": now_unix() + 600, "nbf": now_unix() + 300}),
            ),
            "token is not valid yet",
        ),
        ("garbage", "abc.def.ghi".to_owned(), "malformed token"),
        (
            "long sub",
            hs256(
                SECRET.as_bytes(),
                &json!({"sub": "x".repeat(129), "exp": now_unix() + 600}),
            ),
            "token subject (sub) must be 1 to 128 characters without control characters",
        ),
    ];
    for (name, token, detail) in cases {
        let (status, body) = status_of(&app, &token).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{name}");
        assert_eq!(body, json!({"detail": detail}), "{name}");
    }
    let metrics = app
        .http
        .get(app.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains(r#"herald_api_auth_failures_total{reason="bad_signature"} 1"#),
        "{metrics}"
    );
}

#[tokio::test]
async fn a_user_token_cannot_publish() {
    let app = spawn_app().await;
    let body = json!({"recipients": ["bob"], "type": "t", "title": "x", "message": ""});
    let a = app
        .call(
            Method::POST,
            "/api/notifications",
            Some(&token("alice", &["admin"], None)),
            Some(&body),
        )
        .await;
    assert_eq!(a.status, StatusCode::FORBIDDEN);
    assert!(a.body["detail"].as_str().unwrap().contains("publish"));
    let e = app
        .call(
            Method::POST,
            "/api/events",
            Some(&token("alice", &[], Some("read"))),
            Some(&json!({"event": "x", "broadcast": true})),
        )
        .await;
    assert_eq!(e.status, StatusCode::FORBIDDEN);
    assert_eq!(app.stored_rows().await, (0, 0));
}

#[tokio::test]
async fn another_users_notification_is_not_found_and_stays_unchanged() {
    let app = spawn_app().await;
    let id = app.notify("bob", "bob's secret").await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let alice = token("alice", &[], None);
    for (method, path) in [
        (Method::PUT, format!("/api/notifications/{id}/read")),
        (Method::DELETE, format!("/api/notifications/{id}")),
    ] {
        let a = app.call(method, &path, Some(&alice), None).await;
        assert_eq!(a.status, StatusCode::NOT_FOUND);
        assert_eq!(a.body, json!({"detail": "Notification not found"}));
    }
    assert_eq!(
        app.call(
            Method::PUT,
            "/api/notifications/mark-all-read",
            Some(&alice),
            None
        )
        .await
        .body["message"],
        "0 notifications marked as read"
    );
    let bob = app.inbox(&token("bob", &[], None), "").await.body;
    assert_eq!(
        (bob["total"].clone(), bob["unread_count"].clone()),
        (json!(1), json!(1))
    );
    assert_eq!(app.inbox(&alice, "").await.body["total"], 0);
}

/// An RSA key pair made by openssl for this test run.
fn rsa_keys() -> (Vec<u8>, Vec<u8>) {
    let dir = std::env::temp_dir().join(format!("herald-keys-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    let private = dir.join("private.pem");
    let public = dir.join("public.pem");
    let ok = std::process::Command::new("openssl")
        .args([
            "genpkey",
            "-algorithm",
            "RSA",
            "-pkeyopt",
            "rsa_keygen_bits:2048",
            "-out",
        ])
        .arg(&private)
        .status()
        .expect("openssl is installed")
        .success()
        && std::process::Command::new("openssl")
            .args(["pkey", "-pubout", "-in"])
            .arg(&private)
            .arg("-out")
            .arg(&public)
            .status()
            .unwrap()
            .success();
    assert!(ok, "openssl made a key pair");
    (
        std::fs::read(&private).unwrap(),
        std::fs::read(public).unwrap(),
    )
}

#[tokio::test]
async fn with_a_public_key_only_that_algorithm_issuer_and_audience_pass() {
    let (private, public) = rsa_keys();
    let key_file = std::env::temp_dir().join(format!("herald-pub-{}.pem", uuid::Uuid::new_v4()));
    std::fs::write(&key_file, &public).unwrap();
    let mut config = test_config(&fresh_database().await, &redis_url());
    config.jwt.secret = None;
    config.jwt.public_key_file = Some(key_file);
    config.jwt.algorithm = Some("RS256".into());
    config.jwt.issuer = Some("https://host.example".into());
    config.jwt.audience = Some("herald".into());
    let app = spawn_with(config).await;

    let rs = |claims: &Value| {
        jsonwebtoken::encode(
            &Header::new(Algorithm::RS256),
            claims,
            &EncodingKey::from_rsa_pem(&private).unwrap(),
        )
        .unwrap()
    };
    let claims = json!({"sub": "alice", "exp": now_unix() + 600, "iss": "https://host.example", "aud": "herald"});
    assert_eq!(status_of(&app, &rs(&claims)).await.0, StatusCode::OK);

    // HS256 "signed" with the public key: the classic algorithm-confusion forgery.
    let confused = hs256(&public, &claims);
    assert_eq!(
        status_of(&app, &confused).await,
        (
            StatusCode::UNAUTHORIZED,
            json!({"detail": "token algorithm is not accepted"})
        )
    );

    let mut wrong_iss = claims.clone();
    wrong_iss["iss"] = json!("https://evil.example");
    assert_eq!(
        status_of(&app, &rs(&wrong_iss)).await.1,
        json!({"detail": "token issuer is not accepted"})
    );
    let mut wrong_aud = claims.clone();
    wrong_aud["aud"] = json!("someone-else");
    assert_eq!(
        status_of(&app, &rs(&wrong_aud)).await.1,
        json!({"detail": "token audience is not accepted"})
    );
    let mut no_aud = claims.clone();
    no_aud.as_object_mut().unwrap().remove("aud");
    assert_eq!(
        status_of(&app, &rs(&no_aud)).await.0,
        StatusCode::UNAUTHORIZED
    );
}

/// The raw HTTP request, so a header or query can carry exactly what an attacker sends.
async fn get_with(app: &TestApp, path: &str, authorization: &str) -> (StatusCode, Value) {
    let resp = app
        .http
        .get(app.url(path))
        .header("authorization", authorization)
        .send()
        .await
        .unwrap();
    let status = resp.status();
    (status, resp.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn a_nul_in_any_query_parameter_is_a_422_naming_it_never_a_500() {
    let app = spawn_app().await;
    let alice = token("alice", &[], None);
    for name in [
        "skip",
        "limit",
        "unread_only",
        "notification_type",
        "priority",
        "after",
    ] {
        for value in ["%00", "a%00b", "x%0Ay"] {
            let (status, body) = get_with(
                &app,
                &format!("/api/notifications?{name}={value}"),
                &format!("Bearer {alice}"),
            )
            .await;
            assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{name}={value}");
            assert_eq!(
                body["detail"][0]["loc"],
                json!(["query", name]),
                "{name}={value}"
            );
        }
    }
    let (status, body) = get_with(
        &app,
        "/api/notifications?notification_type=Not-A-Type",
        &format!("Bearer {alice}"),
    )
    .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(
        body["detail"][0]["loc"],
        json!(["query", "notification_type"])
    );
}

#[tokio::test]
async fn a_subject_with_a_nul_or_a_line_break_is_refused_everywhere_and_counted() {
    let app = spawn_app().await;
    for sub in ["nul\u{0}user", "two\nlines"] {
        let t = hs256(
            SECRET.as_bytes(),
            &json!({"sub": sub, "exp": now_unix() + 600}),
        );
        for (method, path) in [
            (Method::GET, "/api/notifications"),
            (Method::GET, "/api/notifications/stats"),
            (Method::PUT, "/api/notifications/mark-all-read"),
        ] {
            let a = app.call(method.clone(), path, Some(&t), None).await;
            assert_eq!(a.status, StatusCode::UNAUTHORIZED, "{sub:?} {path}");
            assert!(a.body["detail"].as_str().unwrap().contains("subject"));
        }
    }
    let metrics = app
        .http
        .get(app.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics
            .lines()
            .any(|l| l.contains("reason=\"invalid_subject\"") && l.ends_with(" 6")),
        "{metrics}"
    );
    assert_eq!(app.stored_rows().await, (0, 0), "nothing written");
}

#[tokio::test]
async fn the_audience_may_be_an_array_and_the_scheme_any_case() {
    let db = fresh_database().await;
    let mut config = test_config(&db, &redis_url());
    config.jwt.audience = Some("herald".into());
    let app = spawn_with(config).await;
    let with_aud = |aud: Value| {
        hs256(
            SECRET.as_bytes(),
            &json!({"sub": "alice", "aud": aud, "exp": now_unix() + 600}),
        )
    };
    for aud in [json!("herald"), json!(["crm", "herald"])] {
        let t = with_aud(aud.clone());
        assert_eq!(status_of(&app, &t).await.0, StatusCode::OK, "{aud}");
    }
    assert_eq!(
        status_of(&app, &with_aud(json!(["crm"]))).await.0,
        StatusCode::UNAUTHORIZED
    );
    let t = with_aud(json!("herald"));
    for header in [
        format!("Bearer {t}"),
        format!("BEARER {t}"),
        format!("bearer  {t}"),
    ] {
        assert_eq!(
            get_with(&app, "/api/notifications", &header).await.0,
            StatusCode::OK
        );
    }
    for header in [
        format!("Bearer{t}"),
        format!("Basic {t}"),
        format!("Bearer {t} x"),
    ] {
        assert_eq!(
            get_with(&app, "/api/notifications", &header).await.0,
            StatusCode::UNAUTHORIZED,
            "{header:.12}"
        );
    }
}
