//! "Everything after": a reader that remembers the last notification it saw never misses nor
//! repeats one, also while many are created for the same user at once, and while writers with
//! no lock between them stall or abort.

use crate::helpers::*;
use herald_api::domain::{Audience, NewNotification, Recipient};
use herald_api::publishing::store;
use reqwest::StatusCode;
use serde_json::{Value, json};
use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

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
        drain(&app, &alice, &mut seen).await;
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

/// One writer's transaction: what it stores and how it ends.
#[derive(Clone, Copy)]
enum Fate {
    Commit,
    /// Holds its transaction open (its position taken) before committing.
    SlowCommit,
    Abort,
    SlowAbort,
}

fn fate(n: usize) -> Fate {
    match n % 7 {
        0 => Fate::SlowCommit,
        1 => Fate::Abort,
        2 => Fate::SlowAbort,
        _ => Fate::Commit,
    }
}

/// Reads "everything after" the last of `seen` until no more follow, adding to `seen`.
async fn drain(app: &TestApp, token: &str, seen: &mut Vec<(String, i64)>) {
    loop {
        let last = &seen.last().expect("an anchor").0;
        let page = app
            .inbox(token, &format!("?after={last}&limit=50"))
            .await
            .body;
        seen.extend(page["notifications"].as_array().unwrap().iter().map(|n| {
            (
                n["id"].as_str().unwrap().to_owned(),
                n["seq"].as_i64().unwrap(),
            )
        }));
        if page["has_more"] == false {
            return;
        }
    }
}

/// Writers commit concurrently with no lock between them, some holding their transaction open
/// after taking their positions, some aborting; meanwhile readers page "everything after" over
/// HTTP and the relay publishes to Redis. Every reader, and the relay, must see exactly the
/// committed notifications, each once, in increasing position.
#[tokio::test]
async fn slow_and_aborted_writers_never_make_a_reader_miss_or_repeat() {
    const WRITERS: usize = 10;
    const EACH: usize = 14;
    let app = Arc::new(spawn_app().await);
    let alice = token("alice", &["staff"], None);
    let mut redis = subscribe(&[
        app.user_channel("alice"),
        app.role_channel("staff"),
        app.broadcast_channel(),
    ])
    .await;
    let anchor = app.notify("alice", "anchor").await;
    let anchor_id = anchor["id"].as_str().unwrap().to_owned();
    let anchor_seq = anchor["notification"]["seq"].as_i64().unwrap();
    let (_, first) = redis.next().await;
    assert_eq!(first["notification"]["id"], anchor["id"]);

    let pool = sqlx::PgPool::connect(&app.database_url).await.unwrap();
    let writing = Arc::new(AtomicBool::new(true));
    let mut writers = Vec::new();
    for w in 0..WRITERS {
        let pool = pool.clone();
        writers.push(tokio::spawn(async move {
            let mut committed = Vec::new();
            for i in 0..EACH {
                let audiences = [
                    Audience::Users(vec![Recipient {
                        id: "alice".to_owned(),
                        email: None,
                        name: None,
                    }]),
                    Audience::Roles(vec!["staff".to_owned()]),
                    Audience::Broadcast,
                ];
                let batch: Vec<NewNotification> = (0..=(w + i) % 3)
                    .map(|k| {
                        new_notification(audiences[(i + k) % 3].clone(), &format!("{w}-{i}-{k}"))
                    })
                    .collect();
                let items: Vec<(&str, &NewNotification)> =
                    batch.iter().map(|n| ("test", n)).collect();
                let mut tx = pool.begin().await.unwrap();
                let created = store(&mut tx, &items).await.unwrap();
                let fate = fate(w * EACH + i);
                if matches!(fate, Fate::SlowCommit | Fate::SlowAbort) {
                    // A writer that stalls between taking its positions and ending.
                    sqlx::query("SELECT pg_sleep(0.05)")
                        .execute(&mut *tx)
                        .await
                        .unwrap();
                }
                if matches!(fate, Fate::Commit | Fate::SlowCommit) {
                    tx.commit().await.unwrap();
                    committed.extend(created.into_iter().map(|c| c.id.to_string()));
                } else {
                    tx.rollback().await.unwrap();
                }
            }
            committed
        }));
    }
    let mut readers = Vec::new();
    for _ in 0..3 {
        let (app, alice, writing) = (app.clone(), alice.clone(), writing.clone());
        let anchor = (anchor_id.clone(), anchor_seq);
        readers.push(tokio::spawn(async move {
            let mut seen = vec![anchor];
            loop {
                let last_round = !writing.load(Ordering::SeqCst);
                drain(&app, &alice, &mut seen).await;
                if last_round {
                    break;
                }
            }
            seen.remove(0);
            seen
        }));
    }
    let mut committed = HashSet::new();
    for w in writers {
        committed.extend(w.await.unwrap());
    }
    writing.store(false, Ordering::SeqCst);
    assert!(
        committed.len() > WRITERS * EACH / 2,
        "most writers committed"
    );

    let check = |who: &str, got: &[(String, i64)]| {
        let ids: HashSet<&str> = got.iter().map(|(id, _)| id.as_str()).collect();
        assert_eq!(ids.len(), got.len(), "{who}: no notification twice");
        let want: HashSet<&str> = committed.iter().map(String::as_str).collect();
        let missed = want.difference(&ids).count();
        let extra = ids.difference(&want).count();
        assert_eq!(
            (missed, extra),
            (0, 0),
            "{who}: exactly the committed notifications (missed, not committed)"
        );
        assert!(
            got.windows(2).all(|w| w[0].1 < w[1].1),
            "{who}: positions only grow"
        );
    };
    for (r, reader) in readers.into_iter().enumerate() {
        check(&format!("reader {r}"), &reader.await.unwrap());
    }
    let mut published = Vec::new();
    while published.len() < committed.len() {
        let (_, message) = redis.next().await;
        let n = &message["notification"];
        published.push((
            n["id"].as_str().unwrap().to_owned(),
            n["seq"].as_i64().unwrap(),
        ));
    }
    check("the relay", &published);
    redis.close().await;
}

