//! The inbox endpoints, field for field: list, paging, filters, stats, read, all read, delete,
//! preferences, connection stats, and the per-user view of role and broadcast notifications.

use crate::helpers::*;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

fn keys(v: &Value) -> Vec<String> {
    let mut k: Vec<String> = v.as_object().expect("an object").keys().cloned().collect();
    k.sort();
    k
}

#[tokio::test]
async fn an_empty_inbox_has_the_seeds_shape() {
    let app = spawn_app().await;
    let a = app.inbox(&token("alice", &[], None), "").await;
    assert_eq!(a.status, StatusCode::OK);
    assert_eq!(
        a.body,
        json!({"notifications": [], "total": 0, "unread_count": 0, "page": 1, "per_page": 20})
    );
    let s = app
        .call(
            Method::GET,
            "/api/notifications/stats",
            Some(&token("alice", &[], None)),
            None,
        )
        .await;
    assert_eq!(
        s.body,
        json!({"total_count": 0, "unread_count": 0, "by_type": {}, "by_priority": {}})
    );
}

#[tokio::test]
async fn the_list_pages_newest_first_and_filters() {
    let app = spawn_app().await;
    let alice = token("alice", &[], None);
    for i in 0..25 {
        let (kind, priority) = if i % 5 == 0 {
            ("review_due_soon", "low")
        } else {
            ("goal_assigned", "high")
        };
        app.publish(json!({
            "recipients": ["alice"], "type": kind, "priority": priority,
            "title": format!("n{i}"), "message": "m", "action_url": "/goals/1",
            "data": {"i": i}, "triggered_by_name": "John Doe"
        }))
        .await;
    }
    app.notify("bob", "not for alice").await;

    let first = app.inbox(&alice, "").await.body;
    assert_eq!(
        (first["total"].clone(), first["unread_count"].clone()),
        (json!(25), json!(25))
    );
    assert_eq!(
        (first["page"].clone(), first["per_page"].clone()),
        (json!(1), json!(20))
    );
    let titles: Vec<&str> = first["notifications"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["title"].as_str().unwrap())
        .collect();
    assert_eq!(titles.len(), 20);
    assert_eq!(titles[0], "n24", "newest first");
    assert_eq!(titles[19], "n5");
    let n = &first["notifications"][0];
    assert_eq!(
        keys(n),
        [
            "action_url",
            "created_at",
            "data",
            "id",
            "is_read",
            "message",
            "priority",
            "seq",
            "title",
            "triggered_by_name",
            "type"
        ]
    );
    assert_eq!(n["triggered_by_name"], "John Doe");
    assert_eq!(n["data"], json!({"i": 24}));
    assert_eq!(n["is_read"], false);

    let second = app.inbox(&alice, "?skip=20&limit=20").await.body;
    assert_eq!(second["notifications"].as_array().unwrap().len(), 5);
    assert_eq!(second["page"], 2);
    assert_eq!(second["notifications"][4]["title"], "n0");

    let low = app.inbox(&alice, "?priority=low").await.body;
    assert_eq!(low["total"], 5);
    assert!(
        low["notifications"]
            .as_array()
            .unwrap()
            .iter()
            .all(|n| n["priority"] == "low")
    );
    let typed = app
        .inbox(&alice, "?notification_type=goal_assigned&limit=100")
        .await
        .body;
    assert_eq!(typed["total"], 20);
    assert_eq!(typed["notifications"].as_array().unwrap().len(), 20);
    assert_eq!(
        typed["unread_count"], 25,
        "unread_count ignores the filters"
    );
}

