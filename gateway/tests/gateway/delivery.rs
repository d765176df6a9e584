//! Delivery through nginx and two gateways: every tab of the right user, nobody else's; role and
//! broadcast audiences; events; mark_read echoed to every tab; ping and unknown commands.

use crate::helpers::*;
use serde_json::json;

#[tokio::test]
async fn both_tabs_of_a_user_on_two_gateways_get_each_notification_and_every_read() {
    let s = stack().await;
    let (a, b) = (s.gateway(|_| {}).await, s.gateway(|_| {}).await);
    let nginx = Nginx::start(
        &s.api.to_string(),
        &[a.addr.to_string(), b.addr.to_string()],
    )
    .await;
    let alice = token("alice", &[]);
    // Connect directly to each gateway, and once more through nginx.
    let mut on_a = open(&a.addr.to_string(), &alice, None).await;
    let mut on_b = open(&b.addr.to_string(), &alice, None).await;
    let mut via_nginx = open(&format!("127.0.0.1:{}", nginx.port), &alice, None).await;
    let mut bob = open(&b.addr.to_string(), &token("bob", &[]), None).await;

    let created = s.notify("alice", "Goal assigned").await;
    for tab in [&mut on_a, &mut on_b, &mut via_nginx] {
        let frame = tab.next().await;
        assert_eq!(
            frame,
            json!({"type": "new_notification", "notification": created["notification"]})
        );
    }
    let id = created["id"].as_str().unwrap();
    on_a.send(&format!("mark_read:{id}")).await;
    for tab in [&mut on_a, &mut on_b, &mut via_nginx] {
        assert_eq!(
            tab.next().await,
            json!({"type": "marked_read", "notification_id": id})
        );
    }
    // Bob saw none of it: the next thing he gets is his own.
    s.notify("bob", "for bob").await;
    assert_eq!(bob.next().await["notification"]["title"], "for bob");
    assert!(
        !nginx.logs().contains(&alice),
        "the token never reaches nginx's logs"
    );
}

#[tokio::test]
async fn role_and_broadcast_audiences_reach_exactly_the_right_clients() {
    let s = stack().await;
    let gw = s.gateway(|_| {}).await;
    let addr = gw.addr.to_string();
    let mut admin = open(&addr, &token("admin-1", &["admin"]), None).await;
    let mut agent = open(&addr, &token("agent-1", &["agent"]), None).await;
    s.publish(
        json!({"roles": ["admin"], "type": "new_ticket", "title": "for admins", "message": ""}),
    )
    .await;
    s.publish(json!({"broadcast": true, "type": "system_announcement", "title": "for all", "message": ""})).await;
    assert_eq!(admin.next().await["notification"]["title"], "for admins");
    assert_eq!(admin.next().await["notification"]["title"], "for all");
    assert_eq!(
        agent.next().await["notification"]["title"],
        "for all",
        "the admin one never reached the agent"
    );
    s.event(json!({"event": "new_ticket", "roles": ["agent"], "data": {"ticket_id": 9}}))
        .await;
    assert_eq!(
        agent.next().await,
        json!({"type": "event", "event": "new_ticket", "data": {"ticket_id": 9}})
    );
}

#[tokio::test]
async fn ping_gets_pong_and_bad_commands_get_an_error_that_changes_nothing() {
    let s = stack().await;
    let gw = s.gateway(|_| {}).await;
    let addr = gw.addr.to_string();
    let mut alice = open(&addr, &token("alice", &[]), None).await;
    alice.send("ping").await;
    assert_eq!(alice.next().await, json!("pong"));
    alice.send("subscribe:everything").await;
    assert_eq!(
        alice.next().await,
        json!({"type": "error", "message": "unknown command"})
    );
    alice.send("mark_read:not-a-uuid").await;
    assert_eq!(alice.next().await["type"], "error");
    let bobs = s.notify("bob", "bob's").await;
    alice
        .send(&format!("mark_read:{}", bobs["id"].as_str().unwrap()))
        .await;
    assert_eq!(
        alice.next().await,
        json!({"type": "error", "message": "Notification not found"})
    );
    let unread: serde_json::Value = s
        .http
        .get(format!("http://{}/api/notifications", s.api))
        .bearer_auth(token("bob", &[]))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        unread["unread_count"], 1,
        "bob's notification is still unread"
    );
}
