//! "Everything after": a reader that remembers the last notification it saw never misses nor
//! repeats one, also while many are created for the same user at once.

use crate::helpers::*;
use reqwest::StatusCode;
use serde_json::json;
use std::collections::HashSet;

#[tokio::test]
async fn after_replays_in_order_and_refuses_positions_it_cannot_replay_from() {
    let app = spawn_app().await;
    let alice = token("alice", &[], None);
    let mut ids = Vec::new();
    for i in 0..5 {
        ids.push(
            app.notify("alice", &format!("n{i}")).await["id"]
                .as_str()
                .unwrap()
                .to_owned(),
        );
    }
    let bobs = app.notify("bob", "bob's").await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let a = app.inbox(&alice, &format!("?after={}", ids[0])).await;
    assert_eq!(a.status, StatusCode::OK);
    let got: Vec<&str> = a.body["notifications"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["id"].as_str().unwrap())
        .collect();
    assert_eq!(got, &ids[1..], "oldest first, exactly the ones after");
    assert_eq!(a.body["has_more"], false);
    let paged = app
        .inbox(&alice, &format!("?after={}&limit=2", ids[0]))
        .await
        .body;
    assert_eq!(paged["notifications"].as_array().unwrap().len(), 2);
    assert_eq!(paged["has_more"], true);

    for bad in [uuid::Uuid::new_v4().to_string(), bobs] {
        let g = app.inbox(&alice, &format!("?after={bad}")).await;
        assert_eq!(g.status, StatusCode::GONE, "unknown or foreign position");
        assert!(g.body["detail"].as_str().unwrap().contains("refetch"));
    }
}

#[tokio::test]
async fn concurrent_creation_for_one_user_keeps_everything_after_exact() {
    let app = std::sync::Arc::new(spawn_app().await);
    let alice = token("alice", &["staff"], None);
    const WRITERS: usize = 8;
    const EACH: usize = 25;
    let anchor = app.notify("alice", "anchor").await;
    let mut writers = Vec::new();
    for w in 0..WRITERS {
        let app = app.clone();
        writers.push(tokio::spawn(async move {
            for i in 0..EACH {
                // Personal and role notifications interleave in one order.
                let body = if i % 3 == 0 {
                    json!({"roles": ["staff"], "type": "t", "title": format!("w{w}-{i}"), "message": ""})
                } else {
                    json!({"recipients": ["alice"], "type": "t", "title": format!("w{w}-{i}"), "message": ""})
                };
                app.publish(body).await;
            }
        }));
    }
    // Read "everything after the last one seen" while the writers run, and once more after.
    let mut seen: Vec<(String, i64)> = vec![(
        anchor["id"].as_str().unwrap().to_owned(),
        anchor["notification"]["seq"].as_i64().unwrap(),
    )];
    loop {
        let finished_before_reading = writers.iter().all(|w| w.is_finished());
        loop {
            let last = &seen.last().unwrap().0;
            let page = app
                .inbox(&alice, &format!("?after={last}&limit=100"))
                .await
                .body;
            seen.extend(page["notifications"].as_array().unwrap().iter().map(|n| {
                (
                    n["id"].as_str().unwrap().to_owned(),
                    n["seq"].as_i64().unwrap(),
                )
            }));
            if page["has_more"] == false {
                break;
            }
        }
        if finished_before_reading {
            break;
        }
    }
    seen.remove(0);
    for w in writers {
        w.await.unwrap();
    }
    let unique: HashSet<&str> = seen.iter().map(|(id, _)| id.as_str()).collect();
    assert_eq!(unique.len(), seen.len(), "no notification was read twice");
    assert_eq!(seen.len(), WRITERS * EACH, "no notification was missed");
    assert!(
        seen.windows(2).all(|w| w[0].1 < w[1].1),
        "positions only grow"
    );
}
