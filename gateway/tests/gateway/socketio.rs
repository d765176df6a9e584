//! Socket.IO with the real, unmodified socket.io-client 4.x: the support-desk seed's dashboards.

use crate::helpers::*;
use serde_json::json;

fn url(port: u16) -> String {
    format!("http://127.0.0.1:{port}")
}

#[tokio::test]
async fn the_admin_dashboard_gets_ticket_events_through_nginx_and_upgrades_to_websocket() {
    let s = stack().await;
    let (a, b) = (s.gateway(|_| {}).await, s.gateway(|_| {}).await);
    let nginx = Nginx::start(
        &s.api.to_string(),
        &[a.addr.to_string(), b.addr.to_string()],
    )
    .await;
    let mut admin = SioClient::start(
        &url(nginx.port),
        "/admin",
        &token("admin-1", &["admin"]),
        None,
        "auth",
    );
    // Engine.IO opens on long-polling, then upgrades; the namespace `connect` may come before
    // or after the upgrade.
    let (mut connected, mut upgraded) = (false, false);
    while !(connected && upgraded) {
        let line = admin.next_any().await;
        match line["kind"].as_str() {
            Some("connect") => connected = true,
            Some("upgrade") => {
                assert_eq!(line["transport"], "websocket");
                upgraded = true;
            }
            _ => {}
        }
    }
    let ticket =
        json!({"id": 17, "title": "Printer on fire", "status": "open", "reporter": "reporter-1"});
    s.event(json!({"event": "new_ticket", "roles": ["admin"], "data": ticket}))
        .await;
    assert_eq!(
        admin.event().await,
        ("new_ticket".to_owned(), ticket.clone())
    );
    let update = json!({"id": 17, "status": "in_progress"});
    s.event(json!({"event": "ticket_updated", "roles": ["admin"], "data": update}))
        .await;
    assert_eq!(admin.event().await, ("ticket_updated".to_owned(), update));
    admin.stop().await;
}

#[tokio::test]
async fn a_reporter_on_user_gets_only_its_own_ticket_events_and_notifications() {
    let s = stack().await;
    let gw = s.gateway(|_| {}).await;
    let port = gw.addr.port();
    let mut reporter =
        SioClient::start(&url(port), "/user", &token("reporter-1", &[]), None, "auth");
    reporter.next("connect").await;
    s.event(json!({"event": "ticket_updated", "recipients": ["reporter-2"], "data": {"id": 99}}))
        .await;
    s.event(json!({"event": "ticket_updated", "recipients": ["reporter-1"], "data": {"id": 17, "status": "closed"}})).await;
    s.event(json!({"event": "new_response", "recipients": ["reporter-1"], "data": {"id": 17, "message": "Fixed"}})).await;
    assert_eq!(
        reporter.event().await,
        (
            "ticket_updated".to_owned(),
            json!({"id": 17, "status": "closed"})
        ),
        "reporter-2's update never arrived"
    );
    assert_eq!(reporter.event().await.0, "new_response");
    let n = s.notify("reporter-1", "Your ticket was answered").await;
    let (name, payload) = reporter.event().await;
    assert_eq!(
        (name.as_str(), &payload),
        ("new_notification", &n["notification"])
    );
    reporter.stop().await;
}

#[tokio::test]
async fn a_token_without_the_role_is_refused_on_its_namespace_with_a_clear_message() {
    let s = stack().await;
    let gw = s.gateway(|_| {}).await;
    let port = gw.addr.port();
    let mut agent = SioClient::start(
        &url(port),
        "/admin",
        &token("agent-1", &["agent"]),
        None,
        "auth",
    );
    assert_eq!(
        agent.next("connect_error").await["message"],
        "namespace /admin needs the role 'admin'"
    );
    agent.stop().await;
    let mut forged = SioClient::start(&url(port), "/user", "not-a-token", None, "auth");
    assert_eq!(
        forged.next("connect_error").await["message"],
        "malformed token"
    );
    forged.stop().await;
    let mut odd = SioClient::start(
        &url(port),
        "/no such role",
        &token("x", &["admin"]),
        None,
        "auth",
    );
    assert!(
        odd.next("connect_error").await["message"]
            .as_str()
            .unwrap()
            .contains("needs the role")
    );
    odd.stop().await;
}

