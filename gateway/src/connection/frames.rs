//! Client → server frames: checks fastwebsockets leaves to us (masking, control frame size,
//! close codes), reassembly of fragmented messages under one total-size cap, and the mapping of
//! protocol errors to close codes.

use super::CloseCode;
use fastwebsockets::{Frame, OpCode, WebSocketError};

/// A complete client message.
#[derive(Debug, PartialEq, Eq)]
pub enum Message {
    Text(String),
    Binary,
    Ping(Vec<u8>),
    Pong,
    /// The client closed; echo this code (or close normally when `None`).
    Close(Option<u16>),
}

/// Why the connection must close, with the code to send.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Violation(pub CloseCode);

/// Reassembles fragmented messages, capping their total size.
pub struct Assembler {
    cap: usize,
    open: Option<(OpCode, Vec<u8>)>,
}

/// Was the frame sent masked, as RFC 6455 requires of clients?
pub fn is_masked(frame: &mut Frame<'_>) -> bool {
    let mut head = [0u8; 16];
    frame.fmt_head(&mut head);
    head[1] & 0x80 != 0
}

impl Assembler {
    pub fn new(cap: usize) -> Self {
        Self { cap, open: None }
    }

    /// Feeds one frame (already checked for masking); returns a message when one is complete.
    pub fn push(
        &mut self,
        fin: bool,
        opcode: OpCode,
        payload: &[u8],
    ) -> Result<Option<Message>, Violation> {
        match opcode {
            OpCode::Ping => {
                if payload.len() > 125 || !fin {
                    return Err(Violation(CloseCode::ProtocolError));
                }
                Ok(Some(Message::Ping(payload.to_vec())))
            }
            OpCode::Pong => {
                if payload.len() > 125 || !fin {
                    return Err(Violation(CloseCode::ProtocolError));
                }
                Ok(Some(Message::Pong))
            }
            OpCode::Close => close_message(payload).map(Some),
            OpCode::Text | OpCode::Binary => {
                if self.open.is_some() {
                    return Err(Violation(CloseCode::ProtocolError));
                }
                if payload.len() > self.cap {
                    return Err(Violation(CloseCode::TooBig));
                }
                if fin {
                    return finish(opcode, payload.to_vec()).map(Some);
                }
                self.open = Some((opcode, payload.to_vec()));
                Ok(None)
            }
            OpCode::Continuation => {
                let Some((_, buf)) = self.open.as_mut() else {
                    return Err(Violation(CloseCode::ProtocolError));
                };
                if buf.len() + payload.len() > self.cap {
                    return Err(Violation(CloseCode::TooBig));
                }
                buf.extend_from_slice(payload);
                if fin {
                    let (op, buf) = self.open.take().expect("checked above");
                    return finish(op, buf).map(Some);
                }
                Ok(None)
            }
        }
    }
}

fn finish(opcode: OpCode, buf: Vec<u8>) -> Result<Message, Violation> {
    if opcode == OpCode::Binary {
        return Ok(Message::Binary);
    }
    String::from_utf8(buf)
        .map(Message::Text)
        .map_err(|_| Violation(CloseCode::InvalidPayload))
}

fn close_message(payload: &[u8]) -> Result<Message, Violation> {
    match payload.len() {
        0 => Ok(Message::Close(None)),
        1 => Err(Violation(CloseCode::ProtocolError)),
        n if n > 125 => Err(Violation(CloseCode::ProtocolError)),
        _ => {
            let c = u16::from_be_bytes([payload[0], payload[1]]);
            if !fastwebsockets::CloseCode::from(c).is_allowed() {
                return Err(Violation(CloseCode::ProtocolError));
            }
            if std::str::from_utf8(&payload[2..]).is_err() {
                return Err(Violation(CloseCode::InvalidPayload));
            }
            Ok(Message::Close(Some(c)))
        }
    }
}

/// The close code for a read error, or `None` when the peer simply went away.
pub fn close_code_for(err: &WebSocketError) -> Option<CloseCode> {
    use WebSocketError as E;
    match err {
        E::UnexpectedEOF | E::IoError(_) | E::ConnectionClosed => None,
        E::FrameTooLarge => Some(CloseCode::TooBig),
        E::InvalidUTF8 => Some(CloseCode::InvalidPayload),
        E::ReservedBitsNotZero
        | E::InvalidValue
        | E::ControlFrameFragmented
        | E::PingFrameTooLarge
        | E::InvalidCloseFrame
        | E::InvalidCloseCode
        | E::InvalidFragment
        | E::InvalidContinuationFrame => Some(CloseCode::ProtocolError),
        _ => Some(CloseCode::Internal),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fragments_reassemble_under_the_cap() {
        let mut a = Assembler::new(10);
        assert_eq!(a.push(false, OpCode::Text, b"ping"), Ok(None));
        assert_eq!(
            a.push(true, OpCode::Continuation, b"!"),
            Ok(Some(Message::Text("ping!".into())))
        );
        assert_eq!(a.push(false, OpCode::Text, b"12345"), Ok(None));
        assert_eq!(a.push(false, OpCode::Continuation, b"12345"), Ok(None));
        assert_eq!(
            a.push(false, OpCode::Continuation, b"x"),
            Err(Violation(CloseCode::TooBig)),
            "a flood of continuations is capped"
        );
    }

    #[test]
    fn protocol_violations_get_their_codes() {
        let mut a = Assembler::new(100);
        assert_eq!(
            a.push(true, OpCode::Continuation, b"x"),
            Err(Violation(CloseCode::ProtocolError)),
            "continuation with nothing open"
        );
        assert_eq!(
            a.push(true, OpCode::Text, &[0xff]),
            Err(Violation(CloseCode::InvalidPayload))
        );
        assert_eq!(
            a.push(true, OpCode::Text, &[b'x'; 101]),
            Err(Violation(CloseCode::TooBig))
        );
        assert_eq!(
            a.push(true, OpCode::Pong, &[0; 126]),
            Err(Violation(CloseCode::ProtocolError))
        );
        assert_eq!(
            a.push(true, OpCode::Close, &[0; 126]),
            Err(Violation(CloseCode::ProtocolError))
        );
        assert_eq!(
            a.push(true, OpCode::Close, &1005u16.to_be_bytes()),
            Err(Violation(CloseCode::ProtocolError))
        );
        assert_eq!(
            a.push(true, OpCode::Close, &1000u16.to_be_bytes()),
            Ok(Some(Message::Close(Some(1000))))
        );
        assert_eq!(a.push(false, OpCode::Text, b"a"), Ok(None));
        assert_eq!(
            a.push(true, OpCode::Text, b"b"),
            Err(Violation(CloseCode::ProtocolError)),
            "new message inside an open one"
        );
    }
}
