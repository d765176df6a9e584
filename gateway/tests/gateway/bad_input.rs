//! Bad input at the edge: tokens and origins refused before the upgrade; malformed and oversized
//! frames closed with the right code, without a panic and with the gateway still serving.

use crate::helpers::*;
use herald_core::auth::now_unix;
use tokio::io::AsyncWriteExt;

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