/// A logical restore into a younger Postgres cluster brings positions larger than the ones its
/// transaction ids give: the api moves the scheme past them at start-up, so "after" stays exact.
#[tokio::test]
async fn new_positions_follow_restored_ones() {
    let db = fresh_database().await;
    let before = spawn_with(test_config(&db, &redis_url())).await;
    let old = before.notify("alice", "restored").await;
    drop(before);
    let pool = sqlx::PgPool::connect(&db).await.unwrap();
    let restored: i64 =
        sqlx::query_scalar("UPDATE notifications SET seq = seq + (1::bigint << 52) RETURNING seq")
            .fetch_one(&pool)
            .await
            .unwrap();
    pool.close().await;

    let app = spawn_with(test_config(&db, &redis_url())).await;
    let new = app.notify("alice", "after the restore").await;
    assert!(new["notification"]["seq"].as_i64().unwrap() > restored);
    let alice = token("alice", &[], None);
    let page = app
        .inbox(&alice, &format!("?after={}", old["id"].as_str().unwrap()))
        .await
        .body;
    let ids: Vec<&Value> = page["notifications"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| &n["id"])
        .collect();
    assert_eq!(ids, vec![&new["id"]]);
}

/// An id shown on a page of the inbox is a safe `since`/`after` cursor: the page never shows a
/// notification that a still-running transaction could be overtaken by (it waits for that
/// transaction, 2 s at most, then leaves the newer one out).
#[tokio::test]
async fn the_list_shows_nothing_a_running_writer_could_still_overtake() {
    let app = spawn_app().await;
    let alice = token("alice", &[], None);
    let pool = sqlx::PgPool::connect(&app.database_url).await.unwrap();
    let early = personal("alice", "early");
    // Another priority: A holds alice's counter row of its (type, priority) until it ends.
    let late = herald_api::domain::NewNotification {
        priority: herald_core::wire::Priority::High,
        ..personal("alice", "late")
    };
    // A takes the smaller position and stays open; B commits after it took its own.
    let mut a = pool.begin().await.unwrap();
    let first = store(&mut a, &[("test", &early)]).await.unwrap().remove(0);
    let mut b = pool.begin().await.unwrap();
    let second = store(&mut b, &[("test", &late)]).await.unwrap().remove(0);
    assert!(first.notification.seq < second.notification.seq);
    b.commit().await.unwrap();

    let titles = async || -> Vec<String> {
        let page = app.inbox(&alice, "").await.body;
        page["notifications"]
            .as_array()
            .unwrap()
            .iter()
            .map(|n| n["title"].as_str().unwrap().to_owned())
            .collect()
    };
    assert!(
        titles().await.is_empty(),
        "while A runs, B is held back: an id of B as a cursor would skip A"
    );
    a.commit().await.unwrap();
    assert_eq!(titles().await, ["late", "early"]);
    let after_late = app
        .inbox(&alice, &format!("?after={}", first.id))
        .await
        .body;
    assert_eq!(after_late["notifications"][0]["title"], "late");
}
