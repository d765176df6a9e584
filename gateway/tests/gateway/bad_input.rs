//! Bad input at the edge: tokens and origins refused before the upgrade; malformed and oversized
//! frames closed with the right code, without a panic and with the gateway still serving.

use crate::helpers::*;
use herald_core::auth::now_unix;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

#[tokio::test]
async fn bad_tokens_and_foreign_origins_are_refused_before_any_data() {
    let s = stack().await;
    let gw = s.gateway(|_| {}).await;
    let addr = gw.addr.to_string();
    let good = token("alice", &[]);
    let claims = |exp: u64| herald_core::auth::TokenClaims {
        exp,
        ..herald_core::auth::TokenClaims::new("alice", Vec::<String>::new(), None, 0)
    };
    let sign = |secret: &str, exp: u64| {
        herald_core::auth::mint_hs256(&herald_core::secret::Secret::new(secret), &claims(exp))
    };
    let none_alg = {
        use base64::Engine as _;
        let b = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        format!(
            "{}.{}.",
            b.encode(br#"{"alg":"none"}"#),
            b.encode(format!(r#"{{"sub":"alice","exp":{}}}"#, now_unix() + 60))
        )
    };
    for (name, t) in [
        ("wrong key", sign("wrong-key", now_unix() + 60)),
        ("alg none", none_alg),
        ("expired", sign(SECRET, now_unix() - 600)),
        ("missing", String::new()),
        ("garbage", "not.a.token".to_owned()),
    ] {
        assert_eq!(
            try_open(&addr, &t, None, Some("http://app.example"))
                .await
                .err(),
            Some(401),
            "{name}"
        );
    }
    assert_eq!(
        try_open(&addr, &good, None, Some("https://evil.example"))
            .await
            .err(),
        Some(403)
    );
    assert!(
        try_open(&addr, &good, None, None).await.is_ok(),
        "no Origin (a server, a CLI) is allowed"
    );
}

/// Opens a raw socket and completes the handshake by hand, to send frames no client library
/// would.
async fn raw(addr: &str, token: &str) -> TcpStream {
    let mut s = TcpStream::connect(addr).await.unwrap();
    let req = format!(
        "GET /api/notifications/ws?token={token} HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    );
    s.write_all(req.as_bytes()).await.unwrap();
    let mut head = Vec::new();
    let mut b = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        s.read_exact(&mut b).await.unwrap();
        head.push(b[0]);
    }
    assert!(
        head.starts_with(b"HTTP/1.1 101"),
        "{}",
        String::from_utf8_lossy(&head)
    );
    s
}

fn frame(b0: u8, payload: &[u8], masked: bool) -> Vec<u8> {
    let m = if masked { 0x80 } else { 0 };
    let mut v = vec![b0];
    match payload.len() {
        n if n < 126 => v.push(m | n as u8),
        n if n <= 0xFFFF => {
            v.push(m | 126);
            v.extend((n as u16).to_be_bytes());
        }
        n => {
            v.push(m | 127);
            v.extend((n as u64).to_be_bytes());
        }
    }
    if masked {
        let k = [0x12, 0x34, 0x56, 0x78];
        v.extend(k);
        v.extend(payload.iter().enumerate().map(|(i, x)| x ^ k[i % 4]));
    } else {
        v.extend_from_slice(payload);
    }
    v
}

/// Reads frames until a close; its code (None if the socket just ended).
async fn close_code(s: &mut TcpStream) -> Option<u16> {
    let read = async {
        loop {
            let mut h = [0u8; 2];
            s.read_exact(&mut h).await.ok()?;
            let len = match h[1] & 0x7f {
                126 => {
                    let mut b = [0; 2];
                    s.read_exact(&mut b).await.ok()?;
                    u16::from_be_bytes(b) as usize
                }
                127 => {
                    let mut b = [0; 8];
                    s.read_exact(&mut b).await.ok()?;
                    u64::from_be_bytes(b) as usize
                }
                n => n as usize,
            };
            let mut p = vec![0; len];
            s.read_exact(&mut p).await.ok()?;
            if h[0] & 0x0f == 0x8 {
                return Some(if p.len() >= 2 {
                    u16::from_be_bytes([p[0], p[1]])
                } else {
                    1005
                });
            }
        }
    };
    tokio::time::timeout(std::time::Duration::from_secs(10), read)
        .await
        .expect("closed within 10 s")
}

#[tokio::test]
async fn malformed_and_oversized_frames_are_closed_with_the_right_code() {
    let s = stack().await;
    let gw = s.gateway(|c| c.max_message_bytes = 1024).await;
    let addr = gw.addr.to_string();
    let alice = token("alice", &[]);
    let mut close = vec![0x03, 0xE8];
    close.extend([b'x'; 124]);
    let cases: Vec<(&str, Vec<u8>, u16)> = vec![
        ("unmasked", frame(0x81, b"ping", false), 1002),
        ("reserved bit", frame(0xC1, b"ping", true), 1002),
        ("unknown opcode", frame(0x83, b"", true), 1002),
        ("oversized ping", frame(0x89, &[0; 126], true), 1002),
        ("oversized close", frame(0x88, &close, true), 1002),
        ("invalid UTF-8", frame(0x81, &[0xff, 0xfe], true), 1007),
        ("oversized frame", frame(0x81, &[b'a'; 2048], true), 1009),
        ("stray continuation", frame(0x80, b"x", true), 1002),
    ];
    for (name, bytes, code) in cases {
        let mut sock = raw(&addr, &alice).await;
        sock.write_all(&bytes).await.unwrap();
        assert_eq!(close_code(&mut sock).await, Some(code), "{name}");
    }
    // A flood of continuation frames past the total cap.
    let mut sock = raw(&addr, &alice).await;
    sock.write_all(&frame(0x01, &[b'a'; 500], true))
        .await
        .unwrap();
    let mut code = None;
    for _ in 0..10 {
        if sock
            .write_all(&frame(0x00, &[b'a'; 500], true))
            .await
            .is_err()
        {
            break;
        }
    }
    if code.is_none() {
        code = close_code(&mut sock).await;
    }
    assert_eq!(code, Some(1009), "continuations are capped in total");
    // Still serving.
    let mut tab = open(&addr, &alice, None).await;
    tab.send("ping").await;
    assert_eq!(tab.next().await, serde_json::json!("pong"));
}
