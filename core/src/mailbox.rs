//! Email recipients: the one parser of addresses and display names. The api checks every
//! recipient with it at the edge (a bad one is a 422 naming the field) and the worker addresses
//! every message with it, so a value the api accepted is one the mailer can write, and a value
//! that reached the database some other way is refused by the worker instead of crashing it.
//!
//! It is lettre's own parser ([`Address`], [`Mailbox`]) plus what lettre leaves unchecked:
//! lettre *panics* while formatting a `To:` header whose display name holds CR or LF, and it
//! would write other control characters into a header as they are. So a display name holds no
//! control character (C0, DEL, C1) and no Unicode line or paragraph separator, and an address
//! holds no whitespace or control character at all (lettre accepts quoted local parts such as
//! `"a b"@example.com`; nobody needs them and they are easy to misread).

use std::fmt::Write as _;

pub use lettre::Address;
pub use lettre::message::Mailbox;

/// Longest address, in bytes (the limit of a forward path in SMTP, RFC 5321 §4.5.3.1.3).
pub const MAX_ADDRESS_BYTES: usize = 254;
/// Longest display name, in characters.
pub const MAX_NAME_CHARS: usize = 200;

/// Why a recipient cannot be written as an email header. `field()` names the part at fault.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum RecipientError {
    #[error("not a valid email address: {0}")]
    Address(&'static str),
    #[error("not a valid display name: {0}")]
    Name(&'static str),
}

impl RecipientError {
    /// The recipient field at fault, as the publish body names it: `email` or `name`.
    pub fn field(&self) -> &'static str {
        match self {
            RecipientError::Address(_) => "email",
            RecipientError::Name(_) => "name",
        }
    }
}

/// A line break by any standard: control characters (CR, LF, VT, FF, NEL, ...) and U+2028/9.
fn forbidden_in_name(c: char) -> bool {
    c.is_control() || matches!(c, '\u{2028}' | '\u{2029}')
}

/// Parses an email address (`user@example.com`) with lettre's parser.
pub fn address(email: &str) -> Result<Address, RecipientError> {
    if email.len() > MAX_ADDRESS_BYTES {
        return Err(RecipientError::Address("longer than 254 bytes"));
    }
    if email.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(RecipientError::Address(
            "must not contain spaces, line breaks or control characters",
        ));
    }
    email.parse::<Address>().map_err(|e| {
        RecipientError::Address(match e {
            lettre::address::AddressError::MissingParts => "needs a user, '@' and a domain",
            lettre::address::AddressError::InvalidUser => "the part before '@' is not valid",
            lettre::address::AddressError::InvalidDomain => "the domain is not valid",
            _ => "cannot be parsed",
        })
    })
}

/// Checks a display name; the name to write is trimmed, `None` when nothing is left.
pub fn display_name(name: &str) -> Result<Option<String>, RecipientError> {
    if name.chars().count() > MAX_NAME_CHARS {
        return Err(RecipientError::Name("longer than 200 characters"));
    }
    if name.chars().any(forbidden_in_name) {
        return Err(RecipientError::Name(
            "must not contain line breaks or control characters",
        ));
    }
    let name = name.trim();
    Ok((!name.is_empty()).then(|| name.to_owned()))
}

/// The mailbox (`"Name" <address>`) a message to this recipient is addressed to. The address is
/// checked first, so the error names it when both are bad.
pub fn mailbox(email: &str, name: Option<&str>) -> Result<Mailbox, RecipientError> {
    let address = address(email)?;
    let name = match name {
        Some(n) => display_name(n)?,
        None => None,
    };
    let mailbox = Mailbox::new(name, address);
    // lettre's headers format a mailbox with `to_string()`, which panics when its `Display`
    // fails; `write!` reports the same failure as an error. The rules above should leave nothing
    // for this to catch: it is the last guard, so the worker can never be made to panic here.
    let mut written = String::new();
    if write!(written, "{mailbox}").is_err() {
        return Err(RecipientError::Name("cannot be written in an email header"));
    }
    Ok(mailbox)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn good_recipients_parse_and_names_are_trimmed() {
        let m = mailbox("ann@example.com", Some("  Ann Lee ")).unwrap();
        assert_eq!(m.email.to_string(), "ann@example.com");
        assert_eq!(m.name.as_deref(), Some("Ann Lee"));
        assert_eq!(m.to_string(), "Ann Lee <ann@example.com>");
        assert_eq!(mailbox("a+tag@sub.example.co", None).unwrap().name, None);
        assert_eq!(mailbox("a@example.com", Some("   ")).unwrap().name, None);
        let unicode = mailbox("jos\u{e9}@ex\u{e4}mple.com", Some("Jos\u{e9} \u{1f600}")).unwrap();
        assert_eq!(unicode.name.as_deref(), Some("Jos\u{e9} \u{1f600}"));
        assert!(mailbox("x@[127.0.0.1]", Some("Rogue \" <User>")).is_ok());
    }

    #[test]
    fn bad_addresses_are_refused_naming_the_email() {
        for bad in [
            "",
            "broken@",
            "@example.com",
            "no-at-sign",
            "a@b.test,c@evil.test",
            "a b@example.com",
            "\"a b\"@example.com",
            "a@example.com\r\nBcc: x@evil.test",
            "a@exa\u{7}mple.com",
            "a@exa mple.com",
            "a@-example-.com",
            &format!("{}@example.com", "a".repeat(250)),
        ] {
            let err = mailbox(bad, Some("Ann")).unwrap_err();
            assert_eq!(err.field(), "email", "{bad:?}");
        }
    }

    #[test]
    fn names_with_line_breaks_or_control_characters_are_refused_naming_the_name() {
        for bad in [
            "Ann\r\nX",
            "Ann\nBcc: x@evil.test",
            "Ann\r",
            "bell\u{7}",
            "tab\tbed",
            "nel\u{85}",
            "ls\u{2028}",
            "ps\u{2029}",
            "del\u{7f}",
            &"x".repeat(201),
        ] {
            let err = mailbox("a@example.com", Some(bad)).unwrap_err();
            assert_eq!(err.field(), "name", "{bad:?}");
            assert_eq!(display_name(bad).unwrap_err().field(), "name");
        }
    }
}
