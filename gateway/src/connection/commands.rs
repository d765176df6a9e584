//! Client → server text commands (docs/websocket.md), parsed into a type before anything acts on
//! them: `ping`, `mark_read:<id>`, `ack:<id>`, `auth:<jwt>`. Pure, so the parser is fuzzed on its
//! own (the property test below, run by the test command).

use uuid::Uuid;

/// One client message, understood.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command<'a> {
    /// `ping` → the text `pong`.
    Ping,
    /// `mark_read:<id>`: persist through the api; `marked_read` reaches every tab.
    MarkRead(Uuid),
    /// `ack:<id>`: the notification was seen (email-if-unseen).
    Ack(Uuid),
    /// `auth:<jwt>`: a fresh token for this connection.
    Auth(&'a str),
    /// A known command whose argument is wrong; the text says what it needs.
    Invalid(&'static str),
    /// Anything else.
    Unknown,
}

/// Longest token accepted in `auth:` (a JWT far larger than any real one is refused unread).
pub const MAX_TOKEN_BYTES: usize = 8 * 1024;

/// Parses one text message (surrounding whitespace ignored).
pub fn parse(text: &str) -> Command<'_> {
    let text = text.trim();
    if text == "ping" {
        return Command::Ping;
    }
    let Some((name, arg)) = text.split_once(':') else {
        return Command::Unknown;
    };
    let arg = arg.trim();
    match name {
        "mark_read" => Uuid::parse_str(arg)
            .map(Command::MarkRead)
            .unwrap_or(Command::Invalid("mark_read needs a notification id")),
        "ack" => Uuid::parse_str(arg)
            .map(Command::Ack)
            .unwrap_or(Command::Invalid("ack needs a notification id")),
        "auth" if arg.is_empty() || arg.len() > MAX_TOKEN_BYTES => {
            Command::Invalid("auth needs a token")
        }
        "auth" => Command::Auth(arg),
        _ => Command::Unknown,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn each_command_and_its_argument() {
        let id = Uuid::now_v7();
        assert_eq!(parse(" ping\n"), Command::Ping);
        assert_eq!(parse(&format!("mark_read:{id}")), Command::MarkRead(id));
        assert_eq!(parse(&format!("ack: {id} ")), Command::Ack(id));
        assert_eq!(parse("auth:a.b.c"), Command::Auth("a.b.c"));
        assert!(matches!(parse("mark_read:7"), Command::Invalid(_)));
        assert!(matches!(parse("auth:"), Command::Invalid(_)));
        assert_eq!(parse("PING"), Command::Unknown);
        assert_eq!(parse("delete:x"), Command::Unknown);
    }

    proptest! {
        // HERALD_FUZZ_CASES=<n> for a longer run by hand (docs/operations.md).
            #![proptest_config(ProptestConfig::with_cases(
                std::env::var("HERALD_FUZZ_CASES").ok().and_then(|n| n.parse().ok()).unwrap_or(2_000)
            ))]

        /// Whatever a client sends: no panic, and an id or token is only ever what was sent.
        #[test]
        fn any_text_parses_to_something_that_came_from_it(text in any::<String>()) {
            match parse(&text) {
                Command::MarkRead(id) | Command::Ack(id) => {
                    let sent = id.to_string();
                    prop_assert!(text.to_ascii_lowercase().contains(&sent)
                        || text.contains(&id.simple().to_string())
                        || text.contains(&id.braced().to_string())
                        || text.contains(&id.urn().to_string()));
                }
                Command::Auth(token) => {
                    prop_assert!(text.contains(token) && !token.is_empty());
                    prop_assert!(token.len() <= MAX_TOKEN_BYTES);
                }
                _ => {}
            }
        }

        #[test]
        fn commands_with_noise_around_them_still_parse(
            pad in "[ \t\r\n]{0,3}", token in "[A-Za-z0-9._-]{1,200}",
        ) {
            let id = Uuid::now_v7();
            let mark = format!("{pad}mark_read:{id}{pad}");
            prop_assert_eq!(parse(&mark), Command::MarkRead(id));
            let auth = format!("{pad}auth:{token}{pad}");
            prop_assert_eq!(parse(&auth), Command::Auth(token.as_str()));
        }
    }
}
