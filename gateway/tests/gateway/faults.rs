//! Faults: a slow client is closed at its queue bound while others keep receiving; a killed Redis
//! subscription is restored and clients are told to refetch; a SIGKILLed gateway's clients
//! reconnect through nginx to the other and, resuming, lose nothing.

use crate::helpers::*;
use serde_json::json;

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

#[tokio::test]
async fn a_client_that_stops_reading_is_closed_at_its_bound_while_memory_stays_flat() {
    let s = stack().await;
    let port = free_port();
    let log = std::env::temp_dir().join(format!(
        "herald-gw-slow-{}.log",
        uuid::Uuid::new_v4().simple()
    ));
    let mut gw = s.gateway_process_with(port, &log, &[("HERALD_WS_OUTBOUND_QUEUE", "16")]);
    let addr = format!("127.0.0.1:{port}");
    wait_listening(&addr).await;
    let stalled = open(&addr, &token("slow", &["crowd"]), None).await;
    let mut healthy = open(&addr, &token("fast", &["crowd"]), None).await;
    let before = rss_kib(gw.id());
    // 3,000 events of 15 KB (16 KiB is the api's limit for `data`): 45 MB aimed at a client
    // that reads nothing. Its socket buffers fill, then its 16-frame queue, then it is closed.
    let blob = "x".repeat(15_000);
    for i in 0..3_000 {
        s.event(json!({"event": "bulk", "roles": ["crowd"], "data": {"i": i, "blob": blob}}))
            .await;
        let frame = healthy.next().await;
        assert_eq!(
            frame["data"]["i"], i,
            "the healthy client gets everything, in order"
        );
    }
    let grown_mib = rss_kib(gw.id()).saturating_sub(before) / 1024;
    assert!(
        grown_mib < 16,
        "the gateway grew {grown_mib} MiB while 45 MB went to a stalled client"
    );
    let metric = |text: &str, name: &str| -> Option<f64> {
        text.lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.rsplit(' ').next()?.parse().ok())
    };
    let text = reqwest::get(format!("http://{addr}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(
        metric(&text, "herald_gateway_slow_client_closes_total "),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        metric(&text, "herald_gateway_connections "),
        Some(1.0),
        "only the healthy client is left"
    );
    healthy.send("ping").await;
    assert_eq!(
        healthy.next().await,
        json!("pong"),
        "the healthy client is still served"
    );
    drop(stalled);
    let _ = gw.kill();
    let _ = gw.wait();
}

#[tokio::test]
async fn a_killed_redis_subscription_is_restored_and_clients_are_told_to_refetch() {
    let redis = PrivateRedis::start().await;
    let s = stack_on(&redis.url()).await;
    let gw = s.gateway(|_| {}).await;
    let addr = gw.addr.to_string();
    let mut tab = open(&addr, &token("alice", &[]), None).await;
    redis.cli(&["CLIENT", "KILL", "TYPE", "pubsub"]);
    let frame = tab.next().await;
    assert_eq!(
        frame,
        json!({"type": "refetch", "reason": "subscription interrupted"})
    );
    s.notify("alice", "after the kill").await;
    assert_eq!(
        tab.next().await["notification"]["title"],
        "after the kill",
        "resubscribed by itself"
    );
}

#[tokio::test]
async fn after_a_redis_restart_the_node_resubscribes_and_a_resuming_client_loses_nothing() {
    let redis = PrivateRedis::start().await;
    let s = stack_on(&redis.url()).await;
    let gw = s.gateway(|_| {}).await;
    let addr = gw.addr.to_string();
    let alice = token("alice", &[]);
    let mut tab = open(&addr, &alice, None).await;
    let seen = s.notify("alice", "before").await;
    assert_eq!(tab.next().await["notification"]["title"], "before");
    let redis = redis.restart().await;
    // Published while the subscription may be down: committed, and relayed once Redis is back.
    s.notify("alice", "during").await;
    let frame = tab.next().await;
    // The refetch comes first, or the notification itself if the node was back in time.
    let mut titles = Vec::new();
    if frame["type"] == "refetch" {
        let mut back = open(&addr, &alice, Some(seen["id"].as_str().unwrap())).await;
        titles.push(back.next().await["notification"]["title"].clone());
    } else {
        titles.push(frame["notification"]["title"].clone());
    }
    assert_eq!(titles, [json!("during")]);
    drop(redis);
}

