//! Every close code reaches the client through nginx, the documented deployment (the local
//! stack's own nginx configuration): the gateway closes gracefully (close frame, then it drains
//! what the client still sends before closing TCP), so nginx forwards the close frame instead of
//! a reset. Each test asserts the code a client behind nginx reads.

use crate::helpers::*;
use serde_json::json;
use std::time::Duration;
use tokio::io::AsyncWriteExt;

#[tokio::test]
async fn bad_frames_through_nginx_get_their_close_codes() {
    let s = stack().await;
    let a = s.gateway(|_| {}).await;
    let b = s.gateway(|_| {}).await;
    let nginx = Nginx::start(
        &s.api.to_string(),
        &[a.addr.to_string(), b.addr.to_string()],
    )
    .await;
    let alice = token("alice", &[]);
    let cases: Vec<(&str, Vec<u8>, u16)> = vec![
        // Against the 4 KiB limit: the gateway stops at the header while the rest is in flight.
        // 1 MiB fits in the sockets' buffers on the way; 32 MiB does not, so the client is still
        // sending when the gateway closes.
        ("1 MiB frame", frame(0x81, &vec![b'a'; 1 << 20], true), 1009),
        (
            "32 MiB frame",
            frame(0x81, &vec![b'a'; 32 << 20], true),
            1009,
        ),
        ("unmasked", frame(0x81, b"ping", false), 1002),
        ("invalid UTF-8", frame(0x81, &[0xff, 0xfe], true), 1007),
    ];
    for (name, bytes, code) in cases {
        // As a client does: it sends the whole message, then reads what came back.
        let mut sock = raw(&nginx.addr(), &alice).await;
        let sent = sock.write_all(&bytes).await;
        let got = close_code(&mut sock).await;
        assert!(
            sent.is_ok(),
            "{name}: the connection was not reset while sending"
        );
        assert_eq!(got, Some(code), "{name}: the client reads the close code");
    }
    a.stop().await;
    b.stop().await;
}

#[tokio::test]
async fn a_slow_client_behind_nginx_reads_what_was_sent_then_4000() {
    let s = stack().await;
    let a = s.gateway(|c| c.outbound_queue = 16).await;
    let b = s.gateway(|c| c.outbound_queue = 16).await;
    let nginx = Nginx::start(
        &s.api.to_string(),
        &[a.addr.to_string(), b.addr.to_string()],
    )
    .await;
    // Reads nothing until the gateway has given up on it.
    let mut stalled = raw(&nginx.addr(), &token("slow", &[])).await;
    let blob = "x".repeat(15_000);
    let slow_closes = || async {
        gateway_metric(
            &a.addr.to_string(),
            "herald_gateway_slow_client_closes_total",
        )
        .await
            + gateway_metric(
                &b.addr.to_string(),
                "herald_gateway_slow_client_closes_total",
            )
            .await
    };
    let mut cut = false;
    for i in 0..2_000 {
        s.event(json!({"event": "bulk", "recipients": ["slow"], "data": {"i": i, "blob": blob}}))
            .await;
        if i % 20 == 19 && slow_closes().await >= 1.0 {
            cut = true;
            break;
        }
    }
    assert!(
        cut,
        "2,000 events of 15 KB overflow a 16-frame queue behind nginx"
    );
    // It reads again: every frame already on its way, then the close that says "resume".
    assert_eq!(close_code(&mut stalled).await, Some(4000));
    a.stop().await;
    b.stop().await;
}

#[tokio::test]
async fn expiry_and_drain_close_through_nginx_with_4001_and_1012() {
    let s = stack().await;
    let a = s.gateway(|c| c.drain_secs = 1).await;
    let b = s.gateway(|c| c.drain_secs = 1).await;
    let nginx = Nginx::start(
        &s.api.to_string(),
        &[a.addr.to_string(), b.addr.to_string()],
    )
    .await;
    let short = token_with("brief", &[], None, 2);
    let mut expiring = open(&nginx.addr(), &short, None).await;
    assert_eq!(expiring.closed().await, Some(4001), "token expired");

    let mut tabs = Vec::new();
    for i in 0..4 {
        tabs.push(open(&nginx.addr(), &token(&format!("user-{i}"), &[]), None).await);
    }
    let stopping = tokio::spawn(async move {
        tokio::join!(a.stop(), b.stop());
    });
    for tab in &mut tabs {
        assert_eq!(tab.closed().await, Some(1012), "service restart");
    }
    tokio::time::timeout(Duration::from_secs(15), stopping)
        .await
        .expect("drained in time")
        .unwrap();
}
