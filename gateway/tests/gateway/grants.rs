//! A token's grant (user, roles, expiry) bounds everything done with it, on both protocols: a
//! refresh replaces the grant (dropped roles are left before it is acknowledged, another user is
//! refused), Socket.IO sockets end at expiry like raw WebSockets, and claims or headers that fail
//! the edge's rules are refused before anything is joined.

use crate::helpers::*;
use herald_core::auth::now_unix;
use serde_json::json;
use std::time::Duration;

fn url(port: u16) -> String {
    format!("http://127.0.0.1:{port}")
}

/// A token of `sub` signed with the test secret, with any claims (a `sub` the minting helper
/// would refuse, say).
fn raw_token(claims: serde_json::Value) -> String {
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(SECRET.as_bytes()),
    )
    .unwrap()
}

#[tokio::test]
async fn a_refresh_with_fewer_roles_leaves_the_dropped_roles_channels() {
    let s = stack().await;
    let gw = s.gateway(|_| {}).await;
    let addr = gw.addr.to_string();
    let mut tab = open(&addr, &token("sam", &["secadm", "ops"]), None).await;
    s.publish(json!({"roles": ["secadm"], "type": "t", "title": "for secadm", "message": ""}))
        .await;
    assert_eq!(tab.next().await["notification"]["title"], "for secadm");

    tab.send(&format!("auth:{}", token("sam", &["ops"]))).await;
    let ack = tab.next().await;
    assert_eq!(ack["type"], "token_refreshed", "{ack}");
    // Published in this order: had the secadm one arrived, it would come first.
    s.publish(json!({"roles": ["secadm"], "type": "t", "title": "secadm only", "message": ""}))
        .await;
    s.publish(json!({"roles": ["ops"], "type": "t", "title": "for ops", "message": ""}))
        .await;
    s.notify("sam", "for sam").await;
    assert_eq!(tab.next().await["notification"]["title"], "for ops");
    assert_eq!(tab.next().await["notification"]["title"], "for sam");

    // A role the fresh token adds is joined.
    tab.send(&format!("auth:{}", token("sam", &["ops", "audit"])))
        .await;
    assert_eq!(tab.next().await["type"], "token_refreshed");
    s.publish(json!({"roles": ["audit"], "type": "t", "title": "for audit", "message": ""}))
        .await;
    assert_eq!(tab.next().await["notification"]["title"], "for audit");

    // Another user's token does not take over the connection.
    tab.send(&format!("auth:{}", token("mallory", &["secadm"])))
        .await;
    let refused = tab.next().await;
    assert_eq!(refused["type"], "error");
    assert_eq!(refused["message"], "the new token is for another user");
    s.publish(json!({"roles": ["secadm"], "type": "t", "title": "still not", "message": ""}))
        .await;
    s.notify("sam", "still sam's").await;
    assert_eq!(tab.next().await["notification"]["title"], "still sam's");
}

#[tokio::test]
async fn a_subject_with_a_nul_and_any_case_of_bearer_on_the_websocket_handshake() {
    let s = stack().await;
    let gw = s.gateway(|_| {}).await;
    let addr = gw.addr.to_string();
    let bad = raw_token(json!({"sub": "nul\u{0}user", "exp": now_unix() + 600}));
    assert_eq!(
        try_open(&addr, &bad, None, None).await.err(),
        Some(401),
        "refused at the handshake"
    );
    assert_eq!(
        gateway_metric(&addr, "herald_gateway_connections").await,
        0.0
    );
    // The token in the Authorization header, scheme in capitals (RFC 9110: case-insensitive).
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let good = token("alice", &[]);
    for scheme in ["BEARER", "bearer", "Bearer"] {
        let mut req = format!("ws://{addr}/api/notifications/ws")
            .into_client_request()
            .unwrap();
        req.headers_mut()
            .insert("authorization", format!("{scheme} {good}").parse().unwrap());
        let (mut ws, _) = tokio_tungstenite::connect_async(req)
            .await
            .unwrap_or_else(|e| panic!("{scheme}: {e}"));
        use futures::StreamExt;
        let hello = ws.next().await.unwrap().unwrap();
        assert!(hello.to_text().unwrap().contains("connection_established"));
    }
}