#[tokio::test]
async fn read_and_delete_change_counts_and_reach_every_tab_through_redis() {
    let app = spawn_app().await;
    let alice = token("alice", &[], None);
    let mut sub = subscribe(&[app.user_channel("alice")]).await;
    let ids: Vec<String> = {
        let mut v = Vec::new();
        for t in ["a", "b", "c"] {
            v.push(
                app.notify("alice", t).await["id"]
                    .as_str()
                    .unwrap()
                    .to_owned(),
            );
        }
        v
    };
    for id in &ids {
        let (channel, frame) = sub.next().await;
        assert_eq!(channel, app.user_channel("alice"));
        assert_eq!(frame["type"], "new_notification");
        assert_eq!(frame["notification"]["id"], id.as_str());
    }

    let read = app
        .call(
            Method::PUT,
            &format!("/api/notifications/{}/read", ids[0]),
            Some(&alice),
            None,
        )
        .await;
    assert_eq!(read.status, StatusCode::OK);
    assert_eq!(read.body["id"], ids[0].as_str());
    assert_eq!(read.body["is_read"], true);
    assert_eq!(
        sub.next().await.1,
        json!({"type": "marked_read", "notification_id": ids[0]})
    );

    let del = app
        .call(
            Method::DELETE,
            &format!("/api/notifications/{}", ids[1]),
            Some(&alice),
            None,
        )
        .await;
    assert_eq!(
        del.body,
        json!({"message": "Notification deleted successfully"})
    );
    assert_eq!(
        sub.next().await.1,
        json!({"type": "notification_deleted", "notification_id": ids[1]})
    );

    let stats = app
        .call(Method::GET, "/api/notifications/stats", Some(&alice), None)
        .await
        .body;
    assert_eq!(
        stats,
        json!({"total_count": 2, "unread_count": 1, "by_type": {"goal_assigned": 2}, "by_priority": {"high": 2}})
    );

    let all = app
        .call(
            Method::PUT,
            "/api/notifications/mark-all-read",
            Some(&alice),
            None,
        )
        .await;
    assert_eq!(
        all.body,
        json!({"message": "1 notifications marked as read"})
    );
    assert_eq!(
        sub.next().await.1,
        json!({"type": "marked_all_read", "count": 1})
    );
    let list = app.inbox(&alice, "").await.body;
    assert_eq!(
        (list["total"].clone(), list["unread_count"].clone()),
        (json!(2), json!(0))
    );

    let again = app
        .call(
            Method::DELETE,
            &format!("/api/notifications/{}", ids[1]),
            Some(&alice),
            None,
        )
        .await;
    assert_eq!(
        again.status,
        StatusCode::NOT_FOUND,
        "a deleted notification is gone"
    );
    sub.close().await;
}