#[tokio::test]
async fn long_polling_only_and_a_query_token_work_for_old_clients() {
    let s = stack().await;
    let gw = s.gateway(|_| {}).await;
    let port = gw.addr.port();
    let mut admin = SioClient::start(
        &url(port),
        "/admin",
        &token("admin-1", &["admin"]),
        Some(&["polling"]),
        "query",
    );
    assert_eq!(admin.next("connect").await["transport"], "polling");
    s.event(json!({"event": "new_ticket", "roles": ["admin"], "data": {"id": 1}}))
        .await;
    assert_eq!(
        admin.event().await,
        ("new_ticket".to_owned(), json!({"id": 1}))
    );
    admin.stop().await;
}

#[tokio::test]
async fn admins_on_two_gateways_both_get_the_same_event() {
    let s = stack().await;
    let (a, b) = (s.gateway(|_| {}).await, s.gateway(|_| {}).await);
    let mut on_a = SioClient::start(
        &url(a.addr.port()),
        "/admin",
        &token("admin-1", &["admin"]),
        None,
        "auth",
    );
    let mut on_b = SioClient::start(
        &url(b.addr.port()),
        "/admin",
        &token("admin-2", &["admin"]),
        None,
        "auth",
    );
    on_a.next("connect").await;
    on_b.next("connect").await;
    s.event(json!({"event": "new_ticket", "roles": ["admin"], "data": {"id": 5}}))
        .await;
    assert_eq!(on_a.event().await.1, json!({"id": 5}));
    assert_eq!(on_b.event().await.1, json!({"id": 5}));
}

#[tokio::test]
async fn after_a_gateway_restart_the_client_reconnects_by_itself() {
    let s = stack().await;
    let port = free_port();
    let listen: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let gw = s
        .gateway(|c| {
            c.listen = listen;
            c.drain_secs = 1;
        })
        .await;
    let mut admin = SioClient::start(
        &url(port),
        "/admin",
        &token("admin-1", &["admin"]),
        None,
        "auth",
    );
    admin.next("connect").await;
    gw.stop().await;
    admin.next("disconnect").await;
    let _again = s.gateway(|c| c.listen = listen).await;
    admin.next("reconnect").await;
    admin.next("connect").await;
    s.event(json!({"event": "new_ticket", "roles": ["admin"], "data": {"id": 8}}))
        .await;
    assert_eq!(admin.event().await.1, json!({"id": 8}));
}

#[tokio::test]
async fn garbage_engineio_requests_get_clear_errors_and_the_gateway_keeps_serving() {
    let s = stack().await;
    let gw = s.gateway(|c| c.max_polling_bytes = 4096).await;
    let base = format!("http://{}/socket.io/", gw.addr);
    let http = reqwest::Client::new();
    let no_eio = http
        .get(format!("{base}?transport=polling"))
        .send()
        .await
        .unwrap();
    assert_eq!(no_eio.status(), 400);
    let open = http
        .get(format!("{base}?EIO=4&transport=polling"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(open.starts_with('0'), "{open}");
    let sid: serde_json::Value = serde_json::from_str(&open[1..]).unwrap();
    let sid = sid["sid"].as_str().unwrap().to_owned();
    let big = http
        .post(format!("{base}?EIO=4&transport=polling&sid={sid}"))
        .body("4".repeat(10_000))
        .send()
        .await
        .unwrap();
    assert_eq!(big.status(), 413, "oversized polling body");
    let open = http
        .get(format!("{base}?EIO=4&transport=polling"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let sid: serde_json::Value = serde_json::from_str(&open[1..]).unwrap();
    let sid = sid["sid"].as_str().unwrap().to_owned();
    let garbage = http
        .post(format!("{base}?EIO=4&transport=polling&sid={sid}"))
        .body("\u{1e}\u{1e}zz{{{")
        .send()
        .await
        .unwrap();
    assert_eq!(garbage.status(), 400, "unparsable packets");
    let unknown = http
        .get(format!("{base}?EIO=4&transport=polling&sid=nope"))
        .send()
        .await
        .unwrap();
    assert_eq!(unknown.status(), 400, "unknown session");
    let foreign = http
        .get(format!("{base}?EIO=4&transport=polling"))
        .header("origin", "https://evil.example")
        .send()
        .await
        .unwrap();
    assert_eq!(foreign.status(), 403, "a foreign Origin");
    // Still serving.
    let mut admin = SioClient::start(
        &format!("http://{}", gw.addr),
        "/admin",
        &token("admin-1", &["admin"]),
        None,
        "auth",
    );
    admin.next("connect").await;
    admin.stop().await;
}