#[tokio::test]
async fn after_a_gateway_is_killed_its_clients_resume_through_the_other_and_lose_nothing() {
    let s = stack().await;
    let (pa, pb) = (free_port(), free_port());
    let logs =
        std::env::temp_dir().join(format!("herald-gw-logs-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&logs).unwrap();
    let mut a = s.gateway_process(pa, &logs.join("a.log"));
    let mut b = s.gateway_process(pb, &logs.join("b.log"));
    wait_listening(&format!("127.0.0.1:{pa}")).await;
    wait_listening(&format!("127.0.0.1:{pb}")).await;
    let nginx = Nginx::start(
        &s.api.to_string(),
        &[format!("127.0.0.1:{pa}"), format!("127.0.0.1:{pb}")],
    )
    .await;
    let alice = token("alice", &[]);
    let mut tab = open(&format!("127.0.0.1:{pa}"), &alice, None).await;
    let last = s.notify("alice", "before").await;
    assert_eq!(tab.next().await["notification"]["title"], "before");

    a.kill().unwrap();
    a.wait().unwrap();
    assert_eq!(tab.closed().await, None, "the socket just dies");
    for i in 0..10 {
        s.notify("alice", &format!("while-away-{i}")).await;
    }
    let mut back = open(
        &format!("127.0.0.1:{}", nginx.port),
        &alice,
        Some(last["id"].as_str().unwrap()),
    )
    .await;
    for i in 0..10 {
        assert_eq!(
            back.next().await["notification"]["title"],
            format!("while-away-{i}")
        );
    }
    let _ = b.kill();
    let _ = b.wait();
    for name in ["a.log", "b.log"] {
        let text = std::fs::read_to_string(logs.join(name)).unwrap();
        assert!(
            text.contains("herald-gateway listening"),
            "{name} logged at debug level"
        );
        assert!(!text.contains(&alice), "the token never appears in {name}");
    }
    assert!(!nginx.logs().contains(&alice), "nor in nginx's logs");
}

#[tokio::test]
async fn a_draining_gateway_closes_its_clients_with_service_restart_and_refuses_new_ones() {
    let s = stack().await;
    let gw = s.gateway(|c| c.drain_secs = 1).await;
    let addr = gw.addr.to_string();
    let mut tabs = Vec::new();
    for i in 0..5 {
        tabs.push(open(&addr, &token(&format!("user-{i}"), &[]), None).await);
    }
    let stopping = tokio::spawn(gw.stop());
    for tab in &mut tabs {
        assert_eq!(tab.closed().await, Some(1012));
    }
    stopping.await.unwrap();
    assert!(
        tokio::net::TcpStream::connect(&addr).await.is_err(),
        "no longer accepting"
    );
}

#[tokio::test]
async fn a_stalled_redis_subscription_is_detected_rebuilt_and_a_resuming_client_loses_nothing() {
    let s = stack().await;
    // The gateway reaches Redis through a proxy; the api publishes to Redis directly.
    let proxy =
        herald_api::testing::Proxy::start(redis_url().trim_start_matches("redis://").to_owned())
            .await;
    let gw = s
        .gateway(|c| {
            c.redis_url = herald_core::secret::Secret::new(format!("redis://{}", proxy.addr));
            c.bus_stall_secs = 2;
        })
        .await;
    let addr = gw.addr.to_string();
    let alice = token("alice", &[]);
    let mut tab = open(&addr, &alice, None).await;
    let seen = s.notify("alice", "before").await;
    assert_eq!(tab.next().await["notification"]["title"], "before");
    let ready = || async {
        reqwest::get(format!("http://{addr}/readyz"))
            .await
            .unwrap()
            .status()
            .as_u16()
    };
    assert_eq!(ready().await, 200);

    // Every connection stops forwarding, without closing: TCP says all is well. (New ones are
    // held too, until `restore`, so the not-ready state lasts long enough to be seen.)
    proxy.stall();
    let stalled_at = std::time::Instant::now();
    // Published into the void for this gateway: the subscription hears nothing.
    s.notify("alice", "during the stall").await;
    while ready().await != 503 {
        assert!(
            stalled_at.elapsed() < std::time::Duration::from_secs(10),
            "/readyz still 200 10 s into the stall"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let detected = stalled_at.elapsed();
    assert!(
        detected <= std::time::Duration::from_secs(5),
        "detected after {detected:?}: the bound is 2 s of silence + a probe interval (1 s)"
    );
    assert_eq!(
        gateway_metric(&addr, "herald_gateway_redis_stalls_total").await,
        1.0
    );
    proxy.restore();
    // The subscription is rebuilt on a fresh connection, and the client told to refetch (what
    // the stalled connection held may still arrive first).
    loop {
        let frame = tab.next().await;
        if frame["type"] == "refetch" {
            break;
        }
        assert_eq!(
            frame["notification"]["title"], "during the stall",
            "{frame}"
        );
    }
    // Ready again, and live again.
    for _ in 0..50 {
        if ready().await == 200 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(ready().await, 200, "ready again once probes come back");
    s.notify("alice", "after").await;
    assert_eq!(tab.next().await["notification"]["title"], "after");
    // A client that resumes from what it saw before the stall has lost nothing.
    let mut back = open(&addr, &alice, Some(seen["id"].as_str().unwrap())).await;
    assert_eq!(
        back.next().await["notification"]["title"],
        "during the stall"
    );
    assert_eq!(back.next().await["notification"]["title"], "after");
    gw.stop().await;
}
