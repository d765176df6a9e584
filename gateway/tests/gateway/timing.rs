//! Heartbeat, idle timeout and token expiry on tokio's paused clock: the connection is served
//! over an in-memory pipe, so time only moves when every task waits, and the assertions are exact.

use crate::helpers::{SECRET, token_with};
use fastwebsockets::{Frame, OpCode, Payload, Role, WebSocket};
use herald_core::keys::Keys;
use herald_gateway::api_client::ApiClient;
use herald_gateway::connection::{self, Context, Session};
use herald_gateway::hub::Hub;
use herald_gateway::metrics::Metrics;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::DuplexStream;
use tokio::time::Instant;

/// A served connection over a pipe; returns the client side.
fn connect(token: String) -> WebSocket<DuplexStream> {
    let verifier = herald_core::auth::JwtArgs::with_secret(SECRET)
        .verifier()
        .unwrap();
    let claims = verifier.verify(&token).unwrap();
    let hub = Hub::new(10, 10);
    let ctx = Arc::new(Context {
        hub: hub.clone(),
        keys: Keys::new("timing"),
        api: ApiClient::new("http://127.0.0.1:9"),
        verifier,
        metrics: Metrics::new(),
        max_message_bytes: 4096,
        max_messages_per_sec: 20,
        outbound_queue: 16,
        ping_interval: Duration::from_secs(25),
        idle_timeout: Duration::from_secs(60),
        replay_max: 100,
    });
    // Stand-in for the Redis subscription task: every channel is subscribed at once.
    let h = hub.clone();
    tokio::spawn(async move {
        loop {
            h.dirty.notified().await;
            let (subscribe, _) = h.take_dirty();
            h.mark_subscribed(&subscribe);
        }
    });
    let (server_io, client_io) = tokio::io::duplex(64 * 1024);
    let admission = hub.admit(&claims.sub).unwrap();
    tokio::spawn(connection::serve(
        server_io,
        Session {
            claims,
            token,
            since: None,
        },
        admission,
        ctx,
    ));
    let mut client = WebSocket::after_handshake(client_io, Role::Client);
    client.set_auto_pong(false);
    client
}

/// The next frame's opcode, and the close code when it is a close.
async fn next(client: &mut WebSocket<DuplexStream>) -> (OpCode, Option<u16>) {
    let f = client.read_frame().await.expect("a frame");
    let code = (f.opcode == OpCode::Close && f.payload.len() >= 2)
        .then(|| u16::from_be_bytes([f.payload[0], f.payload[1]]));
    (f.opcode, code)
}

#[tokio::test(start_paused = true)]
async fn a_silent_client_is_pinged_every_interval_and_dropped_after_the_idle_timeout() {
    let mut client = connect(token_with("alice", &[], None, 3_600));
    let start = Instant::now();
    assert_eq!(next(&mut client).await.0, OpCode::Text, "greeting");
    for n in 1..=2 {
        assert_eq!(next(&mut client).await, (OpCode::Ping, None));
        assert_eq!(start.elapsed(), Duration::from_secs(25 * n));
    }
    // Never answered: closed when it has been silent for exactly the idle timeout (60 s),
    // not at the next ping (75 s, which is also nginx's proxy_read_timeout).
    assert_eq!(next(&mut client).await, (OpCode::Close, Some(1001)));
    assert_eq!(start.elapsed(), Duration::from_secs(60));
}

#[tokio::test(start_paused = true)]
async fn the_idle_timeout_counts_from_the_last_frame_heard() {
    let mut client = connect(token_with("alice", &[], None, 3_600));
    let start = Instant::now();
    assert_eq!(next(&mut client).await.0, OpCode::Text, "greeting");
    tokio::time::sleep(Duration::from_secs(20)).await;
    client
        .write_frame(Frame::text(Payload::Borrowed(b"ping")))
        .await
        .unwrap();
    let f = client.read_frame().await.unwrap();
    assert_eq!(&f.payload[..], b"pong");
    // Heard at 20 s: the pings at 25, 50 and 75 s go unanswered; closed at 20 + 60 s.
    for _ in 0..3 {
        assert_eq!(next(&mut client).await, (OpCode::Ping, None));
    }
    assert_eq!(next(&mut client).await, (OpCode::Close, Some(1001)));
    assert_eq!(start.elapsed(), Duration::from_secs(80));
}

