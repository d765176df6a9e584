//! A message from its parts: the one place the worker builds a `lettre::Message`, for single
//! notifications and digests alike. The recipient arrives as a [`Mailbox`] that
//! `herald_core::mailbox` already checked, so formatting its header cannot fail.

use crate::mailer::ListUnsubscribe;
use crate::render::Rendered;
use lettre::Message;
use lettre::message::{Mailbox, MultiPart};

/// `From`, `To`, `Subject`, a stable `Message-ID`, `List-Unsubscribe` pointing at the user's
/// preferences, and the text and HTML parts as `multipart/alternative`.
pub fn compose(
    from: &Mailbox,
    to: Mailbox,
    message_id: String,
    preferences_url: String,
    content: Rendered,
) -> Result<Message, lettre::error::Error> {
    Message::builder()
        .from(from.clone())
        .to(to)
        .subject(content.subject)
        .message_id(Some(message_id))
        .header(ListUnsubscribe(preferences_url))
        .multipart(MultiPart::alternative_plain_html(
            content.text,
            content.html,
        ))
}
