//! Resume: `since=<last id seen>` replays every missed notification in order before live ones,
//! without duplicates; an impossible position gets a `refetch` message.

use crate::helpers::*;
use serde_json::Value;
use std::collections::HashSet;

fn title(v: &Value) -> String {
    v["notification"]["title"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

#[tokio::test]
async fn reconnecting_with_since_replays_exactly_the_missed_ones_in_order() {
    let s = stack().await;
    let gw = s.gateway(|_| {}).await;
    let addr = gw.addr.to_string();
    let alice = token("alice", &[]);
    let mut tab = open(&addr, &alice, None).await;
    let seen = s.notify("alice", "seen").await;
    assert_eq!(title(&tab.next().await), "seen");
    tab.close().await;
    for i in 0..50 {
        s.notify("alice", &format!("missed-{i}")).await;
    }
    let mut back = open(&addr, &alice, Some(seen["id"].as_str().unwrap())).await;
    for i in 0..50 {
        assert_eq!(title(&back.next().await), format!("missed-{i}"));
    }
    s.notify("alice", "live").await;
    assert_eq!(
        title(&back.next().await),
        "live",
        "live ones follow, nothing repeated"
    );
}

#[tokio::test]
async fn notifications_published_during_a_resume_arrive_once_each_in_order() {
    let s = std::sync::Arc::new(stack().await);
    let gw = s.gateway(|_| {}).await;
    let addr = gw.addr.to_string();
    let alice = token("alice", &[]);
    let first = s.notify("alice", "n-0").await;
    for i in 1..=20 {
        s.notify("alice", &format!("n-{i}")).await;
    }
    // 100 more while the client reconnects and replays.
    let writer = {
        let s = s.clone();
        tokio::spawn(async move {
            for i in 21..=120 {
                s.notify("alice", &format!("n-{i}")).await;
            }
        })
    };
    let mut tab = open(&addr, &alice, Some(first["id"].as_str().unwrap())).await;
    let mut got = Vec::new();
    while got.len() < 120 {
        let frame = tab.next().await;
        assert_eq!(frame["type"], "new_notification", "{frame}");
        got.push(frame["notification"]["seq"].as_i64().unwrap());
    }
    writer.await.unwrap();
    let unique: HashSet<i64> = got.iter().copied().collect();
    assert_eq!(unique.len(), 120, "each exactly once");
    assert!(got.windows(2).all(|w| w[0] < w[1]), "in order");
}

#[tokio::test]
async fn an_unknown_or_foreign_position_gets_a_refetch_message() {
    let s = stack().await;
    let gw = s.gateway(|_| {}).await;
    let addr = gw.addr.to_string();
    let bobs = s.notify("bob", "bob's").await;
    for since in [
        uuid::Uuid::new_v4().to_string(),
        bobs["id"].as_str().unwrap().to_owned(),
        "garbage".to_owned(),
    ] {
        let mut tab = open(&addr, &token("alice", &[]), Some(&since)).await;
        let frame = tab.next().await;
        assert_eq!(frame["type"], "refetch", "{since}: {frame}");
    }
}
