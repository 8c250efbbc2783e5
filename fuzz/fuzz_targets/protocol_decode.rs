//! Fuzzes the wire-message decoding: any text either decodes to a message that survives a
//! round trip, or is a typed error; nothing panics.
#![no_main]

use app::protocol::{ClientMsg, DecodeError, ServerMsg, MAX_TEXT_BYTES};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match ClientMsg::decode(text) {
        Ok(msg) => {
            let again = ClientMsg::decode(&msg.encode()).expect("an encoded message decodes");
            assert_eq!(again, msg);
        }
        Err(DecodeError::TooLarge(n)) => assert!(n > MAX_TEXT_BYTES),
        Err(DecodeError::Malformed(_)) => assert!(text.len() <= MAX_TEXT_BYTES),
    }
    if let Ok(msg) = ServerMsg::decode(text) {
        assert_eq!(ServerMsg::decode(&msg.encode()).ok(), Some(msg));
    }
});
