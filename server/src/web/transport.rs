//! The message socket a connection talks over: the browser's WebSocket in the server, a
//! pair of channels in tests, so the connection loop can be driven without a network.

use axum::extract::ws::Message;
use futures_util::{Sink, Stream};

/// A bidirectional stream of WebSocket messages (what axum's `WebSocket` is).
pub trait Transport:
    Stream<Item = Result<Message, axum::Error>> + Sink<Message, Error = axum::Error> + Send + Unpin
{
}

impl<T> Transport for T where
    T: Stream<Item = Result<Message, axum::Error>>
        + Sink<Message, Error = axum::Error>
        + Send
        + Unpin
{
}

/// A connection's socket; a resumed session's new socket is handed over as one of these.
pub type Socket = Box<dyn Transport>;

#[cfg(test)]
pub mod testing {
    //! An in-memory [`Socket`](super::Socket) and the test's end of it.

    use super::*;
    use app::protocol::{ClientMsg, ServerMsg};
    use std::pin::Pin;
    use std::task::{Context, Poll};
    use tokio::sync::mpsc;

    /// The server's end: reads what the peer sends, writes what the peer receives.
    struct ChannelSocket {
        incoming: mpsc::UnboundedReceiver<Result<Message, axum::Error>>,
        outgoing: Option<mpsc::UnboundedSender<Message>>,
    }

    impl Stream for ChannelSocket {
        type Item = Result<Message, axum::Error>;

        fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
            self.incoming.poll_recv(cx)
        }
    }

    impl Sink<Message> for ChannelSocket {
        type Error = axum::Error;

        fn poll_ready(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
            Poll::Ready(Ok(()))
        }

        fn start_send(self: Pin<&mut Self>, msg: Message) -> Result<(), Self::Error> {
            let sent = self.outgoing.as_ref().map(|tx| tx.send(msg).is_ok());
            match sent {
                Some(true) => Ok(()),
                _ => Err(axum::Error::new("the peer is gone")),
            }
        }

        fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
            Poll::Ready(Ok(()))
        }

        fn poll_close(
            mut self: Pin<&mut Self>,
            _: &mut Context<'_>,
        ) -> Poll<Result<(), Self::Error>> {
            self.outgoing = None;
            Poll::Ready(Ok(()))
        }
    }

    /// The browser's end of an in-memory socket.
    pub struct Peer {
        to_server: Option<mpsc::UnboundedSender<Result<Message, axum::Error>>>,
        from_server: mpsc::UnboundedReceiver<Message>,
    }

    /// A protocol message as the page sends it: one text frame.
    pub fn text(msg: &ClientMsg) -> Message {
        Message::Text(msg.encode().into())
    }

    /// A connected pair: the socket for the server, the peer for the test.
    pub fn pair() -> (Socket, Peer) {
        let (to_server, incoming) = mpsc::unbounded_channel();
        let (outgoing, from_server) = mpsc::unbounded_channel();
        let socket = ChannelSocket {
            incoming,
            outgoing: Some(outgoing),
        };
        let peer = Peer {
            to_server: Some(to_server),
            from_server,
        };
        (Box::new(socket), peer)
    }

    impl Peer {
        /// Sends one raw message (ignored if the server's end is gone).
        pub fn send_raw(&self, msg: Message) {
            if let Some(tx) = &self.to_server {
                let _ = tx.send(Ok(msg));
            }
        }

        /// Sends a protocol message as text.
        pub fn send(&self, msg: &ClientMsg) {
            self.send_raw(text(msg));
        }

        /// Breaks the connection without a close frame (a network blip).
        pub fn drop_connection(&mut self) {
            if let Some(tx) = self.to_server.take() {
                let _ = tx.send(Err(axum::Error::new("connection reset")));
            }
        }

        /// The next protocol message from the server; `None` once the server closed.
        pub async fn next(&mut self) -> Option<ServerMsg> {
            loop {
                match self.from_server.recv().await? {
                    Message::Text(text) => {
                        return Some(
                            ServerMsg::decode(text.as_str()).expect("server messages parse"),
                        )
                    }
                    Message::Close(_) => return None,
                    _ => continue,
                }
            }
        }
    }
}
