//! Every close code the gateway sends, in one place: the standard ones it uses when a client
//! breaks the protocol, its own for "reconnect and resume", and the client's own code echoed back
//! when the client is the one closing. The reason text travels in the close frame; clients read
//! the code (docs/websocket.md).

/// Why a connection ends, as the close code it carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseCode {
    /// 1000: the client said goodbye, or went away.
    Normal,
    /// 1001: no frame from the client within the idle timeout.
    Idle,
    /// 1002: the client broke the WebSocket protocol.
    ProtocolError,
    /// 1007: a text message that is not UTF-8.
    InvalidPayload,
    /// 1008: a frame begun but not finished in time (the connection sends nothing meanwhile).
    PolicyViolation,
    /// 1009: a message larger than the configured maximum.
    TooBig,
    /// 1011: something failed on our side while reading.
    Internal,
    /// 1012: the gateway is restarting (drain): reconnect, through nginx, to another one.
    ServiceRestart,
    /// 4000: the client fell behind (its queue filled): reconnect with `since` to resume.
    SlowConsumer,
    /// 4001: the token expired and no fresh one was sent over the socket.
    TokenExpired,
    /// The client's own close code, echoed back (RFC 6455 §5.5.1).
    Echo(u16),
}

impl CloseCode {
    /// The number on the wire.
    pub fn code(self) -> u16 {
        match self {
            CloseCode::Normal => 1000,
            CloseCode::Idle => 1001,
            CloseCode::ProtocolError => 1002,
            CloseCode::InvalidPayload => 1007,
            CloseCode::PolicyViolation => 1008,
            CloseCode::TooBig => 1009,
            CloseCode::Internal => 1011,
            CloseCode::ServiceRestart => 1012,
            CloseCode::SlowConsumer => 4000,
            CloseCode::TokenExpired => 4001,
            CloseCode::Echo(code) => code,
        }
    }

    /// The code a number stands for (one of ours, or an echoed one).
    pub fn from_code(code: u16) -> Self {
        [
            CloseCode::Normal,
            CloseCode::Idle,
            CloseCode::ProtocolError,
            CloseCode::InvalidPayload,
            CloseCode::PolicyViolation,
            CloseCode::TooBig,
            CloseCode::Internal,
            CloseCode::ServiceRestart,
            CloseCode::SlowConsumer,
            CloseCode::TokenExpired,
        ]
        .into_iter()
        .find(|c| c.code() == code)
        .unwrap_or(CloseCode::Echo(code))
    }

    /// The reason sent with the code, for a person reading a browser's console.
    pub fn reason(self) -> &'static str {
        match self {
            CloseCode::Normal | CloseCode::Echo(_) => "",
            CloseCode::Idle => "idle timeout",
            CloseCode::ProtocolError => "protocol error",
            CloseCode::InvalidPayload => "invalid UTF-8",
            CloseCode::PolicyViolation => "frame not completed in time",
            CloseCode::TooBig => "message too big",
            CloseCode::Internal => "internal error",
            CloseCode::ServiceRestart => "service restart: reconnect",
            CloseCode::SlowConsumer => "slow consumer: reconnect with since to resume",
            CloseCode::TokenExpired => "token expired",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_round_trip_and_unknown_ones_are_echoed() {
        for code in [
            1000, 1001, 1002, 1007, 1008, 1009, 1011, 1012, 4000, 4001, 3000, 4999,
        ] {
            assert_eq!(CloseCode::from_code(code).code(), code);
        }
        assert_eq!(CloseCode::from_code(4000), CloseCode::SlowConsumer);
        assert_eq!(CloseCode::from_code(3000), CloseCode::Echo(3000));
        assert!(CloseCode::SlowConsumer.reason().contains("since"));
    }
}
