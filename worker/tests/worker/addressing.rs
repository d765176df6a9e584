//! Property test: whatever unicode arrives as a recipient's address and name and as a title,
//! validation (the api's own `NewNotification::parse`), rendering and addressing never panic,
//! what the api accepts the worker can address, and every message the worker can address
//! formats with well-formed headers (CR and LF only as line ends, no header but ours) whose
//! `To:` and `Subject:` read back as what was sent.

use base64::Engine as _;
use herald_api::domain::{Audience, NewNotification, PublishNotificationBody};
use herald_core::mailbox::{self, Address, Mailbox};
use herald_worker::compose::compose;
use herald_worker::render::{self, Item, Renderer};
use proptest::prelude::*;
use proptest::test_runner::Config;
use serde_json::json;

/// Mostly-valid addresses, arbitrary text, and valid ones with one arbitrary character slipped in.
fn addresses() -> impl Strategy<Value = String> {
    let valid = "[a-zA-Z0-9._%+-]{1,12}@[a-z0-9-]{1,12}(\\.[a-z]{2,6}){1,2}";
    prop_oneof![
        3 => valid,
        2 => any::<String>(),
        2 => "\\PC{1,12}@\\PC{1,12}",
        2 => (valid, any::<char>(), any::<prop::sample::Index>()).prop_map(|(a, c, at)| {
            let cut = at.index(a.len() + 1);
            format!("{}{c}{}", &a[..cut], &a[cut..])
        }),
        1 => Just("a@b.test,c@evil.test".to_owned()),
        1 => Just("broken@".to_owned()),
    ]
}

/// Names with quotes, backslashes, unicode, and line breaks or control characters in them.
fn names() -> impl Strategy<Value = Option<String>> {
    let printable = "\\PC{0,40}";
    prop::option::weighted(
        0.9,
        prop_oneof![
            3 => printable,
            3 => "[ -~]{0,60}",
            2 => any::<String>(),
            2 => (printable, prop::sample::select(vec!['\r', '\n', '\u{7}', '\u{0}', '\t', '\u{85}', '\u{2028}', '\u{7f}']), printable)
                .prop_map(|(a, c, b)| format!("{a}{c}{b}")),
        ],
    )
}

fn titles() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => "\\PC{1,200}",
        2 => "[ -~\\t\\r\\n]{1,120}",
        2 => any::<String>(),
    ]
}

/// Decodes a header value as RFC 2047 readers do: `=?utf-8?b?...?=` words decoded, whitespace
/// between two encoded words dropped, everything else as it is.
fn decode_words(value: &str) -> String {
    let encoded = |token: &str| {
        let b64 = token.strip_prefix("=?utf-8?b?")?.strip_suffix("?=")?;
        let bytes = base64::engine::general_purpose::STANDARD.decode(b64).ok()?;
        String::from_utf8(bytes).ok()
    };
    let (mut out, mut space, mut after_encoded) = (String::new(), String::new(), false);
    let mut rest = value;
    while !rest.is_empty() {
        let ws = rest.len() - rest.trim_start_matches([' ', '\t']).len();
        if ws > 0 {
            space.push_str(&rest[..ws]);
            rest = &rest[ws..];
            continue;
        }
        let end = rest.find([' ', '\t']).unwrap_or(rest.len());
        let token = &rest[..end];
        match encoded(token) {
            Some(text) => {
                if !after_encoded {
                    out.push_str(&space);
                }
                out.push_str(&text);
                after_encoded = true;
            }
            None => {
                out.push_str(&space);
                out.push_str(token);
                after_encoded = false;
            }
        }
        space.clear();
        rest = &rest[end..];
    }
    out + &space
}

/// The display name as written in a `To:` value: a quoted string, encoded words, or an atom.
fn read_name(written: &str) -> String {
    match written.strip_prefix('"').and_then(|w| w.strip_suffix('"')) {
        Some(quoted) => {
            let mut out = String::new();
            let mut chars = quoted.chars();
            while let Some(c) = chars.next() {
                out.push(if c == '\\' { chars.next().unwrap() } else { c });
            }
            out
        }
        None => decode_words(written),
    }
}