#[tokio::test]
async fn a_socketio_socket_ends_at_its_tokens_expiry_with_a_reason() {
    let s = stack().await;
    let gw = s.gateway(|_| {}).await;
    let port = gw.addr.port();
    let exp = now_unix() + 3;
    let short = raw_token(json!({"sub": "brief", "exp": exp}));
    let mut client = SioClient::start(&url(port), "/user", &short, Some(&["websocket"]), "auth");
    client.next("connect").await;
    let (event, data) = client.event().await;
    assert_eq!(event, "token_expired");
    assert!(data["message"].as_str().unwrap().contains("expired"));
    let disconnect = client.next("disconnect").await;
    assert_eq!(disconnect["reason"], "io server disconnect");
    let late = now_unix().saturating_sub(exp);
    assert!(late <= 1, "disconnected {late} s after exp");
    client.stop().await;
}

#[tokio::test]
async fn a_socketio_refresh_keeps_the_socket_past_the_old_expiry_and_a_revoked_role_ends_it() {
    let s = stack().await;
    let gw = s.gateway(|_| {}).await;
    let port = gw.addr.port();
    let exp = now_unix() + 3;
    let short = raw_token(json!({"sub": "kay", "roles": ["admin"], "exp": exp}));
    let mut user = SioClient::start(&url(port), "/user", &short, Some(&["websocket"]), "auth");
    user.next("connect").await;
    user.emit("auth", json!({"token": token("kay", &["admin"])}))
        .await;
    let ack = user.next("ack").await;
    assert_eq!(ack["data"]["ok"], true, "{ack}");
    // Past the first token's expiry: still connected, still served.
    // (Waiting for the clock itself: what is tested is time passing.)
    tokio::time::sleep(Duration::from_secs(exp.saturating_sub(now_unix()) + 2)).await;
    s.notify("kay", "after the old expiry").await;
    let (event, data) = user.event().await;
    assert_eq!(event, "new_notification");
    assert_eq!(data["title"], "after the old expiry");

    // Another user's token is refused in the acknowledgement; the socket stays.
    user.emit("auth", json!({"token": token("mallory", &[])}))
        .await;
    let ack = user.next("ack").await;
    assert_eq!(ack["data"]["ok"], false);
    assert_eq!(ack["data"]["error"], "the new token is for another user");

    // On /admin, a fresh token without the role ends the socket, with the reason.
    let mut admin = SioClient::start(
        &url(port),
        "/admin",
        &token("kay", &["admin"]),
        Some(&["websocket"]),
        "auth",
    );
    admin.next("connect").await;
    admin
        .emit("auth", json!({"token": token("kay", &[])}))
        .await;
    let (event, _) = admin.event().await;
    assert_eq!(event, "role_revoked");
    assert_eq!(
        admin.next("disconnect").await["reason"],
        "io server disconnect"
    );
    user.stop().await;
    admin.stop().await;
}

#[tokio::test]
async fn a_socketio_handshake_with_a_bad_subject_is_refused() {
    let s = stack().await;
    let gw = s.gateway(|_| {}).await;
    let bad = raw_token(json!({"sub": "nul\u{0}user", "exp": now_unix() + 600}));
    let mut client = SioClient::start(&url(gw.addr.port()), "/user", &bad, None, "auth");
    let refused = client.next("connect_error").await;
    assert!(
        refused["message"].as_str().unwrap().contains("subject"),
        "{refused}"
    );
    client.stop().await;
}

#[tokio::test]
async fn an_audience_array_holding_the_configured_one_opens_a_websocket() {
    let s = stack().await;
    let gw = s.gateway(|c| c.jwt.audience = Some("herald".into())).await;
    let addr = gw.addr.to_string();
    let with_aud = |aud: serde_json::Value| {
        raw_token(json!({"sub": "alice", "aud": aud, "exp": now_unix() + 600}))
    };
    open(&addr, &with_aud(json!(["crm", "herald"])), None).await;
    assert_eq!(
        try_open(&addr, &with_aud(json!(["crm"])), None, None)
            .await
            .err(),
        Some(401)
    );
}
