//! What the connection's current token grants: the user, the roles (and so the channels) and
//! the expiry. An `auth:<jwt>` refresh replaces all of it at once, for the same user only.

use super::Context;
use crate::hub::ConnId;
use herald_core::auth::{Claims, RefreshError, until_exp};
use herald_core::keys::Keys;
use tokio::time::Instant;

pub(super) struct Grant {
    /// Sent to the api on the user's behalf (`mark_read`, `ack`, resume).
    pub token: String,
    pub claims: Claims,
    /// When the token expires, on tokio's clock (so paused-time tests see the same deadline
    /// the code does).
    pub deadline: Instant,
}

impl Grant {
    pub fn new(token: String, claims: Claims) -> Self {
        let deadline = Instant::now() + until_exp(claims.exp);
        Self {
            token,
            claims,
            deadline,
        }
    }

    pub fn channels(&self, keys: &Keys) -> Vec<String> {
        self.claims.channels(keys)
    }

    /// Replaces the grant with a fresh token's (same user only): channels of roles it no longer
    /// carries are left before this returns, new ones joined. Returns the new expiry.
    pub fn refresh(
        &mut self,
        ctx: &Context,
        id: ConnId,
        token: &str,
        fresh: Claims,
    ) -> Result<u64, RefreshError> {
        let claims = self.claims.refresh(fresh)?;
        // Not awaited: a role joined now is live once subscribed, like at the handshake.
        let _ready = ctx.hub.regrant(
            id,
            &self.claims.channels(&ctx.keys),
            &claims.channels(&ctx.keys),
        );
        *self = Grant::new(token.to_owned(), claims);
        Ok(self.claims.exp)
    }
}