/// Formats a message to `to` with `title` and checks it (see the file's header).
fn check_message(to: &Mailbox, title: &str) {
    let renderer = Renderer::new(None, "http://herald.example").unwrap();
    let item = Item {
        kind: "goal_assigned".into(),
        priority: "high".into(),
        title: title.to_owned(),
        message: format!("About {title}"),
        triggered_by_name: Some("John Doe".into()),
        link: render::link(renderer.public_url(), Some("/goals/1")),
    };
    let content = renderer.single(&item).expect("every title renders");
    let subject = content.subject.clone();
    let from: Mailbox = "Herald <herald@localhost>".parse().unwrap();
    let message = compose(
        &from,
        to.clone(),
        "<n.1@herald>".into(),
        renderer.preferences_url(),
        content,
    )
    .expect("an addressed, rendered message builds");
    let raw = message.formatted();

    for (i, &b) in raw.iter().enumerate() {
        if b == b'\r' {
            assert_eq!(raw.get(i + 1), Some(&b'\n'), "bare CR at {i}");
        }
        if b == b'\n' {
            assert!(i > 0 && raw[i - 1] == b'\r', "bare LF at {i}");
        }
    }
    let end = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("headers end with an empty line");
    let head = std::str::from_utf8(&raw[..end]).expect("headers are UTF-8");
    let mut headers: Vec<(String, String)> = Vec::new();
    for line in head.split("\r\n") {
        assert!(line.len() <= 998, "a header line over 998 bytes: {line:?}");
        assert!(
            !line.chars().any(|c| c.is_control() && c != '\t'),
            "a control character in {line:?}"
        );
        if line.starts_with([' ', '\t']) {
            headers.last_mut().expect("no continuation first").1 += line;
        } else {
            let (name, value) = line.split_once(':').expect("a header line is name: value");
            assert!(
                !name.is_empty() && name.bytes().all(|b| (33..=126).contains(&b)),
                "header name {name:?}"
            );
            headers.push((name.to_owned(), value.trim_start().to_owned()));
        }
    }
    let names: Vec<&str> = headers.iter().map(|(n, _)| n.as_str()).collect();
    for name in &names {
        assert!(
            [
                "From",
                "To",
                "Subject",
                "Message-ID",
                "List-Unsubscribe",
                "MIME-Version",
                "Date",
                "Content-Type"
            ]
            .contains(name),
            "unexpected header {name:?} in {head}"
        );
    }
    let one = |wanted: &str| {
        let found: Vec<&String> = headers
            .iter()
            .filter(|(n, _)| n == wanted)
            .map(|(_, v)| v)
            .collect();
        assert_eq!(found.len(), 1, "one {wanted} header in {head}");
        found[0].trim_end().to_owned()
    };

    let to_value = one("To");
    let address = to.email.to_string();
    let written_name = match &to.name {
        None => {
            assert_eq!(to_value, address);
            None
        }
        Some(_) => {
            let name = to_value
                .strip_suffix(&format!("<{address}>"))
                .unwrap_or_else(|| panic!("To: {to_value:?} ends with <{address}>"));
            Some(read_name(name.trim_end()))
        }
    };
    assert_eq!(address.parse::<Address>().as_ref(), Ok(&to.email));
    assert_eq!(
        written_name, to.name,
        "the name reads back from {to_value:?}"
    );
    assert_eq!(
        decode_words(&one("Subject")),
        subject,
        "the subject reads back"
    );
}

proptest! {
    #![proptest_config(Config { cases: 256, failure_persistence: None, ..Config::default() })]

    #[test]
    fn anything_accepted_is_addressed_rendered_and_formatted_into_sound_headers(
        email in addresses(),
        name in names(),
        title in titles(),
    ) {
        // The api's validation: no panic, and what it accepts the worker can address.
        let body: PublishNotificationBody = serde_json::from_value(json!({
            "recipients": [{"id": "u1", "email": email, "name": name}],
            "type": "goal_assigned", "title": title, "message": "m", "channels": ["email"],
        }))
        .unwrap();
        let links = herald_core::origins::AllowedOrigins::parse::<&str>(&[], "http://127.0.0.1:8000").unwrap();
        if let Ok(n) = NewNotification::parse(body, 1024, &links) {
            let Audience::Users(recipients) = n.audience else { panic!("users") };
            let r = &recipients[0];
            let to = mailbox::mailbox(r.email.as_deref().unwrap(), r.name.as_deref())
                .expect("what the api accepts, the worker can address");
            check_message(&to, &n.title);
        }
        // The worker's addressing alone (a row written past the api): no panic, and whatever it
        // accepts formats soundly, whatever the title.
        if let Ok(to) = mailbox::mailbox(&email, name.as_deref()) {
            check_message(&to, &title);
        }
    }
}

#[test]
fn the_checks_read_back_every_way_a_name_is_written() {
    for name in [
        "Ann",
        "Ann Lee",
        "O'Brien, \"JJ\" \\ Jr.",
        "Jos\u{e9} \u{1f600}",
        &"long name ".repeat(19),
    ] {
        let to = mailbox::mailbox("ann@example.com", Some(name)).unwrap();
        check_message(
            &to,
            "A title with \u{e9}, and a rather long tail that goes on and on and on past one line",
        );
    }
    check_message(
        &mailbox::mailbox("jos\u{e9}@b\u{fc}ro.example", None).unwrap(),
        "t",
    );
    check_message(
        &mailbox::mailbox("A@0.aa", None).unwrap(),
        "\u{710}  \u{a1}",
    );
}