#[tokio::test]
async fn role_and_broadcast_notifications_are_stored_once_with_per_user_read_state() {
    let app = spawn_app().await;
    let admin1 = token("admin-1", &["admin"], None);
    let admin2 = token("admin-2", &["admin"], None);
    let user = token("user-1", &[], None);
    let role = app
        .publish(
            json!({"roles": ["admin"], "type": "new_ticket", "title": "Ticket #1", "message": "m"}),
        )
        .await;
    let everyone = app
        .publish(json!({"broadcast": true, "type": "system_announcement", "priority": "urgent", "title": "Maintenance", "message": "m"}))
        .await;
    assert_eq!(
        app.stored_rows().await,
        (2, 0),
        "stored once, no per-user rows yet"
    );

    let titles = |v: &Value| -> Vec<String> {
        v["notifications"]
            .as_array()
            .unwrap()
            .iter()
            .map(|n| n["title"].as_str().unwrap().to_owned())
            .collect()
    };
    assert_eq!(
        titles(&app.inbox(&admin1, "").await.body),
        ["Maintenance", "Ticket #1"]
    );
    assert_eq!(titles(&app.inbox(&user, "").await.body), ["Maintenance"]);

    let role_id = role["id"].as_str().unwrap();
    let r = app
        .call(
            Method::PUT,
            &format!("/api/notifications/{role_id}/read"),
            Some(&admin1),
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(app.inbox(&admin1, "").await.body["unread_count"], 1);
    assert_eq!(
        app.inbox(&admin2, "").await.body["unread_count"],
        2,
        "admin-2 keeps its own state"
    );

    let no = app
        .call(
            Method::PUT,
            &format!("/api/notifications/{role_id}/read"),
            Some(&user),
            None,
        )
        .await;
    assert_eq!(
        no.status,
        StatusCode::NOT_FOUND,
        "a role notification is invisible without the role"
    );

    let b_id = everyone["id"].as_str().unwrap();
    app.call(
        Method::DELETE,
        &format!("/api/notifications/{b_id}"),
        Some(&admin2),
        None,
    )
    .await;
    assert_eq!(titles(&app.inbox(&admin2, "").await.body), ["Ticket #1"]);
    assert_eq!(
        titles(&app.inbox(&user, "").await.body),
        ["Maintenance"],
        "others keep theirs"
    );

    let all = app
        .call(
            Method::PUT,
            "/api/notifications/mark-all-read",
            Some(&user),
            None,
        )
        .await;
    assert_eq!(all.body["message"], "1 notifications marked as read");
    assert_eq!(app.inbox(&user, "").await.body["unread_count"], 0);
    assert_eq!(app.inbox(&admin1, "").await.body["unread_count"], 1);
}

#[tokio::test]
async fn preferences_keep_what_an_update_leaves_out() {
    let app = spawn_app().await;
    let alice = token("alice", &[], None);
    let path = "/api/notifications/preferences";
    let d = app.call(Method::GET, path, Some(&alice), None).await;
    assert_eq!(
        d.body,
        json!({"email_enabled": true, "digest": "off", "muted_types": []})
    );
    let u = app
        .call(
            Method::PUT,
            path,
            Some(&alice),
            Some(&json!({"digest": "hourly", "muted_types": ["review_due_soon"]})),
        )
        .await;
    assert_eq!(u.status, StatusCode::OK);
    let u2 = app
        .call(
            Method::PUT,
            path,
            Some(&alice),
            Some(&json!({"email_enabled": false})),
        )
        .await;
    assert_eq!(
        u2.body,
        json!({"email_enabled": false, "digest": "hourly", "muted_types": ["review_due_soon"]})
    );
    let bad = app
        .call(
            Method::PUT,
            path,
            Some(&alice),
            Some(&json!({"digest": "weekly"})),
        )
        .await;
    assert_eq!(bad.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(bad.body["detail"][0]["loc"], json!(["body", "digest"]));
    let bob = app
        .call(Method::GET, path, Some(&token("bob", &[], None)), None)
        .await;
    assert_eq!(bob.body["digest"], "off", "preferences are per user");
    assert_eq!(
        app.call(Method::GET, path, Some(&alice), None).await.body,
        u2.body
    );
}

#[tokio::test]
async fn connection_stats_add_up_what_live_gateways_report() {
    let app = spawn_app().await;
    let redis =
        fred::prelude::Builder::from_config(fred::prelude::Config::from_url(&redis_url()).unwrap())
            .build()
            .unwrap();
    fred::prelude::ClientLike::init(&redis).await.unwrap();
    use fred::prelude::{HashesInterface, SetsInterface, SortedSetsInterface};
    let k = herald_core::keys::Keys::new(app.prefix.clone());
    let now = chrono::Utc::now().timestamp_millis() as f64;
    // Two live gateways and one whose report expired.
    for (node, conns, users, expires) in [
        ("gw-a", 3, vec!["alice", "bob"], now + 30_000.0),
        ("gw-b", 2, vec!["alice", "carol"], now + 30_000.0),
        ("gw-dead", 50, vec!["dave"], now - 1_000.0),
    ] {
        let _: () = redis
            .zadd(
                k.presence_nodes(),
                None,
                None,
                false,
                false,
                (expires, node),
            )
            .await
            .unwrap();
        let _: () = redis
            .hset(k.presence_node(node), ("connections", conns))
            .await
            .unwrap();
        let _: () = redis
            .sadd(k.presence_node_users(node), users)
            .await
            .unwrap();
    }
    let stats = |sub: &'static str| {
        let app = &app;
        async move {
            app.call(
                Method::GET,
                "/api/notifications/connection-stats",
                Some(&token(sub, &[], None)),
                None,
            )
            .await
            .body
        }
    };
    assert_eq!(
        stats("alice").await,
        json!({"active_users": 3, "total_connections": 5, "user_online": true})
    );
    assert_eq!(
        stats("dave").await["user_online"],
        false,
        "a dead gateway is forgotten"
    );
}

#[tokio::test]
async fn the_client_and_demo_page_are_served_and_dev_tokens_exist_only_when_enabled() {
    let app = spawn_app().await;
    let page = app.http.get(app.url("/")).send().await.unwrap();
    assert_eq!(page.headers()["content-type"], "text/html; charset=utf-8");
    assert!(
        page.text()
            .await
            .unwrap()
            .contains(r#"<script type="module" src="/demo.js">"#)
    );
    let js = app.http.get(app.url("/herald.js")).send().await.unwrap();
    assert_eq!(
        js.headers()["content-type"],
        "text/javascript; charset=utf-8"
    );
    assert!(
        js.text()
            .await
            .unwrap()
            .contains("export class HeraldClient")
    );
    let off = app
        .http
        .get(app.url("/api/dev/token?sub=alice"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        off.status(),
        StatusCode::NOT_FOUND,
        "off unless HERALD_DEV_TOKENS is set"
    );

    let mut config = test_config(&fresh_database().await, &redis_url());
    config.dev_tokens = true;
    let dev = spawn_with(config).await;
    let minted: Value = dev
        .http
        .get(dev.url("/api/dev/token?sub=alice&roles=admin"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let token = minted["token"].as_str().unwrap();
    assert_eq!(
        dev.inbox(token, "").await.status,
        StatusCode::OK,
        "the minted token works"
    );
}
