//! Sending: lettre over SMTP (async, pooled; plain, STARTTLS or TLS), or `.eml` files in a folder
//! when no SMTP server is configured. Failures are classified: SMTP 5xx is permanent, everything
//! else (4xx, connection errors, timeouts) is worth retrying.

use crate::config::{Config, SmtpTls};
use lettre::message::header::{Header, HeaderName, HeaderValue};
use lettre::transport::smtp::authentication::Credentials;
use lettre::{AsyncFileTransport, AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use std::time::Duration;

pub enum Mailer {
    Smtp(AsyncSmtpTransport<Tokio1Executor>),
    Files(AsyncFileTransport<Tokio1Executor>),
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SendError {
    /// Retry later (SMTP 4xx, connection refused, timeout).
    #[error("transient: {0}")]
    Transient(String),
    /// Do not retry (SMTP 5xx: unknown mailbox, rejected).
    #[error("permanent: {0}")]
    Permanent(String),
}

impl Mailer {
    pub fn new(config: &Config) -> anyhow::Result<Self> {
        let Some(host) = config.smtp_host.as_deref().filter(|h| !h.is_empty()) else {
            std::fs::create_dir_all(&config.mail_dir)?;
            return Ok(Mailer::Files(AsyncFileTransport::new(&config.mail_dir)));
        };
        let mut builder = match config.smtp_tls {
            SmtpTls::None => AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(host)
                .port(config.smtp_port.unwrap_or(25)),
            SmtpTls::Starttls => AsyncSmtpTransport::<Tokio1Executor>::starttls_relay(host)?
                .port(config.smtp_port.unwrap_or(587)),
            SmtpTls::Tls => AsyncSmtpTransport::<Tokio1Executor>::relay(host)?
                .port(config.smtp_port.unwrap_or(465)),
        };
        if let (Some(user), Some(password)) = (&config.smtp_username, &config.smtp_password) {
            builder =
                builder.credentials(Credentials::new(user.clone(), password.expose().to_owned()));
        }
        Ok(Mailer::Smtp(
            builder.timeout(Some(Duration::from_secs(15))).build(),
        ))
    }

    pub async fn send(&self, message: Message) -> Result<(), SendError> {
        match self {
            Mailer::Smtp(t) => t.send(message).await.map(|_| ()).map_err(|e| {
                if e.is_permanent() {
                    SendError::Permanent(e.to_string())
                } else {
                    SendError::Transient(e.to_string())
                }
            }),
            Mailer::Files(t) => t
                .send(message)
                .await
                .map(|_| ())
                .map_err(|e| SendError::Transient(e.to_string())),
        }
    }
}

/// `List-Unsubscribe: <url>` (RFC 2369), pointing at the user's preferences.
#[derive(Debug, Clone)]
pub struct ListUnsubscribe(pub String);

impl Header for ListUnsubscribe {
    fn name() -> HeaderName {
        HeaderName::new_from_ascii_str("List-Unsubscribe")
    }

    fn parse(s: &str) -> Result<Self, Box<dyn std::error::Error + Send + Sync>> {
        Ok(Self(
            s.trim()
                .trim_start_matches('<')
                .trim_end_matches('>')
                .to_owned(),
        ))
    }

    fn display(&self) -> HeaderValue {
        HeaderValue::new(Self::name(), format!("<{}>", self.0))
    }
}
