//! The WebSocket to `/socket`: typed text messages in, chunks and typed messages out.

use super::MediaError;
use crate::protocol::{ClientMsg, ServerMsg};
use wasm_bindgen::closure::Closure;
use wasm_bindgen::JsCast;
use web_sys::{Blob, CloseEvent, Event, MessageEvent, WebSocket};

/// An open socket; owns its event closures and closes when dropped.
pub struct Socket {
    ws: WebSocket,
    _on_open: Closure<dyn FnMut(Event)>,
    _on_message: Closure<dyn FnMut(MessageEvent)>,
    _on_close: Closure<dyn FnMut(CloseEvent)>,
}

/// What happened on the socket, as the session sees it.
pub enum SocketEvent {
    Open,
    Message(ServerMsg),
    /// A text frame the page does not understand.
    Garbled,
    Closed,
}

impl Socket {
    /// Opens `/socket` on this page's origin with the CSRF token; with `node`, on that node
    /// of a cluster (a reconnection to the node holding the session); `resuming` marks a
    /// socket that will resume a parked session (the server lets it in past its socket caps).
    pub fn open(
        csrf: &str,
        node: Option<&str>,
        resuming: bool,
        on_event: impl FnMut(SocketEvent) + 'static,
    ) -> Result<Self, MediaError> {
        let url = socket_url(csrf, node, resuming)?;
        let ws = WebSocket::new(&url).map_err(|e| super::js_err("WebSocket", e))?;
        ws.set_binary_type(web_sys::BinaryType::Arraybuffer);
        let (tx_open, tx_msg, tx_close) = {
            let shared = std::rc::Rc::new(std::cell::RefCell::new(on_event));
            (shared.clone(), shared.clone(), shared)
        };
        let on_open = Closure::<dyn FnMut(Event)>::new(move |_: Event| {
            (tx_open.borrow_mut())(SocketEvent::Open)
        });
        let on_message = Closure::<dyn FnMut(MessageEvent)>::new(move |event: MessageEvent| {
            let parsed = event
                .data()
                .as_string()
                .map(|text| ServerMsg::decode(&text));
            let ev = match parsed {
                Some(Ok(msg)) => SocketEvent::Message(msg),
                _ => SocketEvent::Garbled,
            };
            (tx_msg.borrow_mut())(ev)
        });
        let on_close = Closure::<dyn FnMut(CloseEvent)>::new(move |_: CloseEvent| {
            (tx_close.borrow_mut())(SocketEvent::Closed)
        });
        ws.set_onopen(Some(on_open.as_ref().unchecked_ref()));
        ws.set_onmessage(Some(on_message.as_ref().unchecked_ref()));
        ws.set_onclose(Some(on_close.as_ref().unchecked_ref()));
        Ok(Socket {
            ws,
            _on_open: on_open,
            _on_message: on_message,
            _on_close: on_close,
        })
    }

    /// Sends a typed message; false if the socket is not open.
    pub fn send(&self, msg: &ClientMsg) -> bool {
        self.is_open() && self.ws.send_with_str(&msg.encode()).is_ok()
    }

    /// Sends one recorder chunk as a binary frame (Blob sends keep their order).
    pub fn send_chunk(&self, chunk: &Blob) -> bool {
        self.is_open() && self.ws.send_with_blob(chunk).is_ok()
    }

    /// Whether the socket is open.
    pub fn is_open(&self) -> bool {
        self.ws.ready_state() == WebSocket::OPEN
    }
}

impl Drop for Socket {
    fn drop(&mut self) {
        self.ws.set_onopen(None);
        self.ws.set_onmessage(None);
        self.ws.set_onclose(None);
        let _ = self.ws.close();
    }
}

fn socket_url(csrf: &str, node: Option<&str>, resuming: bool) -> Result<String, MediaError> {
    let location = web_sys::window()
        .ok_or_else(|| MediaError::Browser("no window".into()))?
        .location();
    let host = location.host().map_err(|e| super::js_err("location", e))?;
    let scheme = match location.protocol().as_deref() {
        Ok("https:") => "wss",
        _ => "ws",
    };
    let token = js_sys::encode_uri_component(csrf);
    let node = node
        .filter(|n| crate::hls_path::is_node_name(n))
        .map(|n| format!("&node={n}"))
        .unwrap_or_default();
    let resume = if resuming { "&resume=1" } else { "" };
    Ok(format!(
        "{scheme}://{host}/socket?csrf_token={token}{node}{resume}"
    ))
}

impl Socket {
    /// Closes the connection but keeps the object (and its closures) alive, so this is safe
    /// to call from inside one of the socket's own callbacks.
    pub fn close(&self) {
        let _ = self.ws.close();
    }
}