#[tokio::test(start_paused = true)]
async fn a_client_that_answers_pings_stays_connected() {
    let mut client = connect(token_with("alice", &[], None, 3_600));
    assert_eq!(next(&mut client).await.0, OpCode::Text);
    for _ in 0..6 {
        assert_eq!(next(&mut client).await.0, OpCode::Ping);
        client
            .write_frame(Frame::pong(Payload::Borrowed(b"")))
            .await
            .unwrap();
    }
    client
        .write_frame(Frame::text(Payload::Borrowed(b"ping")))
        .await
        .unwrap();
    let f = client.read_frame().await.unwrap();
    assert_eq!(&f.payload[..], b"pong", "still served after 150 s");
}

#[tokio::test(start_paused = true)]
async fn an_expired_token_ends_the_connection_unless_a_fresh_one_was_sent() {
    let mut client = connect(token_with("alice", &[], None, 30));
    let start = Instant::now();
    assert_eq!(next(&mut client).await.0, OpCode::Text);
    assert_eq!(next(&mut client).await.0, OpCode::Ping);
    client
        .write_frame(Frame::pong(Payload::Borrowed(b"")))
        .await
        .unwrap();
    assert_eq!(next(&mut client).await, (OpCode::Close, Some(4001)));
    let at = start.elapsed();
    assert!(
        at >= Duration::from_secs(29) && at <= Duration::from_secs(31),
        "closed at expiry, {at:?}"
    );

    let mut refreshed = connect(token_with("alice", &[], None, 30));
    let start = Instant::now();
    assert_eq!(next(&mut refreshed).await.0, OpCode::Text);
    let fresh = format!("auth:{}", token_with("alice", &[], None, 100));
    refreshed
        .write_frame(Frame::text(Payload::Owned(fresh.into_bytes())))
        .await
        .unwrap();
    let ack = refreshed.read_frame().await.unwrap();
    let ack: serde_json::Value = serde_json::from_slice(&ack.payload).unwrap();
    assert_eq!(ack["type"], "token_refreshed", "{ack}");
    loop {
        match next(&mut refreshed).await {
            (OpCode::Ping, _) => refreshed
                .write_frame(Frame::pong(Payload::Borrowed(b"")))
                .await
                .unwrap(),
            (OpCode::Close, code) => {
                assert_eq!(code, Some(4001));
                break;
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    let at = start.elapsed();
    assert!(
        at >= Duration::from_secs(99) && at <= Duration::from_secs(101),
        "the fresh token's expiry counts, {at:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn ping_control_frames_count_against_the_message_rate() {
    let mut client = connect(token_with("alice", &[], None, 3_600));
    assert_eq!(next(&mut client).await.0, OpCode::Text, "greeting");
    // The clock stands still: only the burst allowance (2 × 20 per second) is there.
    for _ in 0..100 {
        client
            .write_frame(Frame::new(
                true,
                OpCode::Ping,
                None,
                Payload::Borrowed(b"x"),
            ))
            .await
            .unwrap();
    }
    client
        .write_frame(Frame::text(Payload::Borrowed(b"ping")))
        .await
        .unwrap();
    let mut pongs = 0;
    loop {
        let f = client.read_frame().await.expect("a frame");
        match f.opcode {
            OpCode::Pong => pongs += 1,
            OpCode::Text => {
                let text = String::from_utf8(f.payload.to_vec()).unwrap();
                assert!(text.contains("too many messages"), "{text}");
                break;
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(
        pongs, 40,
        "100 pings, 40 pongs: the rest were over the rate"
    );
}

#[tokio::test(start_paused = true)]
async fn a_frame_begun_and_not_finished_closes_the_connection_after_ten_seconds() {
    use tokio::io::AsyncWriteExt;
    let mut client = connect(token_with("alice", &[], None, 3_600));
    assert_eq!(next(&mut client).await.0, OpCode::Text, "greeting");
    let start = Instant::now();
    // The head of a masked 5-byte text frame, then nothing: the gateway sends nothing to this
    // client while it waits for the rest, so it waits a bounded time.
    client.get_mut().write_all(&[0x81, 0x85]).await.unwrap();
    assert_eq!(next(&mut client).await, (OpCode::Close, Some(1008)));
    assert_eq!(start.elapsed(), Duration::from_secs(10));
}
